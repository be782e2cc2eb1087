"""What the Azure stand-in knows and remembers, and what tests switch on and read back.

``Directory``: app registrations (or user-assigned managed identities: to Entra both are a
client ID in a tenant) with their federated identity credentials, and AcrPull role
assignments (client ID on registry). ``Ledger``: the access tokens Entra issued and the
refresh tokens the registries issued. ``AzureConfig``: lifetimes a test may change.
``AzureStats``: calls per client ID and outcome. Faults are ``cloud.ApiFault`` on ``ENTRA``
or ``ACR``: ``throttle`` answers 429 with Retry-After, ``unavailable`` 503
temporarily_unavailable, ``server_error`` 500; the registries' token realm is never faulted
(pulls go on). Nothing is persisted: a restart forgets everything, as a fresh tenant would.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from devstack.tokenservice.cloud import ApiCalls, Issued, positive_seconds
from devstack.tokenservice.protocol import JSONObject, unknown_fields

#: The stand-in's one tenant, unless an app names another.
TENANT: Final = "8a1b2c3d-0000-4000-8000-00000000a2d0"
ENTRA: Final = "entra"
ACR: Final = "acr"
APIS: Final = (ENTRA, ACR)
#: Entra's access tokens live 60-90 minutes; the stand-in's an hour.
DEFAULT_ACCESS_TOKEN_LIFETIME: Final = 3600
#: ACR's refresh tokens live 3 hours.
DEFAULT_REFRESH_TOKEN_LIFETIME: Final = 3 * 3600
#: The kind, in the token service's ``/admin/issued``, of access and refresh tokens.
AZURE_SECRET: Final = "azure"


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audience: str

    def to_json(self) -> JSONObject:
        return asdict(self)


@dataclass(frozen=True)
class App:
    """An app registration's service principal in ``tenant``."""

    client_id: str
    tenant: str
    name: str
    federated: tuple[FederatedCredential, ...] = ()

    def to_json(self) -> JSONObject:
        return {
            "client_id": self.client_id,
            "tenant": self.tenant,
            "name": self.name,
            "federated_credentials": [f.to_json() for f in self.federated],
        }


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    tenant: str
    audience: str
    expires_at: float


@dataclass(frozen=True)
class RefreshToken:
    """An ACR refresh token: good for ``registry`` (its service, no port) until ``expires_at``."""

    token: str
    registry: str
    client_id: str
    tenant: str
    expires_at: float

    def to_json(self) -> JSONObject:
        return asdict(self)


class Directory:
    def __init__(self) -> None:
        self.apps: dict[str, App] = {}
        #: (client ID, registry service) pairs with AcrPull.
        self.pullers: set[tuple[str, str]] = set()
        #: issuer -> JWKS text, for issuers whose discovery the stand-in cannot reach.
        self.issuer_keys: dict[str, str] = {}

    def create_app(self, *, name: str, tenant: str = TENANT) -> App:
        app = App(client_id=str(uuid.uuid4()), tenant=tenant, name=name)
        self.apps[app.client_id] = app
        return app

    def add_federated_credential(self, client_id: str, credential: FederatedCredential) -> App:
        app = self.apps[client_id]
        app = replace(app, federated=(*app.federated, credential))
        self.apps[client_id] = app
        return app

    def app(self, tenant: str, client_id: str) -> App | None:
        app = self.apps.get(client_id)
        return app if app is not None and app.tenant == tenant else None


class Ledger:
    """What Entra and the registries issued: access tokens and refresh tokens, each by itself."""

    def __init__(self) -> None:
        self.access_tokens: Issued[AccessToken] = Issued()
        self.refresh_tokens: Issued[RefreshToken] = Issued()

    def forget_expired(self, now: float | None = None) -> None:
        self.access_tokens.forget_expired(now)
        self.refresh_tokens.forget_expired(now)


@dataclass(frozen=True)
class AzureConfig:
    """What ``/admin/azure/config`` reads and changes (null: Azure's default again)."""

    access_token_lifetime: int = DEFAULT_ACCESS_TOKEN_LIFETIME
    refresh_token_lifetime: int = DEFAULT_REFRESH_TOKEN_LIFETIME

    def to_json(self) -> JSONObject:
        return asdict(self)

    def updated(self, body: Mapping[str, Any]) -> AzureConfig:
        defaults = {
            "access_token_lifetime": DEFAULT_ACCESS_TOKEN_LIFETIME,
            "refresh_token_lifetime": DEFAULT_REFRESH_TOKEN_LIFETIME,
        }
        unknown_fields(body, frozenset(defaults))
        changes = {
            key: positive_seconds(body, key) or defaults[key] for key in defaults if key in body
        }
        return replace(self, **changes)


class AzureStats(ApiCalls):
    """Calls per API, per client ID (``""`` when the call named none) and outcome."""

    def __init__(self) -> None:
        super().__init__({ENTRA: "token", ACR: "exchange"})
