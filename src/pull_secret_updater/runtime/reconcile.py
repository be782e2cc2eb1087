"""One reconcile of one Secret: look at it, do what the pure core decides, say when to look again.

The step, for a Secret the watch stored:

1. `core.decision.inspect` says whether it is ours and fit to be filled, and what each
   provider is asked for (a Secret may ask several);
2. each part's credential is looked at: verified by its provider, or recognised as one this
   process obtained (`TokenCache.known`); `core.decision.decide` says fill or wait;
3. the parts to fill get a credential from the cache (one exchange per identity per window),
   concurrently, and every credential obtained is written in one optimistic-concurrency write;
   a part whose exchange failed is reported, and does not hold up the others;
4. status: `expires-at` from the credentials trusted (never from what the Secret said), a
   Normal Event per part filled, the problems of the others in `last-error` and one Warning
   Event per new cause.

Every exit says why it is safe. NB: the controller's own write comes back as a watch event.
The object the write returned is stored, so that event carries a resourceVersion already in
the store and is dropped; if it does get reconciled, every part holds a trusted credential of
its own, the decision is `Wait`, and no write and no exchange follows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from lightkube import AsyncClient

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.decision import (
    Fill,
    Ignore,
    Invalid,
    Part,
    Problem,
    Request,
    SecretView,
    Untrusted,
    Verdict,
    Wait,
    cleared_status,
    decide,
    expiry_drift,
    inspect,
    problems_message,
    status_annotations,
)
from pull_secret_updater.core.dockerconfig import with_entries
from pull_secret_updater.core.policy import Policy
from pull_secret_updater.core.providers import ProviderSpec, Want, filled_identity_key
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.kube.errors import Conflict, KubeError, NotFound, Unprocessable
from pull_secret_updater.kube.namespaces import NamespaceLabels
from pull_secret_updater.kube.secrets import SecretObject, get_secret, write_secret
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.outcome import DONE, Key, Outcome
from pull_secret_updater.runtime.reporting import Reporter
from pull_secret_updater.runtime.store import SecretStore
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.errors import ExchangeError, KeysUnavailable
from pull_secret_updater.tokens.provider import Subject, TokenProvider

log = structlog.get_logger("pull_secret_updater.controller")


@dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    """What the controller manages and by which rules (built from settings by `wiring`).

    secret_names: the managed Secret names, each followed in every namespace.
    schedule: when a credential is refreshed.
    policy: which identities of which provider each namespace may use.
    subject_for: the ServiceAccount whose token is exchanged for a Secret in a namespace.
    """

    secret_names: tuple[str, ...]
    schedule: Schedule
    policy: Policy
    subject_for: Callable[[str], Subject]


@dataclass(frozen=True, slots=True)
class _Failed:
    """A part that could not be filled this time, and how to retry it."""

    problem: Problem
    retryable: bool
    retry_after: float | None = None
    before: float | None = None
    awaits: object | None = None


@dataclass(kw_only=True)
class Reconciler:
    """Reconciles one Secret at a time (see the module docstring).

    `may_write` says whether this replica may write now; `not_writing` what a reconcile that
    may not concludes (the loop's leadership business).
    """

    config: ControllerConfig
    client: AsyncClient
    store: SecretStore
    tokens: TokenCache
    providers: Mapping[str, TokenProvider]
    reporter: Reporter
    failures: Failures
    metrics: Metrics
    may_write: Callable[[], bool]
    not_writing: Callable[[], Outcome]
    wake: Callable[[Key], None]
    labels: NamespaceLabels | None = None
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._specs: tuple[ProviderSpec, ...] = tuple(p.spec for p in self.providers.values())

    async def reconcile(self, key: Key) -> Outcome:
        """Look at the Secret `key` once and act on what the core decides."""
        secret = self.store.get(key)
        if secret is None or secret.deleting:
            self.drop(key)
            return DONE
        labels = None
        if self.config.policy.needs_labels and self.labels is not None:
            try:
                labels = await self.labels.get(secret.namespace)
            except KubeError as e:
                self.store.manage(key, expires_at=None)
                return await self.reporter.failed(
                    secret,
                    reason=Reason.POLICY_UNAVAILABLE,
                    message=f"cannot apply the identity policy: {e} (the policy selects "
                    "namespaces by label, so the controller needs get on namespaces)",
                )
        found = inspect(
            _view(secret),
            providers=self._specs,
            policy=self.config.policy,
            namespace_labels=labels,
        )
        if isinstance(found, Ignore):
            self.failures.clear(key)
            self.store.unmanage(key)
            await self.reporter.write_status(
                secret, cleared_status(secret.annotations, providers=self._specs)
            )
            return DONE
        if isinstance(found, Invalid):
            # Stays until the Secret is edited, which the watch reports: no retry.
            self.store.manage(key, expires_at=None)
            return await self.reporter.failed(
                secret, reason=found.reason_code, message=found.message, retry=False,
                retryable=False,
            )  # fmt: skip
        return await self._request(secret, found)

    def drop(self, key: Key) -> None:
        self.store.drop(key)
        self.failures.clear(key)

    async def _request(self, secret: SecretObject, request: Request) -> Outcome:
        key = (secret.namespace, secret.name)
        subject = self.config.subject_for(secret.namespace)
        now = self.clock()
        failed = [self._problem(p) for p in request.problems]
        waits: list[Wait] = []
        fills: list[Fill] = []
        for part in request.parts:
            try:
                verdict = await self._verdict(part, subject=subject)
            except ExchangeError as e:
                failed.append(
                    _Failed(
                        problem=Problem(
                            provider=part.provider,
                            reason=Reason.VERIFICATION_UNAVAILABLE,
                            message=f"cannot verify the token in the Secret: {e}",
                        ),
                        retryable=e.retryable,
                    )
                )
                continue
            decision = decide(
                part,
                verdict=verdict,
                now=now,
                schedule=self.config.schedule,
                written_at=request.written_at,
            )
            if isinstance(decision, Wait):
                waits.append(decision)
                self.tokens.offer(subject=subject, want=decision.want, token=decision.token)
            else:
                fills.append(decision)
        trusted = [(w.want, w.token) for w in waits]
        if fills and not self.may_write():
            self.store.manage(key, expires_at=_earliest(trusted))
            return self.not_writing()
        outcome = DONE
        for wait in waits:
            outcome = outcome.sooner(Outcome(wait.refresh_at - now))
        if fills:
            obtained, exchange_failures = await self._obtain(fills, subject=subject)
            failed += exchange_failures
            if obtained:
                written = await self._write(
                    secret, request, obtained, trusted=trusted, clear_error=not failed
                )
                if isinstance(written, Outcome):
                    return written  # the write did not happen; it said when to look again
                secret = written
                next_look, due = self._filled(written, obtained, subject=subject)
                outcome = outcome.sooner(next_look)
                failed += due
                trusted += [(fill.want, credential) for fill, credential in obtained]
        self.store.manage(key, expires_at=_earliest(trusted))
        if failed:
            return outcome.sooner(await self._report(secret, request, failed))
        # Nothing failed: whatever failure was recorded is over, and the status says so. An
        # `expires-at` someone edited is put right then too, not with a write of its own: it
        # is never read, and a tenant must not be able to make the controller write at will.
        self.failures.clear(key)
        if ann.LAST_ERROR in secret.annotations:
            patch = expiry_drift(secret.annotations, expires_at=_earliest(trusted))
            await self.reporter.write_status(secret, {**patch, ann.LAST_ERROR: None})
        return outcome

    async def _verdict(self, part: Part, *, subject: Subject) -> Verdict | None:
        if part.current is None:
            return None
        provider = self.providers[part.provider]
        if not provider.spec.verifiable:
            known = self.tokens.known(subject=subject, want=part.want, token=part.current)
            if known is not None:
                return known
            return Untrusted(why="it is not a credential this controller obtained")
        try:
            return await provider.verify(part.current)
        except InvalidToken as e:
            return Untrusted(why=str(e))

    async def _obtain(
        self, fills: Sequence[Fill], *, subject: Subject
    ) -> tuple[list[tuple[Fill, Credential]], list[_Failed]]:
        """A credential for each fill, the exchanges running concurrently."""
        results = await asyncio.gather(
            *(self.tokens.get(want=f.want, subject=subject, stale=f.stale) for f in fills),
            return_exceptions=True,
        )
        obtained: list[tuple[Fill, Credential]] = []
        failed: list[_Failed] = []
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
                _Failed(
                    problem=Problem(
                        provider=fill.want.provider,
                        reason=Reason.VERIFICATION_UNAVAILABLE if keys else Reason.EXCHANGE_FAILED,
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
                )
            )
        return obtained, failed

    async def _write(
        self,
        secret: SecretObject,
        request: Request,
        obtained: Sequence[tuple[Fill, Credential]],
        *,
        trusted: Sequence[tuple[Want, Credential]],
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
        specs = {spec.name: spec for spec in self._specs}
        filled = {
            filled_identity_key(specs[fill.want.provider]): fill.identity for fill, _ in obtained
        }
        earliest = _earliest([*trusted, *((f.want, c) for f, c in obtained)])
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
            before = min(
                (f.stale_expires_at for f, _ in obtained if f.stale_expires_at is not None),
                default=None,
            )
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
                before=min(
                    (f.stale_expires_at for f, _ in obtained if f.stale_expires_at is not None),
                    default=None,
                ),
            )
        self.metrics.secret_writes.labels(outcome="success").inc()
        self.store.keep(written)
        return written

    def _filled(
        self,
        written: SecretObject,
        obtained: Sequence[tuple[Fill, Credential]],
        *,
        subject: Subject,
    ) -> tuple[Outcome, list[_Failed]]:
        """Events, logs and the next look after credentials were written; the credentials
        that were due on arrival, as failures."""
        key = (written.namespace, written.name)
        now = self.clock()
        outcome = DONE
        due: list[_Failed] = []
        for fill, credential in obtained:
            when = self.config.schedule.refresh_at(
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
                    f"({self.config.schedule.margin:g}s) left on this clock. Check that the "
                    "token service's clock and this node's agree, or lower refresh_margin",
                )
                due.append(_Failed(problem=problem, retryable=True))
                continue
            outcome = outcome.sooner(Outcome(when - now))
            # Secrets that failed for want of this credential retry now, from the cache
            # (which hands it out: it is not due, or it would have been reported above).
            for waiting in self.failures.ready((fill.want.exchange_key, subject)):
                if waiting != key:
                    self.wake(waiting)
            expires = ann.format_time(credential.expires_at)
            hosts = ", ".join(fill.want.registries)
            log.info("token written", namespace=key[0], name=key[1], provider=fill.want.provider,
                     identity=fill.identity, why=fill.why, expires_at=expires)  # fmt: skip
            self.reporter.filled(
                written,
                reason=fill.event_reason,
                message=f"{fill.event_reason} {hosts} token for identity {fill.identity} "
                f"({fill.why}); expires at {expires}",
            )
        return outcome, due

    async def _report(
        self, secret: SecretObject, request: Request, failed: Sequence[_Failed]
    ) -> Outcome:
        """One report for the parts that failed; retried as the most urgent of them asks."""
        several = len(request.parts) + len(request.problems) > 1
        problems = [f.problem for f in failed]
        message = problems_message(problems)
        if several and len(problems) == 1:
            message = f"{problems[0].provider}: {message}"
        # Bad annotations stay until the Secret is edited (the watch says when); a denial that
        # depends on namespace labels can end without the Secret changing, and the rest are
        # failures that time may mend.
        timed = [f for f in failed if f.problem.reason != Reason.BAD_ANNOTATION]
        relabel = self.config.policy.needs_labels
        timed = [f for f in timed if f.problem.reason != Reason.POLICY_DENIED or relabel]
        befores = [f.before for f in timed if f.before is not None]
        return await self.reporter.failed(
            secret,
            reason=problems[0].reason,
            message=message,
            retry=bool(timed),
            retryable=any(f.retryable for f in timed),
            retry_after=max((f.retry_after for f in timed if f.retry_after), default=None),
            before=min(befores, default=None),
            awaits=next((f.awaits for f in timed if f.awaits is not None), None),
        )

    def _problem(self, problem: Problem) -> _Failed:
        return _Failed(problem=problem, retryable=False)

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


def _earliest(trusted: Sequence[tuple[Want, Credential]]) -> float | None:
    return min((credential.expires_at for _, credential in trusted), default=None)


def _view(secret: SecretObject) -> SecretView:
    return SecretView(
        namespace=secret.namespace,
        name=secret.name,
        type=secret.type,
        annotations=secret.annotations,
        docker_config_raw=secret.docker_config,
        resource_version=secret.resource_version,
    )
