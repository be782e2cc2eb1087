"""Which Secrets are failing, since when, and how long to wait before trying again.

Every failure of a Secret, expected (the token service said no) or not (a bug, an API answer
nobody foresaw), goes through `record`, which counts the attempt, says whether the cause is
new, i.e. not yet reported (`mark_reported`), so a Warning Event is written once per cause,
not once per retry,
and returns the delay before the next attempt: growing with each attempt, slower for causes
that waiting will not fix, and never shorter than what the server asked for (Retry-After).
A success (or the Secret going away) `clear`s it.

A Secret whose refresh failed because no token could be had for its identity `awaits` that
token: once another Secret's retry brings it (the token service is back), `ready` hands out
the Secrets still waiting for it, to be retried at once from the cache rather than each at
the end of its own, by then long, backoff. Each failing Secret awaits at most one thing, so
waking them costs O(waiting), not O(failing) per success.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass, field

from pull_secret_updater.core.backoff import Backoff

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record` concluded: wait `delay` seconds; `new` if the cause was not reported."""

    delay: float
    new: bool
    attempts: int


@dataclass
class _Failure:
    attempts: int = 0
    #: Steps of the exponential backoff taken: attempts that closed in on an expiry are not.
    steps: int = 0
    reported: str | None = None
    awaits: Hashable | None = None


@dataclass
class Failures:
    """Failure bookkeeping per Secret key."""

    backoff: Backoff
    rng: random.Random = field(default_factory=random.Random)
    _failing: dict[Key, _Failure] = field(default_factory=dict)
    _waiting: dict[Hashable, set[Key]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._failing)

    def __contains__(self, key: object) -> bool:
        return key in self._failing

    def record(
        self,
        key: Key,
        *,
        message: str,
        retryable: bool = True,
        retry_after: float | None = None,
        expires_in: float | None = None,
        awaits: Hashable | None = None,
    ) -> Recorded:
        """Count a failed attempt; see `Backoff.delay` for `expires_in`, the module for `awaits`."""
        failure = self._failing.setdefault(key, _Failure())
        failure.attempts += 1
        self._await(key, failure, awaits)
        new = failure.reported != message
        step = failure.steps + 1
        delay = self.backoff.delay(
            attempt=step,
            rng=self.rng,
            retryable=retryable,
            retry_after=retry_after,
            expires_in=expires_in,
        )
        if not self.backoff.closes_in(attempt=step, retryable=retryable, expires_in=expires_in):
            failure.steps = step
        return Recorded(delay=delay, new=new, attempts=failure.attempts)

    def ready(self, awaited: Hashable) -> set[Key]:
        """`awaited` is there now: the failing keys that were waiting for it (they still fail
        until `clear`ed, and await nothing more)."""
        keys = self._waiting.pop(awaited, set())
        for key in keys:
            self._failing[key].awaits = None
        return keys

    def mark_reported(self, key: Key, *, message: str) -> None:
        """`message` was reported (Event, last-error): `record` no longer calls it new.

        Only a replica that may write reports; a standby's failures stay new until the leader
        reports them.
        """
        failure = self._failing.get(key)
        if failure is not None:
            failure.reported = message

    def clear(self, key: Key) -> None:
        failure = self._failing.pop(key, None)
        if failure is not None:
            self._await(key, failure, None)

    def _await(self, key: Key, failure: _Failure, awaits: Hashable | None) -> None:
        if failure.awaits is not None:
            waiting = self._waiting[failure.awaits]
            waiting.discard(key)
            if not waiting:
                del self._waiting[failure.awaits]
        failure.awaits = awaits
        if awaits is not None:
            self._waiting.setdefault(awaits, set()).add(key)
