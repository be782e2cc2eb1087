"""The controller: watches feed a store and a queue; workers reconcile one Secret at a time.

Everything that runs forever here is a trivial loop around a finite step:

- a watch per managed name keeps ``store`` equal to the API server's view of those Secrets
  and queues every key whose content changed;
- workers take due keys from the queue and call ``reconcile``, which looks at one Secret,
  does what the pure core decides (nothing, report bad input, obtain a token and write it in
  one optimistic-concurrency write) and returns an `Outcome`: when to look again, if ever.
  The worker loop is the only place that puts a reconciled key back into the queue;
- the leader elector says whether this replica may write at all.

NB: the controller's own write comes back as a watch event. ``reconcile`` stores the object
the write returned, so that event carries a resourceVersion already in the store and is
dropped; if it does get reconciled, the Secret holds a verified token of its own, the
decision is ``Wait``, and no write and no exchange follows.

NB: longer than our other modules because ``reconcile`` is one step with many exits (ignore,
bad input, policy labels unavailable, verification unavailable, wait, fill, conflict, deleted
meanwhile, write refused), and each says here why it is safe. What could leave did: the
decision and the refresh time (``core``), failure bookkeeping and backoff (`failures`),
namespace labels (``kube.namespaces``) and background Events (``kube.events``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from lightkube import AsyncClient

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.decision import (
    Fill,
    Ignore,
    Invalid,
    Request,
    SecretView,
    Untrusted,
    Verdict,
    Wait,
    cleared_status,
    decide,
    error_annotation,
    inspect,
    status_annotations,
)
from pull_secret_updater.core.dockerconfig import with_token
from pull_secret_updater.core.policy import Policy
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.kube.errors import Conflict, KubeError, NotFound, Unprocessable
from pull_secret_updater.kube.events import EventRecorder
from pull_secret_updater.kube.leader import LeaderElector
from pull_secret_updater.kube.namespaces import NamespaceLabels
from pull_secret_updater.kube.secrets import SecretObject, WatchEvent, get_secret, write_secret
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.health import Health
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.workqueue import WorkQueue
from pull_secret_updater.tokens.cache import CacheKey, TokenCache
from pull_secret_updater.tokens.errors import ExchangeError, KeysUnavailable
from pull_secret_updater.tokens.provider import Subject, TokenProvider

log = structlog.get_logger("pull_secret_updater.controller")

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    """What the controller manages and by which rules (built from settings by `wiring`).

    registry: the registry host whose entry is written.
    secret_names: the managed Secret names, each followed in every namespace.
    schedule: when a token is refreshed.
    policy: which identities each namespace may use.
    subject_for: the ServiceAccount whose token is exchanged for a Secret in a namespace.
    """

    registry: str
    secret_names: tuple[str, ...]
    schedule: Schedule
    policy: Policy
    subject_for: Callable[[str], Subject]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reconcile concluded: look again after `requeue_after` seconds, or (None) only
    when the Secret changes."""

    requeue_after: float | None = None


DONE = Outcome()


@dataclass(kw_only=True)
class Controller:
    """Keeps every managed Secret filled; see the module docstring for the loop.

    `tokens` hands out tokens (one exchange per identity per window), `provider` verifies the
    tokens found in Secrets, `labels` reads namespace labels when the policy needs them.
    """

    config: ControllerConfig
    client: AsyncClient
    tokens: TokenCache
    provider: TokenProvider
    events: EventRecorder
    metrics: Metrics
    health: Health
    failures: Failures
    labels: NamespaceLabels | None = None
    elector: LeaderElector | None = None
    clock: Callable[[], float] = time.time

    store: dict[Key, SecretObject] = field(default_factory=dict)
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    _synced: set[str] = field(default_factory=set)
    # The expiry each managed Secret states (None: unknown), parsed once as the store changes,
    # so the 2-second gauges cost a min() over floats, not a parse of every Secret's
    # annotations (0.23 CPU s per minute at 20,000 Secrets in the scale benchmark).
    _expiries: dict[Key, float | None] = field(default_factory=dict)

    # -- leadership ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    async def on_started_leading(self) -> None:
        log.info("became leader; reconciling every managed Secret", secrets=len(self.store))
        self.metrics.leader.set(1)
        self.recheck_all()

    def recheck_all(self) -> None:
        """Look at every Secret again now (on becoming leader; a signing key was withdrawn)."""
        for key in self.store:
            self.queue.add(key)

    async def on_stopped_leading(self) -> None:
        log.warning("stopped leading; writes stop until leadership is regained")
        self.metrics.leader.set(0)

    # -- watch events ----------------------------------------------------------------------

    async def handle_event(self, name: str, event: WatchEvent) -> None:
        if event.type == "SYNC":
            seen = {(obj.namespace, obj.name) for obj in event.objects}
            for key in [k for k in self.store if k[1] == name and k not in seen]:
                self._drop(key)
            for obj in event.objects:
                self._observe(obj)
            if name not in self._synced:
                self._synced.add(name)
                self.health.ready = self._synced >= set(self.config.secret_names)
                log.info("initial list done", name=name, secrets=len(event.objects))
            return
        changed = event.object
        assert changed is not None
        if event.type == "DELETED":
            self._drop((changed.namespace, changed.name))
        else:
            self._observe(changed)

    def _observe(self, obj: SecretObject) -> None:
        key = (obj.namespace, obj.name)
        known = self.store.get(key)
        if known is not None and known.resource_version == obj.resource_version:
            return
        self._put(obj)
        self.queue.add(key)

    def _drop(self, key: Key) -> None:
        self.store.pop(key, None)
        self._expiries.pop(key, None)
        self.failures.clear(key)
        self.queue.forget(key)

    def _put(self, obj: SecretObject) -> None:
        key = (obj.namespace, obj.name)
        self.store[key] = obj
        if ann.IDENTITY in obj.annotations:
            self._expiries[key] = ann.parse_time(obj.annotations.get(ann.EXPIRES_AT))
        else:
            self._expiries.pop(key, None)

    # -- the worker loop -------------------------------------------------------------------

    async def work(self) -> None:
        """Reconcile due keys forever; the only place a reconciled key is queued again."""
        while True:
            key = await self.queue.get()
            try:
                outcome = await self.reconcile(key)
            except Exception:
                # A bug or an unforeseen API answer: log it and look again later, never spin.
                log.exception("reconcile failed unexpectedly", namespace=key[0], name=key[1])
                recorded = self.failures.record(key, message="unexpected error")
                outcome = Outcome(recorded.delay)
            finally:
                self.queue.done(key)
            if outcome.requeue_after is not None and key in self.store:
                self.queue.add(key, delay=outcome.requeue_after)

    async def reconcile(self, key: Key) -> Outcome:
        """Look at the Secret `key` once and act on what the core decides."""
        secret = self.store.get(key)
        if secret is None or secret.deleting:
            self._drop(key)
            return DONE
        labels = None
        if self.config.policy.needs_labels and self.labels is not None:
            try:
                labels = await self.labels.get(secret.namespace)
            except KubeError as e:
                return await self._failed(
                    secret,
                    reason="PolicyUnavailable",
                    message=f"cannot apply the identity policy: {e} (the policy selects "
                    "namespaces by label, so the controller needs get on namespaces)",
                )
        found = inspect(
            _view(secret),
            registry=self.config.registry,
            policy=self.config.policy,
            namespace_labels=labels,
        )
        if isinstance(found, Ignore):
            self.failures.clear(key)
            await self._clear_status(secret)
            return DONE
        if isinstance(found, Invalid):
            # A denial that depends on namespace labels can end without the Secret changing
            # (someone labels the namespace): look again at the slow rate. Other bad input
            # stays until the Secret is edited, which the watch reports.
            relabel = found.reason_code == "PolicyDenied" and self.config.policy.needs_labels
            return await self._failed(
                secret,
                reason=found.reason_code,
                message=found.message,
                retry=relabel,
                retryable=False,
            )
        try:
            verdict = await self._verdict(found)
        except ExchangeError as e:
            return await self._failed(
                secret,
                reason="VerificationUnavailable",
                message=f"cannot verify the token in the Secret: {e}",
                retryable=e.retryable,
            )
        now = self.clock()
        decision = decide(found, verdict=verdict, now=now, schedule=self.config.schedule)
        subject = self.config.subject_for(secret.namespace)
        if isinstance(decision, Wait):
            self.failures.clear(key)
            self.tokens.offer(subject=subject, token=decision.token)
            if ann.LAST_ERROR in secret.annotations and self.is_leader():
                await self._write_status(secret, {ann.LAST_ERROR: None})
            return Outcome(decision.refresh_at - now)
        if not self.is_leader():
            return self._not_writing()
        return await self._fill(secret, decision, subject=subject)

    def _not_writing(self) -> Outcome:
        """What a reconcile that may not write concludes.

        A standby leaves the Secret to the leader: `on_started_leading` queues every Secret
        if this replica becomes one. A leader whose renewal is merely overdue may renew in
        time and carry on leading with no stop and start, so nothing would queue the Secret
        again: it looks again after a retry period.
        """
        if self.elector is not None and self.elector.leading:
            return Outcome(self.elector.retry_period)
        return DONE

    async def _verdict(self, request: Request) -> Verdict | None:
        if request.current is None:
            return None
        try:
            return await self.provider.verify(request.current)
        except InvalidToken as e:
            return Untrusted(why=str(e))

    async def _fill(self, secret: SecretObject, fill: Fill, *, subject: Subject) -> Outcome:
        key = (secret.namespace, secret.name)
        try:
            issued = await self.tokens.get(
                identity=fill.identity, subject=subject, stale=fill.stale
            )
        except ExchangeError as e:
            self.metrics.refresh_failures.labels(cause=e.cause).inc()
            keys = isinstance(e, KeysUnavailable)
            return await self._failed(
                secret,
                reason="VerificationUnavailable" if keys else "ExchangeFailed",
                message=f"cannot verify tokens, so none is exchanged: {e}" if keys else str(e),
                retryable=e.retryable,
                retry_after=e.retry_after,
                before=fill.stale_expires_at,
                awaits=(subject, fill.identity),
            )
        now = self.clock()
        if not self.is_leader():
            return self._not_writing()
        try:
            written = await write_secret(
                self.client,
                secret,
                docker_config=with_token(fill.config, registry=self.config.registry,
                                         token=issued.token),
                annotations=status_annotations(
                    identity=fill.identity, expires_at=issued.expires_at, refreshed_at=now
                ),
            )  # fmt: skip
        except Conflict:
            # Someone else changed the Secret since we read it: read it again and decide again.
            # The token stays cached, so the retry costs a read and a write, not an exchange.
            # Once at once; a writer that keeps changing it (a tool reverting our writes)
            # gets the growing delays of a failure rather than a read-write loop.
            self.metrics.secret_writes.labels(outcome="conflict").inc()
            recorded = self.failures.record(
                key,
                message="the Secret changed under each write",
                expires_in=self._left(fill.stale_expires_at),
            )
            return await self._reread(key, delay=recorded.delay if recorded.attempts > 1 else 0.0)
        except NotFound:
            log.info("Secret deleted before it could be filled", namespace=key[0], name=key[1])
            self._drop(key)
            return DONE
        except KubeError as e:
            self.metrics.secret_writes.labels(outcome="error").inc()
            self.metrics.refresh_failures.labels(cause="write").inc()
            return await self._failed(
                secret,
                reason="WriteFailed",
                message=f"writing the Secret failed: {e}",
                # A write the API server finds invalid (a Secret over the size limit, say)
                # will not succeed by itself: retry it at the slow rate.
                retryable=not isinstance(e, Unprocessable),
                before=fill.stale_expires_at,
            )
        self.metrics.secret_writes.labels(outcome="success").inc()
        self._keep(written)
        when = self.config.schedule.refresh_at(
            token=issued.token,
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
            written_at=now,
            now=now,
        )
        if when <= now:
            # Due already on arrival: exchanging again at once would only bring another such
            # token, in a loop. It is written (it still pulls); the next try backs off.
            return await self._failed(
                written,
                reason="TokenTooShortLived",
                message=f"the token service's token for identity {fill.identity} was due for "
                f"refresh on arrival: it had less than the refresh margin "
                f"({self.config.schedule.margin:g}s) left on this clock. Check that the "
                "token service's clock and this node's agree, or lower refresh_margin",
            )
        self.failures.clear(key)
        # Secrets that failed for want of this token retry now, from the cache (which hands
        # it out: it is not due, or it would have been reported above).
        for waiting in self.failures.ready((subject, fill.identity)):
            self.queue.add(waiting)
        expires = ann.format_time(issued.expires_at)
        log.info("token written", namespace=key[0], name=key[1], identity=fill.identity,
                 why=fill.why, expires_at=expires)  # fmt: skip
        self.events.emit_soon(
            secret=written,
            type="Normal",
            reason=fill.event_reason,
            message=f"{fill.event_reason} {self.config.registry} token for identity "
            f"{fill.identity} ({fill.why}); expires at {expires}",
        )
        return Outcome(when - now)

    async def _failed(
        self,
        secret: SecretObject,
        *,
        reason: str,
        message: str,
        retry: bool = True,
        retryable: bool = True,
        retry_after: float | None = None,
        before: float | None = None,
        awaits: CacheKey | None = None,
    ) -> Outcome:
        """Warning Event and ``last-error`` when the cause is new; retry later if ``retry``.

        The credential in the Secret is never touched here: a failed refresh leaves a valid
        token in place until it expires. ``before``: that token's verified expiry, which the
        retries must come before; ``awaits``: the (subject, identity) whose token would end
        the failure (see `Failures.ready`).
        """
        key = (secret.namespace, secret.name)
        if key not in self.store:
            return DONE  # deleted while we were at it: nothing to report on, nothing to retry
        recorded = self.failures.record(
            key,
            message=message,
            retryable=retryable,
            retry_after=retry_after,
            expires_in=self._left(before),
            awaits=awaits,
        )
        log.warning("Secret not filled", namespace=key[0], name=key[1], reason=reason,
                    error=message, attempt=recorded.attempts)  # fmt: skip
        if self.is_leader():
            wanted = error_annotation(message)
            if secret.annotations.get(ann.LAST_ERROR) != wanted[ann.LAST_ERROR]:
                await self._write_status(secret, wanted)
            if recorded.new:
                await self.events.emit(
                    secret=secret, type="Warning", reason=reason, message=message
                )
                self.failures.mark_reported(key, message=message)
        return Outcome(recorded.delay) if retry else DONE

    async def _clear_status(self, secret: SecretObject) -> None:
        """Remove the status annotations from a Secret whose identity annotation is gone."""
        patch = cleared_status(secret.annotations)
        if patch and self.is_leader():
            await self._write_status(secret, patch)

    async def _write_status(self, secret: SecretObject, patch: dict[str, str | None]) -> None:
        key = (secret.namespace, secret.name)
        try:
            self._keep(
                await write_secret(self.client, secret, docker_config=None, annotations=patch)
            )
        except Conflict:
            pass  # changed meanwhile: the watch brings the newer version, to be decided anew
        except KubeError as e:
            log.info("could not update the status annotations", namespace=key[0],
                     name=key[1], error=str(e))  # fmt: skip

    async def _reread(self, key: Key, *, delay: float) -> Outcome:
        try:
            fresh = await get_secret(self.client, namespace=key[0], name=key[1])
        except KubeError as e:
            log.warning("re-reading a Secret failed", namespace=key[0], name=key[1], error=str(e))
            if key not in self.store:
                return DONE
            return Outcome(self.failures.record(key, message=f"re-reading failed: {e}").delay)
        if fresh is None or key not in self.store:
            self._drop(key)
            return DONE
        self._put(fresh)
        return Outcome(delay)

    def _left(self, expires_at: float | None) -> float | None:
        """Seconds until `expires_at`, if there is one."""
        return None if expires_at is None else expires_at - self.clock()

    def _keep(self, written: SecretObject) -> None:
        """Store what a write returned, unless the Secret was deleted meanwhile."""
        if (written.namespace, written.name) in self.store:
            self._put(written)

    # -- gauges ----------------------------------------------------------------------------

    def update_gauges(self) -> None:
        self.metrics.managed_secrets.set(len(self._expiries))
        self.metrics.failing_secrets.set(len(self.failures))
        earliest = min((t for t in self._expiries.values() if t is not None), default=None)
        if earliest is not None:
            self.metrics.earliest_expiry.set(earliest - self.clock())


def _view(secret: SecretObject) -> SecretView:
    return SecretView(
        namespace=secret.namespace,
        name=secret.name,
        type=secret.type,
        annotations=secret.annotations,
        docker_config_raw=secret.docker_config,
        resource_version=secret.resource_version,
    )
