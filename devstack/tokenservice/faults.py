"""Injected faults: how the STS misbehaves when a test asks it to.

One fault is active at a time. It acts on a *target*: ``exchange`` (``/sts/exchange``, the
default) or ``keys`` (the discovery document and the JWKS, so a test can take the keys away
while exchanges keep working). It lasts for ``count`` requests to its target and/or
``duration`` seconds, or until replaced or cleared.

Modes: ``refuse`` closes the STS listener's socket (exchange target only: it takes everything
on that listener down); ``status`` answers an error with that status; ``slow`` answers after
``delay`` seconds (a long delay is a hang); ``malformed`` answers a body that is not JSON; and,
for exchanges only, ``expired``, ``no_exp`` and ``garbage_token`` issue a bad token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from devstack.tokenservice.protocol import JSONObject, bad_request, unknown_fields

FAULT_MODES: Final = (
    "none",
    "refuse",
    "status",
    "slow",
    "malformed",
    "expired",
    "no_exp",
    "garbage_token",
)
EXCHANGE: Final = "exchange"
KEYS: Final = "keys"
FAULT_TARGETS: Final = (EXCHANGE, KEYS)
KEYS_MODES: Final = frozenset({"status", "slow", "malformed"})
_FAULT_FIELDS: Final = frozenset({"mode", "status", "delay", "count", "duration", "target"})


@dataclass(frozen=True)
class Fault:
    """How ``target`` misbehaves, for ``count`` requests and/or ``duration`` seconds."""

    mode: str
    status: int = 503
    delay: float = 5.0
    count: int | None = None
    duration: float | None = None
    target: str = EXCHANGE

    def to_json(self) -> JSONObject:
        return dataclasses.asdict(self)


def _number(body: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise bad_request(f"{key} must be a number")
    return value


def parse_fault(body: Mapping[str, Any]) -> Fault | None:
    """The fault a ``POST /admin/faults`` body asks for; None for mode ``none``."""
    unknown_fields(body, _FAULT_FIELDS)
    mode = body.get("mode")
    if mode not in FAULT_MODES:
        raise bad_request(f"mode must be one of {', '.join(FAULT_MODES)}")
    target = body.get("target") or EXCHANGE
    if target not in FAULT_TARGETS:
        raise bad_request(f"target must be one of {', '.join(FAULT_TARGETS)}")
    status = _number(body, "status", 503)
    delay = _number(body, "delay", 5.0)
    count = _number(body, "count", None)
    duration = _number(body, "duration", None)
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise bad_request("status must be an HTTP error status (400-599)")
    if delay is None or delay < 0:
        raise bad_request("delay must be a number of seconds >= 0")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise bad_request("count must be a positive integer or null")
    if duration is not None and duration <= 0:
        raise bad_request("duration must be a positive number of seconds or null")
    if mode == "refuse" and count is not None:
        # Refused connections never reach the service, so there is nothing to count.
        raise bad_request("refuse cannot be limited by count; use duration or clear it")
    if target == KEYS and mode != "none" and mode not in KEYS_MODES:
        raise bad_request(f"mode for target keys must be one of {', '.join(sorted(KEYS_MODES))}")
    if mode == "none":
        return None
    return Fault(
        mode, status=status, delay=float(delay), count=count, duration=duration, target=target
    )


class Countable(Protocol):
    """A fault as `CountedSwitch` keeps it: how many requests it lasts, and its JSON."""

    @property
    def count(self) -> int | None: ...

    def to_json(self) -> JSONObject: ...


F = TypeVar("F", bound=Countable)


class CountedSwitch(Generic[F]):
    """The one active fault, counted down by each request it acts on."""

    def __init__(self) -> None:
        self._fault: F | None = None
        self._left: int | None = None

    @property
    def current(self) -> F | None:
        return self._fault

    def set(self, fault: F | None) -> None:
        self._fault = fault
        self._left = fault.count if fault else None

    def take_if(self, applies: bool) -> F | None:
        """The fault, counted down, if it `applies` to the request now arriving."""
        fault = self._fault
        if fault is None or not applies:
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


class FaultSwitch(CountedSwitch[Fault]):
    """The STS's fault, counted down by each request to its target."""

    def take(self, target: str = EXCHANGE) -> Fault | None:
        """The fault for the request to ``target`` now arriving, if any."""
        fault = self.current
        return self.take_if(fault is not None and fault.mode != "refuse" and fault.target == target)
