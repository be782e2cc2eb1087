"""How many exchanges one namespace may start: a token bucket per namespace.

Whoever may write a managed Secret chooses which identity it names, and every new identity
costs an exchange at the token service, made with the controller's credentials. Without a
bound, one namespace rewriting its annotation in a loop would spend the token service's
patience (its rate limits, its error budget) for every other namespace, and keep the
controller's workers busy. So each namespace may start at most `burst` exchanges at once and
`rate` per second after that; a Secret over its namespace's budget is told when to come back
and the worker moves on, so no other namespace waits for it.

Only exchanges count: Secrets served from the cache (the same identity's token, already
obtained) cost nothing, so a namespace with many Secrets of a few identities never notices.
Buckets that are full again are forgotten, so the state is bounded by the namespaces active
within the last `burst / rate` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class NamespaceBudget:
    """`burst` exchanges at once per namespace, refilled at `rate` per second; `clock` gives
    seconds (any monotonic origin)."""

    rate: float
    burst: float
    clock: Callable[[], float]
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _sweep_at: int = 64

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError("rate must be a number of exchanges per second > 0")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError("burst must be at least 1")

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, namespace: str) -> float:
        """Spend one exchange of `namespace`'s budget: 0 when it had one, else (spending
        nothing) the seconds until it will have one."""
        now = self.clock()
        bucket = self._buckets.get(namespace)
        if bucket is None:
            bucket = self._buckets[namespace] = _Bucket(tokens=self.burst, at=now)
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
        tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = now
        if tokens >= 1:
            bucket.tokens = tokens - 1
            return 0.0
        bucket.tokens = tokens
        return (1 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: forget it.
        full = [
            ns
            for ns, b in self._buckets.items()
            if b.tokens + max(0.0, now - b.at) * self.rate >= self.burst
        ]
        for namespace in full:
            del self._buckets[namespace]
        self._sweep_at = max(64, 2 * len(self._buckets))
