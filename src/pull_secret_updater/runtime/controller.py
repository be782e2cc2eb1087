"""The controller: watches feed a store and a queue; workers reconcile one Secret at a time.

Everything that runs forever here is a trivial loop around a finite step:

- a watch per managed name keeps the store (`store`) equal to the API server's view of those
  Secrets and queues every key whose content changed;
- workers take due keys from the queue and call the reconcile step (`reconcile`), which
  returns an `Outcome`: when to look again, if ever. The worker loop is the only place that
  puts a reconciled key back into the queue;
- the leader elector says whether this replica may write at all.

What is said to the user (status annotations, Events, gauges) is `reporting`'s business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from lightkube import AsyncClient

from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.kube.events import EventRecorder
from pull_secret_updater.kube.leader import LeaderElector
from pull_secret_updater.kube.namespaces import NamespaceLabels
from pull_secret_updater.kube.secrets import WatchEvent
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.health import Health
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.outcome import DONE, Key, Outcome
from pull_secret_updater.runtime.reconcile import ControllerConfig, Reconciler
from pull_secret_updater.runtime.reporting import Reporter
from pull_secret_updater.runtime.store import SecretStore
from pull_secret_updater.runtime.workqueue import WorkQueue
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.provider import TokenProvider

__all__ = ["DONE", "Controller", "ControllerConfig", "Key", "Outcome"]

log = structlog.get_logger("pull_secret_updater.controller")


@dataclass(kw_only=True)
class Controller:
    """Keeps every managed Secret filled; see the module docstring for the loop.

    `tokens` hands out credentials (one exchange per identity per window), `providers` (by
    name) verify the credentials found in Secrets, `labels` reads namespace labels when the
    policy needs them.
    """

    config: ControllerConfig
    client: AsyncClient
    tokens: TokenCache
    providers: Mapping[str, TokenProvider]
    events: EventRecorder
    metrics: Metrics
    health: Health
    failures: Failures
    labels: NamespaceLabels | None = None
    elector: LeaderElector | None = None
    clock: Callable[[], float] = time.time

    store: SecretStore = field(default_factory=SecretStore)
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    _synced: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.reporter = Reporter(
            client=self.client,
            store=self.store,
            events=self.events,
            failures=self.failures,
            metrics=self.metrics,
            is_leader=self.is_leader,
            clock=self.clock,
        )
        self._reconciler = Reconciler(
            config=self.config,
            client=self.client,
            store=self.store,
            tokens=self.tokens,
            providers=self.providers,
            reporter=self.reporter,
            failures=self.failures,
            metrics=self.metrics,
            may_write=self.is_leader,
            not_writing=self._not_writing,
            wake=self.queue.add,
            labels=self.labels,
            clock=self.clock,
        )

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

    # -- watch events ----------------------------------------------------------------------

    async def handle_event(self, name: str, event: WatchEvent) -> None:
        if event.type == "SYNC":
            seen = {(obj.namespace, obj.name) for obj in event.objects}
            for key in [k for k in self.store if k[1] == name and k not in seen]:
                self._drop(key)
            for obj in event.objects:
                if self.store.observe(obj):
                    self.queue.add((obj.namespace, obj.name))
            if name not in self._synced:
                self._synced.add(name)
                self.health.ready = self._synced >= set(self.config.secret_names)
                log.info("initial list done", name=name, secrets=len(event.objects))
            return
        changed = event.object
        assert changed is not None
        if event.type == "DELETED":
            self._drop((changed.namespace, changed.name))
        elif self.store.observe(changed):
            self.queue.add((changed.namespace, changed.name))

    def _drop(self, key: Key) -> None:
        self._reconciler.drop(key)
        self.queue.forget(key)

    # -- the worker loop -------------------------------------------------------------------

    async def work(self) -> None:
        """Reconcile due keys forever; the only place a reconciled key is queued again."""
        while True:
            key = await self.queue.get()
            try:
                outcome = await self.reconcile(key)
            except Exception:
                # A bug or an unforeseen API answer: log it and look again later, never spin.
                log.exception("reconcile failed unexpectedly", namespace=key[0], name=key[1],
                              reason=str(Reason.UNEXPECTED))  # fmt: skip
                recorded = self.failures.record(key, message="unexpected error")
                outcome = Outcome(recorded.delay)
            finally:
                self.queue.done(key)
            if outcome.requeue_after is not None and key in self.store:
                self.queue.add(key, delay=outcome.requeue_after)

    async def reconcile(self, key: Key) -> Outcome:
        """Look at the Secret `key` once (see `runtime.reconcile`)."""
        outcome = await self._reconciler.reconcile(key)
        if key not in self.store:
            self.queue.forget(key)
        return outcome

    def update_gauges(self) -> None:
        self.reporter.update_gauges()
