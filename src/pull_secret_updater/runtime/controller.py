"""The controller: watches feed a store and a queue; workers reconcile one Secret at a time.

Everything that runs forever here is a trivial loop around a finite step:

- a watch per managed name keeps ``store`` equal to the API server's view of those Secrets
  and queues every key whose content changed;
- workers take due keys from the queue and call ``reconcile``, which asks the pure
  ``decide`` what to do and does exactly that: nothing, report bad input, schedule the next
  look, or obtain a token and write it in one optimistic-concurrency write;
- the leader elector says whether this replica may write at all.

NB: the controller's own write comes back as a watch event. ``reconcile`` stores the object
the write returned, so that event carries a resourceVersion already in the store and is
dropped; if it does get reconciled, the decision for a Secret holding its fresh token is
``Wait``, so no write and no exchange follows. Re-minting on every event, as a naive loop
would, is impossible by construction.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from lightkube import AsyncClient

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.claims import InvalidToken, read_claims
from pull_secret_updater.core.decision import (
    Fill,
    Ignore,
    Invalid,
    SecretView,
    Wait,
    decide,
    error_annotation,
    status_annotations,
)
from pull_secret_updater.core.dockerconfig import parse_docker_config, with_token
from pull_secret_updater.core.policy import Policy
from pull_secret_updater.core.timing import Schedule, backoff
from pull_secret_updater.kube.errors import Conflict, KubeError, NotFound
from pull_secret_updater.kube.errors import Invalid as KubeInvalid
from pull_secret_updater.kube.events import EventRecorder
from pull_secret_updater.kube.leader import LeaderElector
from pull_secret_updater.kube.namespaces import namespace_labels
from pull_secret_updater.kube.secrets import SecretObject, WatchEvent, get_secret, write_secret
from pull_secret_updater.runtime.health import Health
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.workqueue import QueueClosed, WorkQueue
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.errors import ExchangeError
from pull_secret_updater.tokens.provider import IssuedToken

log = structlog.get_logger("pull_secret_updater.controller")

Key = tuple[str, str]  # (namespace, name)

_FILL_EVENT = {
    "empty": "Filled",
    "no entry for registry": "Filled",
    "entry not written by this controller": "Filled",
    "identity changed": "Filled",
}
_NAMESPACE_LABELS_TTL = 30.0
#: However a token's times look (an STS clock far off ours, say), a Secret is not refreshed
#: again sooner than this after the last write: a bounded rate instead of an exchange loop.
_MIN_REFRESH_INTERVAL = 5.0


@dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    registry: str
    secret_names: tuple[str, ...]
    schedule: Schedule
    policy: Policy | None
    backoff_base: float = 1.0
    backoff_cap: float = 300.0


@dataclass
class _Failure:
    attempts: int = 0
    message: str | None = None


@dataclass
class _NamespaceLabels:
    labels: dict[str, str]
    read_at: float


@dataclass(kw_only=True)
class Controller:
    config: ControllerConfig
    client: AsyncClient
    tokens: TokenCache
    events: EventRecorder
    metrics: Metrics
    health: Health
    elector: LeaderElector | None = None
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    store: dict[Key, SecretObject] = field(default_factory=dict)
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    _failures: dict[Key, _Failure] = field(default_factory=dict)
    _synced: set[str] = field(default_factory=set)
    _labels: dict[str, _NamespaceLabels] = field(default_factory=dict)
    _event_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _event_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))

    # -- leadership ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    async def on_started_leading(self) -> None:
        log.info("became leader; reconciling every managed Secret", secrets=len(self.store))
        self.metrics.leader.set(1)
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
        self.store[key] = obj
        self.queue.add(key)

    def _drop(self, key: Key) -> None:
        self.store.pop(key, None)
        self._failures.pop(key, None)
        self.queue.forget(key)

    # -- the worker loop -------------------------------------------------------------------

    async def work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueClosed:
                return
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug or an unforeseen API answer: log it and look again later, never spin.
                log.exception("reconcile failed unexpectedly", namespace=key[0], name=key[1])
                self.queue.add(key, delay=self._next_backoff(key, retryable=True))
            finally:
                self.queue.done(key)

    async def reconcile(self, key: Key) -> None:
        secret = self.store.get(key)
        if secret is None or secret.deleting:
            self._drop(key)
            return
        view = SecretView(
            namespace=secret.namespace,
            name=secret.name,
            type=secret.type,
            annotations=secret.annotations,
            docker_config_raw=secret.docker_config,
            resource_version=secret.resource_version,
        )
        try:
            labels = await self._namespace_labels(secret.namespace)
        except KubeError as e:
            await self._report_failure(
                secret,
                reason="PolicyUnavailable",
                message=f"cannot apply the identity policy: {e} (the policy selects namespaces "
                "by label, so the controller needs get on namespaces)",
                retry=True,
            )
            return
        now = self.clock()
        decision = decide(
            view,
            now=now,
            registry=self.config.registry,
            policy=self.config.policy,
            namespace_labels=labels,
            schedule=self.config.schedule,
        )
        match decision:
            case Ignore():
                self._failures.pop(key, None)
            case Invalid(reason_code=reason, message=message):
                await self._report_failure(secret, reason=reason, message=message, retry=False)
            case Wait(identity=identity, refresh_at=refresh_at, expires_at=expires_at):
                self._failures.pop(key, None)
                self.queue.add(key, delay=refresh_at - now)
                self._share_token(view, identity=identity, expires_at=expires_at)
                if ann.LAST_ERROR in secret.annotations and self.is_leader():
                    await self._clear_error(secret)
            case Fill(identity=identity, reason=why):
                hold = self._refresh_hold(secret, now=now) if why == "due for refresh" else 0
                if hold > 0:
                    self.queue.add(key, delay=hold)
                    return
                if self.is_leader():
                    await self._fill(secret, view=view, identity=identity, why=why)

    async def _fill(
        self, secret: SecretObject, *, view: SecretView, identity: str, why: str
    ) -> None:
        key = (secret.namespace, secret.name)
        config = parse_docker_config(view.docker_config_raw)
        current = config.entry(self.config.registry)
        if current is not None and current.password is not None:
            # The Secret's own token is due: a cached token that is the same one is due too.
            self.tokens.forget_token(identity=identity, token=current.password)
        try:
            issued = await self.tokens.get(identity=identity)
        except ExchangeError as e:
            self.metrics.refresh_failures.labels(cause=e.cause).inc()
            await self._report_failure(
                secret, reason="ExchangeFailed", message=str(e), retry=True, retryable=e.retryable
            )
            return
        new_config = with_token(
            config,
            registry=self.config.registry,
            token=issued.token,
        )
        status = status_annotations(
            identity=identity,
            expires_at=issued.expires_at,
            refreshed_at=self.clock(),
            token_hash=ann.token_hash(
                identity=identity, registry=self.config.registry, token=issued.token
            ),
        )
        if not self.is_leader():
            return
        try:
            written = await write_secret(
                self.client, secret, docker_config=new_config, annotations=status
            )
        except Conflict:
            # Someone else changed the Secret since we read it: read it again and decide again.
            # The token stays cached, so the retry costs a read and a write, not an exchange.
            self.metrics.secret_writes.labels(outcome="conflict").inc()
            await self._reread(key)
            return
        except NotFound:
            log.info("Secret deleted before it could be filled", namespace=key[0], name=key[1])
            self._drop(key)
            return
        except KubeError as e:
            self.metrics.secret_writes.labels(outcome="error").inc()
            self.metrics.refresh_failures.labels(cause="write").inc()
            await self._report_failure(
                secret,
                reason="WriteFailed",
                message=f"writing the Secret failed: {e}",
                retry=True,
                # A write the API server finds invalid (a Secret over the size limit, say)
                # will not succeed by itself: retry it at the slow rate.
                retryable=not isinstance(e, KubeInvalid),
            )
            return
        self.metrics.secret_writes.labels(outcome="success").inc()
        self._failures.pop(key, None)
        self.store[key] = written
        self.queue.add(key)  # decides Wait and schedules the next refresh
        reason = _FILL_EVENT.get(why, "Refreshed")
        expires = ann.format_time(issued.expires_at)
        log.info(
            "token written",
            namespace=key[0],
            name=key[1],
            identity=identity,
            why=why,
            expires_at=expires,
        )
        self._emit_soon(
            secret=written,
            reason=reason,
            message=f"{reason} {self.config.registry} token for identity {identity} ({why}); "
            f"expires at {expires}",
        )

    def _refresh_hold(self, secret: SecretObject, *, now: float) -> float:
        """Seconds to hold back a due refresh so one Secret is refreshed at most once per
        _MIN_REFRESH_INTERVAL, but never past the safety margin before its token expires."""
        last = ann.parse_time(secret.annotations.get(ann.LAST_REFRESH))
        if last is None:
            return 0.0
        hold_until = last + _MIN_REFRESH_INTERVAL
        expires = ann.parse_time(secret.annotations.get(ann.EXPIRES_AT))
        if expires is not None:
            hold_until = min(hold_until, expires - self.config.schedule.margin)
        if hold_until <= now:
            return 0.0
        log.info(
            "refresh held back: the token was due within seconds of being written",
            namespace=secret.namespace, name=secret.name,
        )  # fmt: skip
        return hold_until - now

    def _share_token(self, view: SecretView, *, identity: str, expires_at: float) -> None:
        """Offer a valid token this controller wrote (found after a restart) to the cache,
        so other Secrets of the same identity reuse it instead of costing an exchange."""
        entry = parse_docker_config(view.docker_config_raw).entry(self.config.registry)
        if entry is None or entry.password is None:
            return
        try:
            issued_at = read_claims(entry.password).iat
        except InvalidToken:
            return
        if issued_at is None:
            return
        self.tokens.seed(
            identity,
            IssuedToken(
                token=entry.password,
                expires_at=expires_at,
                issued_at=issued_at,
                registry=self.config.registry,
            ),
        )

    async def _clear_error(self, secret: SecretObject) -> None:
        try:
            written = await write_secret(
                self.client, secret, docker_config=None, annotations={ann.LAST_ERROR: None}
            )
        except KubeError as e:
            log.info("could not clear the error status", namespace=secret.namespace,
                     name=secret.name, error=str(e))  # fmt: skip
            return
        self.store[(secret.namespace, secret.name)] = written

    def _emit_soon(self, *, secret: SecretObject, reason: str, message: str) -> None:
        """A Normal Event, written in the background: Events are best-effort, and a worker
        waiting for one would halve the write rate of a mass fill or refresh."""

        async def emit() -> None:
            async with self._event_slots:
                await self.events.emit(secret=secret, type="Normal", reason=reason,
                                       message=message)  # fmt: skip

        task = asyncio.create_task(emit())
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _reread(self, key: Key) -> None:
        try:
            fresh = await get_secret(self.client, namespace=key[0], name=key[1])
        except KubeError as e:
            log.warning("re-reading a Secret failed", namespace=key[0], name=key[1], error=str(e))
            self.queue.add(key, delay=self._next_backoff(key, retryable=True))
            return
        if fresh is None:
            self._drop(key)
        else:
            self.store[key] = fresh
            self.queue.add(key)

    async def _report_failure(
        self,
        secret: SecretObject,
        *,
        reason: str,
        message: str,
        retry: bool,
        retryable: bool = True,
    ) -> None:
        """Warning Event and ``last-error`` when the cause is new; retry later if ``retry``.

        The credential in the Secret is never touched here: a failed refresh leaves a valid
        token in place until it expires.
        """
        key = (secret.namespace, secret.name)
        failure = self._failures.setdefault(key, _Failure())
        failure.attempts += 1
        first_report = failure.message != message
        failure.message = message
        log.warning(
            "Secret not filled",
            namespace=key[0],
            name=key[1],
            reason=reason,
            error=message,
            attempt=failure.attempts,
        )
        if retry:
            self.queue.add(key, delay=self._next_backoff(key, retryable=retryable))
        if not self.is_leader():
            return
        wanted = error_annotation(message)
        if secret.annotations.get(ann.LAST_ERROR) != wanted[ann.LAST_ERROR]:
            try:
                written = await write_secret(
                    self.client, secret, docker_config=None, annotations=wanted
                )
                self.store[key] = written
            except Conflict:
                await self._reread(key)
            except KubeError as e:
                log.warning(
                    "could not record the error on the Secret",
                    namespace=key[0],
                    name=key[1],
                    error=str(e),
                )
        if first_report:
            await self.events.emit(secret=secret, type="Warning", reason=reason, message=message)

    def _next_backoff(self, key: Key, *, retryable: bool) -> float:
        failure = self._failures.setdefault(key, _Failure())
        return backoff(
            attempt=max(1, failure.attempts),
            retryable=retryable,
            rng=self.rng,
            base=self.config.backoff_base,
            cap=self.config.backoff_cap,
        )

    async def _namespace_labels(self, namespace: str) -> dict[str, str] | None:
        policy = self.config.policy
        if policy is None or not policy.needs_labels:
            return None
        cached = self._labels.get(namespace)
        now = time.monotonic()
        if cached is not None and now - cached.read_at < _NAMESPACE_LABELS_TTL:
            return cached.labels
        labels = await namespace_labels(self.client, name=namespace)
        self._labels[namespace] = _NamespaceLabels(labels=labels, read_at=now)
        return labels

    # -- gauges ----------------------------------------------------------------------------

    def update_gauges(self) -> None:
        managed = [s for s in self.store.values() if ann.IDENTITY in s.annotations]
        self.metrics.managed_secrets.set(len(managed))
        self.metrics.failing_secrets.set(len(self._failures))
        expiries = [
            t
            for s in managed
            if (t := ann.parse_time(s.annotations.get(ann.EXPIRES_AT))) is not None
        ]
        if expiries:
            self.metrics.earliest_expiry.set(min(expiries) - self.clock())
