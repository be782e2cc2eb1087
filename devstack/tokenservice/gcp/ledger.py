"""What the Google stand-in remembers and what tests switch on and read back.

``Ledger``: the access tokens issued (federated ones from STS, service accounts' from IAM
Credentials), each with its principal and expiry, which is how IAM Credentials and the
registry know them. ``GcpConfig``: lifetimes a test may shorten. ``GcpFaults``: the next
calls' misbehaviour. ``GcpStats``: calls per API, per identity (the pool provider for STS, the
service account for IAM Credentials) and outcome. Nothing is persisted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from devstack.tokenservice.protocol import JSONObject, bad_request, unknown_fields

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


class Ledger:
    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}

    def add(self, token: AccessToken) -> None:
        self._tokens[token.token] = token

    def get(self, token: str) -> AccessToken | None:
        return self._tokens.get(token)

    def all(self) -> list[AccessToken]:
        return list(self._tokens.values())

    def forget_expired(self, now: float | None = None) -> None:
        """Drop what expired more than an hour ago (what tests still ask about is younger)."""
        horizon = (time.time() if now is None else now) - 3600
        self._tokens = {k: t for k, t in self._tokens.items() if t.expires_at > horizon}


def _positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"{key} must be a positive number of seconds or null")
    return value


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
        changes = {key: _positive_int(body, key) for key in fields if key in body}
        return replace(self, **changes)


FAULT_MODES: Final = ("none", "throttle", "unavailable", "server_error", "slow")


@dataclass(frozen=True)
class GcpFault:
    """How calls to ``api`` (``sts``, ``iamcredentials``, or both when None) misbehave:
    ``throttle`` (429), ``unavailable`` (503), ``server_error`` (500) or ``slow`` (answer after
    ``delay`` seconds), for the next ``count`` calls or until cleared."""

    mode: str
    api: str | None = None
    count: int | None = None
    delay: float = 5.0

    def to_json(self) -> JSONObject:
        return asdict(self)


def parse_gcp_fault(body: Mapping[str, Any]) -> GcpFault | None:
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
    return None if mode == "none" else GcpFault(mode, api=api, count=count, delay=float(delay))


class GcpFaults:
    """The one active fault, counted down by each call to its API."""

    def __init__(self) -> None:
        self._fault: GcpFault | None = None
        self._left: int | None = None

    def set(self, fault: GcpFault | None) -> None:
        self._fault = fault
        self._left = fault.count if fault else None

    def take(self, api: str) -> GcpFault | None:
        fault = self._fault
        if fault is None or (fault.api is not None and fault.api != api):
            return None
        if self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self.set(None)
        return fault

    def to_json(self) -> JSONObject:
        if self._fault is None:
            return {"mode": "none"}
        return {**self._fault.to_json(), "remaining": self._left}


class GcpStats:
    """Calls per API, per identity (``""`` when the call named none) and outcome."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, dict[str, dict[str, int]]] = {api: {} for api in APIS}

    def record(self, api: str, identity: str | None, *, ok: bool) -> None:
        per_identity = self.calls[api].setdefault(identity or "", {"ok": 0, "error": 0})
        per_identity["ok" if ok else "error"] += 1

    def to_json(self) -> JSONObject:
        return {"token_exchange": self.calls[STS], "generate_access_token": self.calls[IAM]}
