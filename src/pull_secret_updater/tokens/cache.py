"""One exchange per identity per refresh window, however many Secrets share the identity.

Fifty Secrets annotated with one identity would otherwise cost fifty exchanges at every
refresh, all at once after a controller start. So verified tokens are kept per (subject,
identity) and handed out until the `core.schedule.Schedule` says they are due, and an
exchange is *single-flight*: callers that arrive while one is running for their key await
that same exchange, and share its result or its error. A failure is shared for
`failure_hold` seconds more: during an outage, however many Secrets of an identity retry, and
however closely their retries close in on their tokens' common expiry (`core.backoff`), the
token service sees about one exchange per identity per hold. When each caller retries is its
own business (a Retry-After travels with the error and each caller obeys it from when it
got it; the hold does not stretch to it, so one 429 does not keep a Secret that never asked
from trying for up to an hour).

A Secret whose token is due asks with that token as `stale`: the cache never hands the same
token back (it is due for the cache too), but does hand out a newer one that another
Secret's refresh already brought. Tokens found in Secrets after a restart are offered with
`offer`; only tokens that verified reach the cache, and only a later-expiring one replaces
what it holds. A cached token whose signing key the token service no longer publishes is
not handed out.

NB: exchanges run in their own tasks, shielded from the callers: a caller that is cancelled
(its watch restarted, say) does not cancel the exchange the other callers wait for.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from typing import TypeVar

from pull_secret_updater.core.claims import VerifiedToken
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.tokens.errors import ExchangeError
from pull_secret_updater.tokens.provider import Subject, TokenProvider

CacheKey = tuple[Subject, str]  # (subject, identity)
V = TypeVar("V")

#: The fewest tokens at which expired ones are swept out.
SWEEP_MIN = 64


class TokenCache:
    """Verified registry tokens per (subject, identity), with single-flight exchanges.

    `clock` gives epoch seconds (token times are epoch seconds). `exchanges` counts the
    exchanges started per identity, successful or not. `failure_hold`: seconds a failed
    exchange's error is handed to later callers instead of a new exchange (0: not at all).
    """

    def __init__(
        self,
        provider: TokenProvider,
        *,
        schedule: Schedule,
        clock: Callable[[], float] = time.time,
        failure_hold: float = 0.0,
    ) -> None:
        self._provider = provider
        self._schedule = schedule
        self._clock = clock
        self._failure_hold = failure_hold
        self._tokens: dict[CacheKey, VerifiedToken] = {}
        self._inflight: dict[CacheKey, asyncio.Task[VerifiedToken]] = {}
        self._failed: dict[CacheKey, tuple[float, ExchangeError]] = {}
        self._sweep_at = SWEEP_MIN
        self._held_sweep_at = SWEEP_MIN
        self.exchanges: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokens={len(self._tokens)})"

    @property
    def held_failures(self) -> int:
        """How many failed exchanges are kept to be shared (some may have ended)."""
        return len(self._failed)

    async def get(
        self, *, identity: str, subject: Subject, stale: str | None = None
    ) -> VerifiedToken:
        """A token for `identity` as `subject`: the cached one while it is not due (and is
        not `stale`), else a new one. Raises what the provider raises."""
        key = (subject, identity)
        cached = self._tokens.get(key)
        if cached is not None and self._usable(cached, stale=stale):
            return cached
        failed = self._failed.get(key)
        if failed is not None:
            until, error = failed
            if self._clock() < until:
                raise error.with_traceback(None)
            del self._failed[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._exchange(key), name="token exchange")
            task.add_done_callback(lambda done: self._finished(key, done))
            self._inflight[key] = task
        return await asyncio.shield(task)

    def offer(self, *, subject: Subject, token: VerifiedToken) -> None:
        """Offer a verified token found elsewhere (a Secret written before a restart).

        Kept only if it has not expired and expires later than the one cached, so offering
        can never make the cache hand out an older token.
        """
        if self._clock() >= token.expires_at:
            return
        key = (subject, token.identity)
        cached = self._tokens.get(key)
        if cached is None or token.expires_at > cached.expires_at:
            self._keep(key, token)

    async def aclose(self) -> None:
        """Cancel the exchanges still running, for a clean shutdown."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _usable(self, token: VerifiedToken, *, stale: str | None) -> bool:
        if stale is not None and hmac.compare_digest(token.token, stale):
            return False
        if not self._provider.still_trusted(token):
            return False
        due = self._schedule.refresh_at(
            token=token.token, issued_at=token.issued_at, expires_at=token.expires_at
        )
        return self._clock() < due

    async def _exchange(self, key: CacheKey) -> VerifiedToken:
        subject, identity = key
        self.exchanges[identity] = self.exchanges.get(identity, 0) + 1
        try:
            token = await self._provider.issue(identity=identity, subject=subject)
        except ExchangeError as e:
            if self._failure_hold > 0:
                self._hold(key, e)
            raise
        finally:
            # NB: here rather than only in the done callback, which runs a loop iteration
            # later: a caller arriving in between must see this outcome's hold, or start afresh.
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]
        self._failed.pop(key, None)
        self._keep(key, token)
        return token

    def _keep(self, key: CacheKey, token: VerifiedToken) -> None:
        # Expired tokens go whenever the cache has doubled since it was last swept, so keys
        # that stop being asked for (a namespace deleted, an identity no Secret names any
        # more) cannot pile up, at an amortised constant cost per token kept.
        self._tokens[key] = token
        if len(self._tokens) >= self._sweep_at:
            self._sweep_at = _sweep(self._tokens, lambda t: t.expires_at, self._clock())

    def _hold(self, key: CacheKey, error: ExchangeError) -> None:
        # Held failures of keys nobody asks for again go the same way as expired tokens.
        self._failed[key] = (self._clock() + self._failure_hold, error)
        if len(self._failed) >= self._held_sweep_at:
            self._held_sweep_at = _sweep(self._failed, lambda held: held[0], self._clock())

    def _finished(self, key: CacheKey, task: asyncio.Task[VerifiedToken]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]  # cancelled before it ever ran
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody awaited is not reported as lost


def _sweep(entries: dict[CacheKey, V], ends: Callable[[V], float], now: float) -> int:
    """Drop the entries that ended by `now`; the size at which to sweep them next."""
    for old in [k for k, v in entries.items() if ends(v) <= now]:
        del entries[old]
    return max(SWEEP_MIN, 2 * len(entries))
