"""One exchange per identity per refresh window, however many Secrets share the identity.

Fifty Secrets annotated with one identity would otherwise cost fifty exchanges at every
refresh, all at once after a controller start. So tokens are kept per identity and reused
until their refresh point, and an exchange is *single-flight*: callers that arrive while one
is running for their identity await that same exchange, and share its result or its error.
A failure is not remembered: the next call after it tries again (when is the caller's
business, see `core.timing.backoff`).

The refresh point here is deterministic (a fraction of the token's lifetime, capped at a
margin before expiry, `core.timing.refresh_at` without jitter). Each Secret's own, jittered
refresh time is decided by the reconciler, and may come before the cache's. So that a due
Secret never gets back the token it already holds, the reconciler calls `forget_token` with
that token first: the cache drops it if it is the one cached, and keeps a newer one that an
earlier Secret's refresh brought.

NB: exchanges run in their own tasks, shielded from the callers: a caller that is cancelled
(its watch restarted, say) does not cancel the exchange the other callers wait for.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import random
import time
from collections.abc import Callable

from pull_secret_updater.core.timing import refresh_at
from pull_secret_updater.tokens.provider import IssuedToken, TokenProvider

DEFAULT_FRACTION = 2 / 3
DEFAULT_MARGIN = 60.0

#: With jitter 0, refresh_at draws nothing that matters from it; one shared instance will do.
_NO_JITTER = random.Random(0)  # noqa: S311 - not used for anything secret


class TokenCache:
    """Per-identity registry tokens with single-flight exchanges.

    `clock` gives epoch seconds (token times are epoch seconds). `exchanges` counts the
    exchanges started per identity, successful or not.
    """

    def __init__(
        self,
        provider: TokenProvider,
        *,
        clock: Callable[[], float] = time.time,
        refresh_fraction: float = DEFAULT_FRACTION,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        if not 0 < refresh_fraction < 1:
            raise ValueError("refresh_fraction must be between 0 and 1")
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError("margin must be a finite number of seconds >= 0")
        self._provider = provider
        self._clock = clock
        self.refresh_fraction = refresh_fraction
        self.margin = margin
        self._tokens: dict[str, IssuedToken] = {}
        self._inflight: dict[str, asyncio.Task[IssuedToken]] = {}
        self.exchanges: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identities={len(self._tokens)})"

    def refresh_point(self, token: IssuedToken) -> float:
        """When the cache stops handing out `token` and exchanges again (epoch seconds)."""
        return refresh_at(
            issued_at=token.issued_at,
            expires_at=token.expires_at,
            margin=self.margin,
            rng=_NO_JITTER,
            fraction=self.refresh_fraction,
            jitter=0.0,
        )

    async def get(self, *, identity: str, not_before_refresh: bool = True) -> IssuedToken:
        """A token for `identity`: the cached one before its refresh point, else a new one.

        With `not_before_refresh=False` the cached token is not reused at all (the caller
        knows it to be stale or refused); an exchange already running is still shared.
        Raises what the provider raises (`errors.ExchangeError`).
        """
        if not_before_refresh:
            cached = self._tokens.get(identity)
            if cached is not None and self._clock() < self.refresh_point(cached):
                return cached
        task = self._inflight.get(identity)
        if task is None:
            task = asyncio.create_task(self._exchange(identity), name="token exchange")
            task.add_done_callback(lambda done: self._finished(identity, done))
            self._inflight[identity] = task
        return await asyncio.shield(task)

    def peek(self, identity: str) -> IssuedToken | None:
        """The cached token for `identity` if it has not expired; never exchanges."""
        cached = self._tokens.get(identity)
        if cached is None or self._clock() >= cached.expires_at:
            return None
        return cached

    def seed(self, identity: str, token: IssuedToken) -> None:
        """Offer a token found elsewhere (a Secret we wrote before a restart).

        Kept only if it has not expired and expires later than the one cached, so seeding
        can never make the cache hand out an older token.
        """
        if self._clock() >= token.expires_at:
            return
        cached = self._tokens.get(identity)
        if cached is None or token.expires_at > cached.expires_at:
            self._tokens[identity] = token

    def forget(self, identity: str) -> None:
        """Drop the cached token (no Secret uses the identity any more, or it was refused)."""
        self._tokens.pop(identity, None)

    def forget_token(self, *, identity: str, token: str) -> None:
        """Drop the cached token for `identity` only if it is `token`.

        For a Secret whose own refresh time has come: if the cache still holds the very token
        the Secret has, that token is due as well, and the next `get` exchanges. A newer token
        cached by another Secret's refresh is kept and shared.
        """
        cached = self._tokens.get(identity)
        if cached is not None and hmac.compare_digest(cached.token, token):
            del self._tokens[identity]

    async def aclose(self) -> None:
        """Cancel the exchanges still running, for a clean shutdown."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _exchange(self, identity: str) -> IssuedToken:
        self.exchanges[identity] = self.exchanges.get(identity, 0) + 1
        try:
            token = await self._provider.issue(identity=identity)
        finally:
            # NB: here rather than only in the done callback, which runs a loop iteration
            # later: a caller arriving in between must start afresh, not get this outcome.
            if self._inflight.get(identity) is asyncio.current_task():
                del self._inflight[identity]
        self._tokens[identity] = token
        return token

    def _finished(self, identity: str, task: asyncio.Task[IssuedToken]) -> None:
        if self._inflight.get(identity) is task:
            del self._inflight[identity]  # cancelled before it ever ran
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody awaited is not reported as lost
