"""What the service counts and remembers, for tests to assert on.

Counting is how a test shows the *absence* of work: that N Secrets sharing an identity cost
one exchange, or that a client cached the STS's keys instead of fetching them per token.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from devstack.tokenservice.protocol import JSONObject

#: How many issued tokens ``/admin/issued`` remembers; older ones are dropped (and counted).
MAX_ISSUED: Final = 100_000


class Stats:
    """Exchanges per identity UID (ok = a normal token was issued), tokens issued otherwise,
    and requests for the STS's discovery document and JWKS (whatever they were answered).

    ``in_flight`` counts, per identity UID, the exchanges being answered right now (a ``slow``
    fault keeps them open), so a test can act while a client waits for an answer; a reset
    leaves it alone.
    """

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.exchanges: dict[str, dict[str, int]] = {}
        self.exchanges_total = {"ok": 0, "error": 0}
        self.registry_tokens = 0
        self.minted_tokens = 0
        self.discovery_fetches = 0
        self.jwks_fetches = 0

    def record_exchange(self, uid: str | None, *, ok: bool) -> None:
        outcome = "ok" if ok else "error"
        self.exchanges_total[outcome] += 1
        if uid is not None:
            self.exchanges.setdefault(uid, {"ok": 0, "error": 0})[outcome] += 1

    def to_json(self) -> JSONObject:
        return {
            "exchanges": self.exchanges,
            "exchanges_total": self.exchanges_total,
            "registry_tokens": self.registry_tokens,
            "minted_tokens": self.minted_tokens,
            "discovery_fetches": self.discovery_fetches,
            "jwks_fetches": self.jwks_fetches,
            "in_flight": {uid: n for uid, n in self.in_flight.items() if n},
        }


class IssuedTokens:
    """Every token handed out, oldest first, so a test can search what a client emitted for them.

    ``kind`` is ``sts`` (an exchange answer, faulty ones included, or a token minted through
    the admin API), ``registry`` (the registries' token endpoints) or ``aws`` (the AWS
    stand-in's secret keys, session tokens and ECR passwords). Bounded by ``limit``;
    ``dropped`` counts what fell off.
    """

    def __init__(self, *, limit: int = MAX_ISSUED) -> None:
        self._items: deque[tuple[str, str]] = deque(maxlen=limit)
        self.dropped = 0

    def add(self, kind: str, token: str) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append((kind, token))

    def to_json(self) -> JSONObject:
        return {
            "items": [{"kind": kind, "token": token} for kind, token in self._items],
            "dropped": self.dropped,
        }
