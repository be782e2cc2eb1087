"""What a Secret asks of ACR: the app (tenant and client ID) and the one registry.

Three annotations, all written by the Secret's owner::

    acr.pull-secret-updater.chainguard.dev/tenant-id: 72f988bf-86f1-41af-91ab-2d7cd011db47
    acr.pull-secret-updater.chainguard.dev/client-id: 11111111-2222-3333-4444-555555555555
    acr.pull-secret-updater.chainguard.dev/registry: myregistry.azurecr.io

One registry per Secret: an ACR refresh token is issued by one registry for that registry
(its ``service``), so two registries are two exchanges and two passwords, and a Secret asks
for one `Want`. A Secret needing two ACR registries is two Secrets (or two names).

The identity is ``<tenant>/<client>``: a multi-tenant app has the same client ID in every
tenant, and which tenant's service principal is used decides what it may pull, so the two are
one name for the identity policy and for sharing exchanges. The scope is the registry host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pull_secret_updater.core.annotations import validate_value
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.providers import FILLED_IDENTITY as FILLED_IDENTITY_SUFFIX
from pull_secret_updater.core.providers import Want
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.providers.acr import NAME, PREFIX, USERNAME

TENANT_ID = PREFIX + "tenant-id"
CLIENT_ID = PREFIX + "client-id"
REGISTRY = PREFIX + "registry"
#: What the controller last filled the ACR entry for (its status annotation).
FILLED_IDENTITY = PREFIX + FILLED_IDENTITY_SUFFIX

_GUID_CHARACTER = re.compile(r"[0-9A-Fa-f-]")
_GUID_WHAT = "a GUID has only hexadecimal digits and -"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HOST_CHARACTER = re.compile(r"[A-Za-z0-9.:-]")
_HOST_WHAT = "a registry is a host such as myregistry.azurecr.io"
#: `<name>.azurecr.io` and the sovereign clouds' `.azurecr.cn` / `.azurecr.us`; a registry's
#: name is 5-50 letters and digits. A port is allowed (a local stand-in listens on one).
ACR_HOST = re.compile(
    r"(?P<name>[a-z0-9]{5,50})\.(?P<domain>azurecr\.io|azurecr\.cn|azurecr\.us)(?::[0-9]{1,5})?"
)
#: The user name of an unset GUID, which no app ever has.
_NIL_GUID = "00000000-0000-0000-0000-000000000000"


def validate_guid(key: str, value: str | None) -> str:
    """The annotation's value, lower-cased, if it is a GUID; raises BadInput."""
    value = validate_value(key, value, allowed=_GUID_CHARACTER, what=_GUID_WHAT, max_length=36)
    guid = value.lower()
    if not GUID.fullmatch(guid) or guid == _NIL_GUID:
        raise _bad(f"annotation {key} is not a GUID; expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
    return guid


def validate_registry(value: str | None, *, key: str = REGISTRY) -> str:
    """The ACR host named, lower-cased; raises BadInput naming the problem."""
    value = validate_value(key, value, allowed=_HOST_CHARACTER, what=_HOST_WHAT, max_length=64)
    host = value.lower()
    if not ACR_HOST.fullmatch(host):
        raise _bad(
            f"annotation {key} is not an Azure Container Registry host; expected "
            "<name>.azurecr.io (one registry: a refresh token is good for one)"
        )
    return host


def service_of(host: str) -> str:
    """The registry's service name, as its tokens name it: the host without a port."""
    return host.rsplit(":", 1)[0] if ":" in host else host


@dataclass(frozen=True, kw_only=True)
class AcrSpec:
    """The pure half of the ACR provider."""

    name: str = NAME
    username: str = USERNAME
    annotation_prefix: str = PREFIX
    verifiable: bool = False

    def wants(self, annotations: Mapping[str, str]) -> Want | None:
        keys = (TENANT_ID, CLIENT_ID, REGISTRY)
        present = [key for key in keys if key in annotations]
        if not present:
            return None
        missing = [key for key in keys if key not in annotations]
        if missing:
            raise _bad(
                f"annotation {present[0]} is set but {' and '.join(missing)} "
                + ("is" if len(missing) == 1 else "are")
                + " missing"
            )
        tenant = validate_guid(TENANT_ID, annotations[TENANT_ID])
        client = validate_guid(CLIENT_ID, annotations[CLIENT_ID])
        host = validate_registry(annotations[REGISTRY])
        return Want(provider=self.name, identity=f"{tenant}/{client}", registries=(host,),
                    scope=host)  # fmt: skip


def split_identity(identity: str) -> tuple[str, str]:
    """(tenant, client) of a want's identity."""
    tenant, _, client = identity.partition("/")
    if not (GUID.fullmatch(tenant) and GUID.fullmatch(client)):
        raise ValueError("an ACR identity is <tenant-id>/<client-id>")
    return tenant, client


def _bad(message: str) -> BadInput:
    return BadInput(Reason.BAD_ANNOTATION, message)
