"""What a Secret asks of Google: the workload identity pool provider, maybe a service account
to impersonate, and the registries the access token is for.

Annotations, written by the Secret's owner::

    gar.pull-secret-updater.chainguard.dev/workload-identity-provider:
      projects/123456789012/locations/global/workloadIdentityPools/cluster/providers/k8s
    gar.pull-secret-updater.chainguard.dev/service-account:
      puller@my-project.iam.gserviceaccount.com
    gar.pull-secret-updater.chainguard.dev/registries: europe-west4-docker.pkg.dev, gcr.io

The provider is named by its resource name (a project *number*, as STS wants it; the
``//iam.googleapis.com/`` form is accepted too). ``service-account`` is optional: without it,
the federated token itself goes to the registry (the principal needs a role on the
repository); with it, the federated token impersonates the service account (the principal
needs ``roles/iam.workloadIdentityUser`` on it).

``Want.identity`` is what the registry sees as the caller: the service account's email when
impersonating, else the pool provider's resource name (the principal is then the subject in
that pool). When impersonating, ``Want.scope`` is the pool provider, since the same service
account reached through another provider is another exchange; else it is empty.

The Kubernetes token has one audience per controller, chosen by the operator (the section's
``sa_audience``). When that audience is a provider's own name
(``https://iam.googleapis.com/projects/.../providers/<id>``, Google's default), a Secret naming
any other provider can never succeed, and is refused here with the reason.
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
from pull_secret_updater.providers.gar import NAME, PREFIX, USERNAME

WORKLOAD_IDENTITY_PROVIDER = PREFIX + "workload-identity-provider"
SERVICE_ACCOUNT = PREFIX + "service-account"
REGISTRIES = PREFIX + "registries"
#: What the controller last filled the Google entries for (its status annotation).
FILLED_IDENTITY = PREFIX + FILLED_IDENTITY_SUFFIX

#: At most this many registries in one Secret's annotation.
MAX_REGISTRIES = 20

_RESOURCE_CHARACTER = re.compile(r"[A-Za-z0-9/:._-]")
_RESOURCE_WHAT = "a provider's resource name has only letters, digits and / : . _ -"
PROVIDER_RESOURCE = re.compile(
    r"projects/(?P<project>[0-9]{1,20})/locations/global/"
    r"workloadIdentityPools/(?P<pool>(?!gcp-)[a-z0-9-]{4,32})/"
    r"providers/(?P<provider>(?!gcp-)[a-z0-9-]{4,32})"
)
#: The prefixes of a provider's full names: STS's audience and the token audience Google
#: expects by default.
IAM_PREFIXES = ("//iam.googleapis.com/", "https://iam.googleapis.com/")

_EMAIL_CHARACTER = re.compile(r"[a-z0-9@.-]")
_EMAIL_WHAT = "a service account's email has only lower-case letters, digits and @ . -"
SERVICE_ACCOUNT_EMAIL = re.compile(
    r"(?P<name>[a-z0-9][a-z0-9-]{0,62})@(?P<domain>(?:[a-z0-9-]+\.)*gserviceaccount\.com)"
)

_HOSTS_CHARACTER = re.compile(r"[A-Za-z0-9.:, -]")
_HOSTS_WHAT = "registries are Google registry hosts separated by commas"
#: Artifact Registry (``<location>-docker.pkg.dev``) and Container Registry (``gcr.io`` and
#: its multi-regions); a port is allowed.
GOOGLE_HOST = re.compile(
    r"(?:(?P<location>[a-z]+(?:-[a-z]+[0-9]+)?)-docker\.pkg\.dev|(?:(?:us|eu|asia)\.)?gcr\.io)"
    r"(?::[0-9]{1,5})?"
)


def provider_resource(value: str) -> str | None:
    """The resource name `value` names (bare, or prefixed by an IAM prefix), or None."""
    for prefix in IAM_PREFIXES:
        value = value.removeprefix(prefix)
    return value if PROVIDER_RESOURCE.fullmatch(value) else None


def validate_provider(value: str | None, *, key: str = WORKLOAD_IDENTITY_PROVIDER) -> str:
    """The provider's bare resource name; raises BadInput naming the problem."""
    value = validate_value(
        key, value, allowed=_RESOURCE_CHARACTER, what=_RESOURCE_WHAT, max_length=512
    )
    resource = provider_resource(value)
    if resource is None:
        raise _bad(
            f"annotation {key} is not a workload identity pool provider; expected "
            "projects/<project number>/locations/global/workloadIdentityPools/<pool>/"
            "providers/<provider>"
        )
    return resource


def validate_service_account(value: str | None, *, key: str = SERVICE_ACCOUNT) -> str:
    value = validate_value(key, value, allowed=_EMAIL_CHARACTER, what=_EMAIL_WHAT, max_length=254)
    if not SERVICE_ACCOUNT_EMAIL.fullmatch(value):
        raise _bad(
            f"annotation {key} is not a Google service account's email; expected "
            "<name>@<project>.iam.gserviceaccount.com"
        )
    return value


def parse_registries(value: str | None, *, key: str = REGISTRIES) -> tuple[str, ...]:
    """The Google hosts named (lower-cased, in order, without repeats); raises BadInput."""
    value = validate_value(key, value, allowed=_HOSTS_CHARACTER, what=_HOSTS_WHAT, max_length=2048)
    hosts: list[str] = []
    for position, item in enumerate(value.split(","), start=1):
        host = item.strip().lower()
        if not host:
            raise _bad(f"annotation {key} has an empty item at position {position}")
        if not GOOGLE_HOST.fullmatch(host):
            raise _bad(
                f"annotation {key}: item {position} is not a Google registry host; expected "
                "<location>-docker.pkg.dev, gcr.io, us.gcr.io, eu.gcr.io or asia.gcr.io"
            )
        if host not in hosts:
            hosts.append(host)
    if len(hosts) > MAX_REGISTRIES:
        raise _bad(f"annotation {key} names {len(hosts)} registries, more than {MAX_REGISTRIES}")
    return tuple(hosts)


@dataclass(frozen=True, kw_only=True)
class GarSpec:
    """The pure half of the Google provider. `audience` is the Kubernetes tokens' (the
    section's `sa_audience`), when known: it binds Secrets to the provider it names."""

    name: str = NAME
    username: str = USERNAME
    annotation_prefix: str = PREFIX
    verifiable: bool = False
    audience: str | None = None

    def wants(self, annotations: Mapping[str, str]) -> Want | None:
        provider = annotations.get(WORKLOAD_IDENTITY_PROVIDER)
        account = annotations.get(SERVICE_ACCOUNT)
        registries = annotations.get(REGISTRIES)
        if provider is None and account is None and registries is None:
            return None
        if provider is None:
            raise _bad(f"annotation {WORKLOAD_IDENTITY_PROVIDER} is missing")
        if registries is None:
            raise _bad(
                f"annotation {WORKLOAD_IDENTITY_PROVIDER} is set but {REGISTRIES} is missing"
            )
        resource = validate_provider(provider)
        email = validate_service_account(account) if account is not None else None
        hosts = parse_registries(registries)
        bound = provider_resource(self.audience) if self.audience else None
        if bound is not None and bound != resource:
            raise _bad(
                f"annotation {WORKLOAD_IDENTITY_PROVIDER} names another provider than the one "
                f"the controller's tokens are for (their audience is {self.audience}); Google "
                "would refuse the exchange"
            )
        if email is None:
            return Want(provider=self.name, identity=resource, registries=hosts)
        return Want(provider=self.name, identity=email, registries=hosts, scope=resource)


def _bad(message: str) -> BadInput:
    return BadInput(Reason.BAD_ANNOTATION, message)
