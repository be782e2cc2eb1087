"""What an admin creates in the stand-in's Google project(s), and how each is judged (pure).

- ``OidcProvider``: a workload identity pool's OIDC provider, named
  ``projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id>``: its
  issuer, its keys (``--jwk-json-path``, for an issuer Google cannot reach; else the issuer's
  discovery), its allowed audiences (none: Google's default, the provider's full name
  ``https://iam.googleapis.com/<name>``), and its attribute condition, modelled as the list of
  ``assertion.sub`` values it allows (None: no condition). The attribute mapping is
  ``google.subject=assertion.sub``, so the principal is ``principal://iam.googleapis.com/
  projects/<n>/locations/global/workloadIdentityPools/<pool>/subject/<sub>``.
- ``ServiceAccount`` emails, and IAM bindings on each: a member (``principal://...`` or
  ``principalSet://.../*`` for a whole pool) and a role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

IAM_HOST: Final = "iam.googleapis.com"
WORKLOAD_IDENTITY_USER: Final = "roles/iam.workloadIdentityUser"
TOKEN_CREATOR: Final = "roles/iam.serviceAccountTokenCreator"
#: Roles that let a principal mint a service account's access tokens.
IMPERSONATING_ROLES: Final = frozenset({WORKLOAD_IDENTITY_USER, TOKEN_CREATOR})

PROVIDER_NAME: Final = re.compile(
    r"projects/(?P<project>[0-9]{1,20})/locations/global/"
    r"workloadIdentityPools/(?P<pool>[a-z0-9-]{4,32})/providers/(?P<provider>[a-z0-9-]{4,32})"
)
SERVICE_ACCOUNT_EMAIL: Final = re.compile(
    r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.gserviceaccount\.com"
)


def pool_of(provider_name: str) -> str:
    """``projects/<n>/locations/global/workloadIdentityPools/<pool>``."""
    return provider_name.rsplit("/providers/", 1)[0]


def principal(provider_name: str, subject: str) -> str:
    return f"principal://{IAM_HOST}/{pool_of(provider_name)}/subject/{subject}"


def pool_members(provider_name: str) -> str:
    return f"principalSet://{IAM_HOST}/{pool_of(provider_name)}/*"


@dataclass(frozen=True)
class OidcProvider:
    name: str
    issuer: str
    #: Canonical JSON of the keys given at creation, or None: the issuer's discovery.
    jwks: str | None = None
    allowed_audiences: tuple[str, ...] = ()
    #: The attribute condition ``assertion.sub in [...]``; None: no condition.
    allowed_subjects: tuple[str, ...] | None = None

    @property
    def audiences(self) -> tuple[str, ...]:
        """What the token's ``aud`` must include one of (Google: the provider's full name when
        no audience is allowed explicitly)."""
        return self.allowed_audiences or (f"https://{IAM_HOST}/{self.name}",)

    def condition_holds(self, subject: str) -> bool:
        return self.allowed_subjects is None or subject in self.allowed_subjects


@dataclass
class Directory:
    providers: dict[str, OidcProvider] = field(default_factory=dict)
    #: email -> {(member, role)}
    service_accounts: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def may_impersonate(self, email: str, member: str) -> bool:
        """Whether ``member`` (a principal) holds a role on ``email`` that lets it mint the
        service account's tokens, directly or through its pool's principalSet."""
        bindings = self.service_accounts.get(email, set())
        pool_set = (
            member.split("/subject/", 1)[0].replace("principal://", "principalSet://", 1) + "/*"
        )
        return any(
            role in IMPERSONATING_ROLES and bound in (member, pool_set) for bound, role in bindings
        )
