"""Filling a Secret: credentials obtained concurrently, written in one write, reported.

The reconcile step (`reconcile`) decides which parts of a Secret need a credential; this is
what it then does with them: obtain each from the token cache (one exchange per identity per
window, the exchanges of different providers running side by side), write every credential
obtained in one optimistic-concurrency write that keeps all the entries the controller does
not own, and say what happened (one Normal Event per write, naming each part filled; the
next look). A part whose exchange failed becomes a `PartFailure`, which the step reports with
the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from lightkube import AsyncClient

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.decision import Fill, Problem, Request
from pull_secret_updater.core.dockerconfig import with_entries
from pull_secret_updater.core.providers import ProviderSpec, filled_identity_key
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.core.status import status_annotations
from pull_secret_updater.kube.errors import Conflict, KubeError, NotFound, Unprocessable
from pull_secret_updater.kube.secrets import SecretObject, get_secret, write_secret
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.outcome import DONE, Key, Outcome
from pull_secret_updater.runtime.reporting import Reporter
from pull_secret_updater.runtime.store import SecretStore
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.errors import ExchangeError, KeysUnavailable
from pull_secret_updater.tokens.provider import Subject

log = structlog.get_logger("pull_secret_updater.controller")


@dataclass(frozen=True, slots=True)
class PartFailure:
    """A part of a Secret that could not be filled this time, and how to retry it."""

    problem: Problem
    retryable: bool
    retry_after: float | None = None
    before: float | None = None
    awaits: object | None = None
    #: The fill whose credential could not be obtained, if that was the failure.
    fill: Fill | None = None


@dataclass(kw_only=True)
class Filler:
    """Obtains, writes and reports credentials for the parts of a Secret to fill."""

    client: AsyncClient
    store: SecretStore
    tokens: TokenCache
    specs: Sequence[ProviderSpec]
    schedule: Schedule
    reporter: Reporter
    failures: Failures
    metrics: Metrics
    may_write: Callable[[], bool]
    not_writing: Callable[[], Outcome]
    wake: Callable[[Key], None]
    drop: Callable[[Key], None]
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        # Each provider's filled-identity annotation, looked up at every write.
        self._filled_keys = {spec.name: filled_identity_key(spec) for spec in self.specs}

    async def obtain(
        self, fills: Sequence[Fill], *, subject: Subject, namespace: str
    ) -> tuple[list[tuple[Fill, Credential]], list[PartFailure]]:
        """A credential for each fill, the exchanges running concurrently."""
        results = await asyncio.gather(
            *(
                self.tokens.get(want=f.want, subject=subject, stale=f.stale, namespace=namespace)
                for f in fills
            ),
            return_exceptions=True,
        )
        obtained: list[tuple[Fill, Credential]] = []
        failed: list[PartFailure] = []
        for fill, result in zip(fills, results, strict=True):
            if isinstance(result, Credential):
                obtained.append((fill, result))
                continue
            if not isinstance(result, ExchangeError):
                raise result  # a bug: the worker loop logs it and retries with backoff
            self.metrics.refresh_failures.labels(
                provider=fill.want.provider, cause=result.cause
            ).inc()
            keys = isinstance(result, KeysUnavailable)
            failed.append(
                PartFailure(
                    problem=Problem(
                        provider=fill.want.provider,
                        reason=_reason_of(result),
                        message=(
                            f"cannot verify tokens, so none is exchanged: {result}"
                            if keys
                            else str(result)
                        ),
                    ),
                    retryable=result.retryable,
                    retry_after=result.retry_after,
                    before=fill.stale_expires_at,
                    awaits=(fill.want.exchange_key, subject),
                    fill=fill,
                )
            )
        return obtained, failed

    async def write(
        self,
        secret: SecretObject,
        request: Request,
        obtained: Sequence[tuple[Fill, Credential]],
        *,
        trusted: Sequence[Credential],
        clear_error: bool,
    ) -> SecretObject | Outcome:
        """Write every credential obtained in one write; the stored object, or when to look
        again if the write did not happen."""
        key = (secret.namespace, secret.name)
        now = self.clock()
        if not self.may_write():
            return self.not_writing()
        entries = {
            host: (credential.username, credential.token)
            for fill, credential in obtained
            for host in fill.want.registries
        }
        filled = {self._filled_keys[fill.want.provider]: fill.identity for fill, _ in obtained}
        earliest = earliest_expiry([*trusted, *(credential for _, credential in obtained)])
        # The expiry of the credentials being replaced, which retries must come before.
        before = min(
            (f.stale_expires_at for f, _ in obtained if f.stale_expires_at is not None),
            default=None,
        )
        try:
            written = await write_secret(
                self.client,
                secret,
                docker_config=with_entries(request.config, entries),
                annotations=status_annotations(
                    filled=filled,
                    expires_at=earliest,
                    refreshed_at=now,
                    clear_error=clear_error,
                ),
            )
        except Conflict:
            # Someone else changed the Secret since we read it: read it again and decide again.
            # The credentials stay cached, so the retry costs a read and a write, not an
            # exchange. Once at once; a writer that keeps changing it (a tool reverting our
            # writes) gets the growing delays of a failure rather than a read-write loop.
            self.metrics.secret_writes.labels(outcome="conflict").inc()
            recorded = self.failures.record(
                key,
                message="the Secret changed under each write",
                expires_in=None if before is None else before - self.clock(),
            )
            return await self._reread(key, delay=recorded.delay if recorded.attempts > 1 else 0.0)
        except NotFound:
            log.info("Secret deleted before it could be filled", namespace=key[0], name=key[1])
            self.drop(key)
            return DONE
        except KubeError as e:
            self.metrics.secret_writes.labels(outcome="error").inc()
            for fill, _ in obtained:
                self.metrics.refresh_failures.labels(
                    provider=fill.want.provider, cause="write"
                ).inc()
            return await self.reporter.failed(
                secret,
                reason=Reason.WRITE_FAILED,
                message=f"writing the Secret failed: {e}",
                # A write the API server finds invalid (a Secret over the size limit, say)
                # will not succeed by itself: retry it at the slow rate.
                retryable=not isinstance(e, Unprocessable),
                before=before,
            )
        self.metrics.secret_writes.labels(outcome="success").inc()
        self.store.keep(written)
        return written

    def filled(
        self,
        written: SecretObject,
        obtained: Sequence[tuple[Fill, Credential]],
        *,
        subject: Subject,
    ) -> tuple[Outcome, list[PartFailure]]:
        """Events, logs and the next look after credentials were written; the credentials
        that were due on arrival, as failures."""
        key = (written.namespace, written.name)
        now = self.clock()
        outcome = DONE
        due: list[PartFailure] = []
        # One Event per write, whatever the number of entries it filled: each Event is an
        # API request, and a write of two providers' entries is one change to the Secret.
        reported: list[tuple[Reason, str]] = []
        logged: list[tuple[Fill, str]] = []
        for fill, credential in obtained:
            when = self.schedule.refresh_at(
                token=credential.token,
                issued_at=credential.issued_at,
                expires_at=credential.expires_at,
                written_at=now,
                now=now,
            )
            if when <= now:
                # Due already on arrival: exchanging again at once would only bring another
                # such credential, in a loop. It is written (it still pulls); the next try
                # backs off.
                problem = Problem(
                    provider=fill.want.provider,
                    reason=Reason.TOKEN_TOO_SHORT_LIVED,
                    message=f"the token service's token for identity {fill.identity} was due "
                    "for refresh on arrival: it had less than the refresh margin "
                    f"({self.schedule.margin:g}s) left on this clock. Check that the "
                    "token service's clock and this node's agree, or lower refresh_margin",
                )
                due.append(PartFailure(problem=problem, retryable=True))
                continue
            outcome = outcome.sooner(Outcome(when - now))
            # Secrets that failed for want of this credential retry now, from the cache
            # (which hands it out: it is not due, or it would have been reported above).
            for waiting in self.failures.ready((fill.want.exchange_key, subject)):
                if waiting != key:
                    self.wake(waiting)
            expires = ann.format_time(credential.expires_at)
            hosts = ", ".join(fill.want.registries)
            logged.append((fill, expires))
            reported.append(
                (
                    fill.event_reason,
                    f"{fill.event_reason} {hosts} token for identity {fill.identity} "
                    f"({fill.why}); expires at {expires}",
                )
            )
        # One log line per write too: a mass fill or refresh logs as many lines as it writes.
        if len(logged) == 1:
            fill, expires = logged[0]
            log.info("token written", namespace=key[0], name=key[1], provider=fill.want.provider,
                     identity=fill.identity, why=fill.why, expires_at=expires)  # fmt: skip
        elif logged:
            log.info(
                "tokens written",
                namespace=key[0],
                name=key[1],
                provider=[fill.want.provider for fill, _ in logged],
                identity=[fill.identity for fill, _ in logged],
                why=[fill.why for fill, _ in logged],
                expires_at=[expires for _, expires in logged],
            )
        if reported:
            reasons = {reason for reason, _ in reported}
            self.reporter.filled(
                written,
                reason=Reason.FILLED if Reason.FILLED in reasons else Reason.REFRESHED,
                message=". ".join(message for _, message in reported),
            )
        return outcome, due

    async def _reread(self, key: Key, *, delay: float) -> Outcome:
        try:
            fresh = await get_secret(self.client, namespace=key[0], name=key[1])
        except KubeError as e:
            log.warning("re-reading a Secret failed", namespace=key[0], name=key[1], error=str(e))
            if key not in self.store:
                return DONE
            return Outcome(self.failures.record(key, message=f"re-reading failed: {e}").delay)
        if fresh is None or key not in self.store:
            self.drop(key)
            return DONE
        self.store.observe(fresh)
        return Outcome(delay)


def earliest_expiry(trusted: Sequence[Credential]) -> float | None:
    """The earliest expiry of the credentials trusted in a Secret: its `expires-at`."""
    return min((credential.expires_at for credential in trusted), default=None)


def _reason_of(error: ExchangeError) -> Reason:
    if isinstance(error, KeysUnavailable):
        return Reason.VERIFICATION_UNAVAILABLE
    if error.cause == "rate_limited":
        return Reason.RATE_LIMITED
    return Reason.EXCHANGE_FAILED
