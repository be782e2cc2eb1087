"""What the Azure stand-in knows and remembers, and what tests switch on and read back.

``Directory``: app registrations (or user-assigned managed identities: to Entra both are a
client ID in a tenant) with their federated identity credentials, and AcrPull role
assignments (client ID on registry). ``Ledger``: the access tokens Entra issued and the
refresh tokens the registries issued. ``AzureConfig``: lifetimes a test may change.
``AzureFaults``: the next calls' misbehaviour. ``AzureStats``: calls per client ID and
outcome. Nothing is persisted: a restart forgets everything, as a fresh tenant would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from devstack.tokenservice.protocol import JSONObject, bad_request, unknown_fields

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
    def __init__(self) -> None:
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}

    def add_access_token(self, token: str, access: AccessToken) -> None:
        self._access[token] = access

    def access_token(self, token: str) -> AccessToken | None:
        return self._access.get(token)

    def add_refresh_token(self, refresh: RefreshToken) -> None:
        self._refresh[refresh.token] = refresh

    def refresh_token(self, token: str) -> RefreshToken | None:
        return self._refresh.get(token)

    def refresh_tokens(self) -> list[RefreshToken]:
        return list(self._refresh.values())

    def forget_expired(self, now: float | None = None) -> None:
        horizon = (time.time() if now is None else now) - 3600
        self._access = {k: a for k, a in self._access.items() if a.expires_at > horizon}
        self._refresh = {k: r for k, r in self._refresh.items() if r.expires_at > horizon}


def _positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"{key} must be a positive number of seconds or null")
    return value


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
            key: _positive_int(body, key) or defaults[key] for key in defaults if key in body
        }
        return replace(self, **changes)


FAULT_MODES: Final = ("none", "throttle", "unavailable", "server_error", "slow")


@dataclass(frozen=True)
class AzureFault:
    """How calls to ``api`` (``entra``, ``acr`` or both when None) misbehave: ``throttle``
    (429 with Retry-After), ``unavailable`` (503 temporarily_unavailable), ``server_error``
    (500) or ``slow`` (answer after ``delay`` seconds), for the next ``count`` calls or until
    cleared. The registries' token realm is never faulted (pulls go on)."""

    mode: str
    api: str | None = None
    count: int | None = None
    delay: float = 5.0

    def to_json(self) -> JSONObject:
        return asdict(self)


def parse_azure_fault(body: Mapping[str, Any]) -> AzureFault | None:
    unknown_fields(body, frozenset({"mode", "api", "count", "delay"}))
    mode = body.get("mode")
    if mode not in FAULT_MODES:
        raise bad_request(f"mode must be one of {', '.join(FAULT_MODES)}")
    api = body.get("api")
    if api is not None and api not in APIS:
        raise bad_request(f"api must be one of {', '.join(APIS)} or null (both)")
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise bad_request("count must be a positive integer or null")
    delay = body.get("delay", 5.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise bad_request("delay must be a number of seconds >= 0")
    return None if mode == "none" else AzureFault(mode, api=api, count=count, delay=float(delay))


@dataclass
class AzureFaults:
    """The one active fault, counted down by each call to its API."""

    fault: AzureFault | None = None
    left: int | None = None

    def set(self, fault: AzureFault | None) -> None:
        self.fault = fault
        self.left = fault.count if fault else None

    def take(self, api: str) -> AzureFault | None:
        fault = self.fault
        if fault is None or (fault.api is not None and fault.api != api):
            return None
        if self.left is not None:
            self.left -= 1
            if self.left <= 0:
                self.set(None)
        return fault

    def to_json(self) -> JSONObject:
        if self.fault is None:
            return {"mode": "none"}
        return {**self.fault.to_json(), "remaining": self.left}


@dataclass
class AzureStats:
    """Calls per API, per client ID (``""`` when the call named none) and outcome."""

    calls: dict[str, dict[str, dict[str, int]]] = field(
        default_factory=lambda: {api: {} for api in APIS}
    )

    def reset(self) -> None:
        self.calls = {api: {} for api in APIS}

    def record(self, api: str, client_id: str | None, *, ok: bool) -> None:
        per_client = self.calls[api].setdefault(client_id or "", {"ok": 0, "error": 0})
        per_client["ok" if ok else "error"] += 1

    def to_json(self) -> JSONObject:
        return {"token": self.calls[ENTRA], "exchange": self.calls[ACR]}
