"""One exchange per identity per refresh window, however many Secrets share the identity.

Fifty Secrets annotated with one identity would otherwise cost fifty exchanges at every
refresh, all at once after a controller start. So trusted credentials are kept per (subject,
provider, identity, scope) and handed out until the `core.schedule.Schedule` says they are due, and
an exchange is *single-flight*: callers that arrive while one is running for their key await
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

For a provider that cannot verify a credential offline (an ECR password), `known` is the only
trust there is: a password found in a Secret is trusted while it is byte-identical to the one
this cache holds for the Secret's (subject, want), or to the one that one replaced. After a
restart nothing is known, so each (subject, provider, identity, scope) costs one exchange,
shared by all its Secrets.

A namespace may start only so many exchanges (`core.ratelimit.NamespaceBudget`): a caller
that names its namespace and would start one beyond the budget gets a `rate_limited` error
(retryable, with the wait as Retry-After) and starts nothing; joining an exchange already
under way, or being served from the cache, costs nothing. Per-identity state (tokens, held
failures, exchange counts) is swept as it ends, so identities no Secret names any more do not
pile up.

NB: exchanges run in their own tasks, shielded from the callers: a caller that is cancelled
(its watch restarted, say) does not cancel the exchange the other callers wait for.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.core.ratelimit import NamespaceBudget
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.tokens.errors import ExchangeError, TransientExchangeError
from pull_secret_updater.tokens.provider import Subject, TokenProvider

CacheKey = tuple[Subject, tuple[str, str, str]]  # (subject, (provider, identity, scope))
V = TypeVar("V")

#: The fewest tokens at which expired ones are swept out.
SWEEP_MIN = 64


class TokenCache:
    """Trusted registry credentials per (subject, want), with single-flight exchanges.

    `providers` by name (or one provider). `clock` gives epoch seconds (token times are epoch
    seconds). `exchanges` counts the exchanges started per identity, successful or not.
    `failure_hold`: seconds a failed exchange's error is handed to later callers instead of a
    new exchange (0: not at all).
    """

    def __init__(
        self,
        providers: Mapping[str, TokenProvider] | TokenProvider,
        *,
        schedule: Schedule,
        clock: Callable[[], float] = time.time,
        failure_hold: float = 0.0,
        budget: NamespaceBudget | None = None,
    ) -> None:
        self._providers: Mapping[str, TokenProvider] = (
            providers if isinstance(providers, Mapping) else {providers.spec.name: providers}
        )
        self._schedule = schedule
        self._clock = clock
        self._failure_hold = failure_hold
        self._budget = budget
        self._tokens: dict[CacheKey, Credential] = {}
        # The credential each cached one replaced: Secrets not yet refreshed still hold it.
        self._replaced: dict[CacheKey, Credential] = {}
        self._inflight: dict[CacheKey, asyncio.Task[Credential]] = {}
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
        self,
        *,
        want: Want,
        subject: Subject,
        stale: str | None = None,
        namespace: str | None = None,
    ) -> Credential:
        """A credential for `want` as `subject`: the cached one while it is not due (and is
        not `stale`), else a new one. Raises what the provider raises, and a `rate_limited`
        error when a new exchange would overspend `namespace`'s budget."""
        key = (subject, want.exchange_key)
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
            if namespace is not None and self._budget is not None:
                wait = self._budget.take(namespace)
                if wait > 0:
                    raise TransientExchangeError(
                        f"namespace {namespace} started more exchanges than its budget allows "
                        f"(exchange_burst_per_namespace, exchange_rate_per_namespace); the next "
                        f"is possible in {wait:.0f}s",
                        cause="rate_limited",
                        retry_after=math.ceil(wait),
                    )
            task = asyncio.create_task(self._exchange(key, want), name="token exchange")
            task.add_done_callback(lambda done: self._finished(key, done))
            self._inflight[key] = task
        return await asyncio.shield(task)

    def offer(self, *, subject: Subject, want: Want, token: Credential) -> None:
        """Offer a trusted credential of `want` found elsewhere (a Secret written before a
        restart).

        Kept only if it has not expired and expires later than the one cached, so offering
        can never make the cache hand out an older token.
        """
        if self._clock() >= token.expires_at:
            return
        key = (subject, want.exchange_key)
        cached = self._tokens.get(key)
        if cached is None or token.expires_at > cached.expires_at:
            self._keep(key, token)

    def newer(self, *, subject: Subject, want: Want, than: Credential) -> Credential | None:
        """The credential held for `want` as `subject`, if it is usable (not due, still
        trusted) and expires later than `than`; never exchanges."""
        cached = self._tokens.get((subject, want.exchange_key))
        if cached is None or cached.expires_at <= than.expires_at:
            return None
        return cached if self._usable(cached, stale=than.token) else None

    def known(self, *, subject: Subject, want: Want, token: str) -> Credential | None:
        """The credential this cache obtained (or was offered) for `want` as `subject` whose
        password is byte-identical to `token`: the one held, or the one it replaced."""
        key = (subject, want.exchange_key)
        for held in (self._tokens.get(key), self._replaced.get(key)):
            if held is not None and hmac.compare_digest(held.token.encode(), token.encode()):
                return held
        return None

    async def aclose(self) -> None:
        """Cancel the exchanges still running, for a clean shutdown."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _usable(self, token: Credential, *, stale: str | None) -> bool:
        if stale is not None and hmac.compare_digest(token.token.encode(), stale.encode()):
            return False
        if not self._providers[token.provider].still_trusted(token):
            return False
        due = self._schedule.refresh_at(
            token=token.token, issued_at=token.issued_at, expires_at=token.expires_at
        )
        return self._clock() < due

    async def _exchange(self, key: CacheKey, want: Want) -> Credential:
        subject = key[0]
        identity = want.identity
        self.exchanges[identity] = self.exchanges.get(identity, 0) + 1
        try:
            token = await self._providers[want.provider].issue(want=want, subject=subject)
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

    def _keep(self, key: CacheKey, token: Credential) -> None:
        # Expired tokens go whenever the cache has doubled since it was last swept, so keys
        # that stop being asked for (a namespace deleted, an identity no Secret names any
        # more) cannot pile up, at an amortised constant cost per token kept.
        previous = self._tokens.get(key)
        if previous is not None and previous.token != token.token:
            self._replaced[key] = previous
        self._tokens[key] = token
        if len(self._tokens) >= self._sweep_at:
            now = self._clock()
            self._sweep_at = _sweep(self._tokens, lambda t: t.expires_at, now)
            _sweep(self._replaced, lambda t: t.expires_at, now)
            self._forget_counts()

    def _hold(self, key: CacheKey, error: ExchangeError) -> None:
        # Held failures of keys nobody asks for again go the same way as expired tokens.
        self._failed[key] = (self._clock() + self._failure_hold, error)
        if len(self._failed) >= self._held_sweep_at:
            self._held_sweep_at = _sweep(self._failed, lambda held: held[0], self._clock())
            self._forget_counts()

    def _forget_counts(self) -> None:
        # The exchange counts of identities with nothing cached, held or under way go too.
        live = {key[1][1] for key in (*self._tokens, *self._failed, *self._inflight)}
        for identity in [i for i in self.exchanges if i not in live]:
            del self.exchanges[identity]

    def _finished(self, key: CacheKey, task: asyncio.Task[Credential]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]  # cancelled before it ever ran
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody awaited is not reported as lost


def _sweep(entries: dict[CacheKey, V], ends: Callable[[V], float], now: float) -> int:
    """Drop the entries that ended by `now`; the size at which to sweep them next."""
    for old in [k for k, v in entries.items() if ends(v) <= now]:
        del entries[old]
    return max(SWEEP_MIN, 2 * len(entries))
