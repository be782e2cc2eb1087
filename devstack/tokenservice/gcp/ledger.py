"""What the Google stand-in remembers and what tests switch on and read back.

``Ledger``: the access tokens issued (federated ones from STS, service accounts' from IAM
Credentials), each with its principal and expiry, which is how IAM Credentials and the
registry know them. ``GcpConfig``: lifetimes a test may shorten. ``GcpStats``: calls per
API, per identity (the pool provider for STS, the service account for IAM Credentials) and
outcome. Faults are ``cloud.ApiFault`` on ``STS`` or ``IAM``: ``throttle`` answers 429,
``unavailable`` 503, ``server_error`` 500. Nothing is persisted (see ``cloud``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from devstack.tokenservice.cloud import ApiCalls, Issued, positive_seconds
from devstack.tokenservice.protocol import JSONObject, unknown_fields

STS: Final = "sts"
IAM: Final = "iamcredentials"
APIS: Final = (STS, IAM)
#: The kind, in the token service's ``/admin/issued``, of every access token issued here.
GCP_SECRET: Final = "gcp"
#: Google: a federated token lives at most an hour, and so does a generated access token
#: (without the organisation's constraint that allows 12 hours).
MAX_LIFETIME: Final = 3600


@dataclass(frozen=True)
class AccessToken:
    """``principal`` is the federated principal; ``service_account`` the impersonated
    account's email, None for a federated token."""

    token: str
    principal: str
    provider: str
    service_account: str | None
    expires_at: float

    def to_json(self) -> JSONObject:
        return asdict(self)


class Ledger(Issued[AccessToken]):
    """The access tokens issued, federated and service accounts' alike, each by itself."""


@dataclass(frozen=True)
class GcpConfig:
    """What ``/admin/gcp/config`` reads and changes: caps below Google's hour (None: none),
    so tests can see tokens expire."""

    federated_lifetime_cap: int | None = None
    access_token_lifetime_cap: int | None = None

    def to_json(self) -> JSONObject:
        return asdict(self)

    def updated(self, body: Mapping[str, Any]) -> GcpConfig:
        fields = frozenset({"federated_lifetime_cap", "access_token_lifetime_cap"})
        unknown_fields(body, fields)
        changes = {key: positive_seconds(body, key) for key in fields if key in body}
        return replace(self, **changes)


class GcpStats(ApiCalls):
    """Calls per API, per identity (``""`` when the call named none) and outcome."""

    def __init__(self) -> None:
        super().__init__({STS: "token_exchange", IAM: "generate_access_token"})
