"""What the cloud stand-ins (``aws``, ``gcp``, ``azure``) keep alike: no aiohttp, no vendor.

Each stand-in answers two APIs of its vendor, remembers what it issued and lets tests switch
faults on and read calls back through its admin routes. The vendor's part (names, error
shapes, which API is which) stays in its package; the bookkeeping is here:

- ``Issued``: credentials issued, each found by its secret, until an hour after they expire;
- ``positive_seconds``: a lifetime field of an admin config body;
- ``ApiFault``, ``parse_api_fault``, ``ApiFaults``: the next calls' misbehaviour;
- ``ApiCalls``: calls per API, per caller and outcome.

Nothing here is persisted: a restart of the token service forgets it all, as a test would
expect of a fresh cloud account.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from devstack.tokenservice.faults import CountedSwitch
from devstack.tokenservice.protocol import JSONObject, bad_request, unknown_fields

#: How long after its expiry a credential is still remembered (what tests ask about is younger).
FORGET_AFTER: Final = 3600


class Expiring(Protocol):
    """A credential as ``Issued`` keeps it: whatever it is, it ends at ``expires_at``."""

    @property
    def expires_at(self) -> float: ...


C = TypeVar("C", bound=Expiring)


class Issued(Generic[C]):
    """Credentials of one kind, each found by its secret (an access key ID, a password, a
    token) the way the vendor's API looks it up when it comes back."""

    def __init__(self) -> None:
        self._items: dict[str, C] = {}

    def add(self, secret: str, credential: C) -> None:
        self._items[secret] = credential

    def get(self, secret: str) -> C | None:
        return self._items.get(secret)

    def all(self) -> list[C]:
        return list(self._items.values())

    def forget_expired(self, now: float | None = None) -> None:
        """Drop what expired more than ``FORGET_AFTER`` seconds ago."""
        horizon = (time.time() if now is None else now) - FORGET_AFTER
        self._items = {k: c for k, c in self._items.items() if c.expires_at > horizon}


def positive_seconds(body: Mapping[str, Any], key: str) -> int | None:
    """``body[key]``, a positive number of seconds, or None when absent or null."""
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise bad_request(f"{key} must be a positive number of seconds or null")
    return value


#: ``throttle``, ``unavailable`` and ``server_error`` answer the API's own error for each
#: (its stand-in's front knows the codes); ``slow`` answers after the fault's ``delay``.
FAULT_MODES: Final = ("none", "throttle", "unavailable", "server_error", "slow")


@dataclass(frozen=True)
class ApiFault:
    """How calls to ``api`` (either of the stand-in's two, or both when None) misbehave, for
    the next ``count`` calls or until cleared."""

    mode: str
    api: str | None = None
    count: int | None = None
    delay: float = 5.0

    def to_json(self) -> JSONObject:
        return asdict(self)


def parse_api_fault(body: Mapping[str, Any], apis: Sequence[str]) -> ApiFault | None:
    """The fault a ``POST /admin/<cloud>/faults`` body asks for; None for mode ``none``."""
    unknown_fields(body, frozenset({"mode", "api", "count", "delay"}))
    mode = body.get("mode")
    if mode not in FAULT_MODES:
        raise bad_request(f"mode must be one of {', '.join(FAULT_MODES)}")
    api = body.get("api")
    if api is not None and api not in apis:
        raise bad_request(f"api must be one of {', '.join(apis)} or null (both)")
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise bad_request("count must be a positive integer or null")
    delay = body.get("delay", 5.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise bad_request("delay must be a number of seconds >= 0")
    return None if mode == "none" else ApiFault(mode, api=api, count=count, delay=float(delay))


class ApiFaults(CountedSwitch[ApiFault]):
    """The one active fault, counted down by each call to its API."""

    def take(self, api: str) -> ApiFault | None:
        fault = self.current
        return self.take_if(fault is not None and fault.api in (None, api))


class ApiCalls:
    """Calls per API, per caller (``""`` when the call named none) and outcome.

    ``names`` maps each API to the name its calls have in the JSON, the vendor's name of the
    one operation the stand-in answers there.
    """

    def __init__(self, names: Mapping[str, str]) -> None:
        self._names = dict(names)
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, dict[str, dict[str, int]]] = {api: {} for api in self._names}

    def record(self, api: str, caller: str | None, *, ok: bool) -> None:
        per_caller = self.calls[api].setdefault(caller or "", {"ok": 0, "error": 0})
        per_caller["ok" if ok else "error"] += 1

    def to_json(self) -> JSONObject:
        return {name: self.calls[api] for api, name in self._names.items()}
