"""Kubernetes Events about managed Secrets, so `kubectl describe secret` tells the story.

Events are best-effort: a failure to record one is logged and swallowed, never raised, since
an Event is only ever a report about work that already happened (or failed) and must not
change its outcome.

A controller that retries a failing Secret would otherwise write one Event per attempt, so
repeats are aggregated the way client-go's recorder does: the same (object, type, reason,
message) within `window` seconds patches the existing Event's `count` and `lastTimestamp`
instead of creating another. The memory of recent Events is a bounded LRU, so it cannot grow
with the number of Secrets. Messages are written by this controller and never contain Secret
data or tokens; they are cut to `MAX_MESSAGE` characters all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import lightkube
import structlog
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from pull_secret_updater.core.redaction import truncate
from pull_secret_updater.kube.errors import KubeError, NotFound, translated
from pull_secret_updater.kube.secrets import SecretObject, SecretRef

__all__ = ["DEFAULT_COMPONENT", "EventRecorder", "EventType"]

log = structlog.get_logger(__name__)

DEFAULT_COMPONENT = "pull-secret-updater"
MAX_MESSAGE = 1024
MAX_INSTANCE = 128
AGGREGATION_WINDOW = 600.0
MAX_RECENT = 4096
#: Events waiting to be written in the background; past that, new ones are dropped (counted and
#: logged), as client-go's broadcaster drops Events when its queue of 1,000 is full.
MAX_QUEUED = 4096
#: How long `aclose` lets the queued Events be written before it drops the rest.
DRAIN_TIMEOUT = 10.0

EventType = Literal["Normal", "Warning"]

_Key = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class _Recent:
    namespace: str
    name: str
    count: int
    last_seen: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EventRecorder:
    """Creates (or, for a repeat, bumps) core/v1 Events about Secrets.

    `instance` names this replica (the pod name, say) as `reportingInstance`. `clock` is a
    monotonic clock for the aggregation window; `now` gives the timestamps written.
    `max_queued` bounds the Events waiting to be written in the background (`emit_soon`),
    `on_dropped` is called for each one dropped past that, and `drain_timeout` is how long
    `aclose` waits for the queue to drain.
    """

    def __init__(
        self,
        client: lightkube.AsyncClient,
        *,
        component: str = DEFAULT_COMPONENT,
        instance: str,
        window: float = AGGREGATION_WINDOW,
        max_recent: int = MAX_RECENT,
        max_queued: int = MAX_QUEUED,
        on_dropped: Callable[[], object] = lambda: None,
        drain_timeout: float = DRAIN_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if max_recent < 1:
            raise ValueError("max_recent must be at least 1")
        self._client = client
        self._component = component
        self._instance = instance[:MAX_INSTANCE]
        self._window = window
        self._max_recent = max_recent
        self._clock = clock
        self._now = now
        self._recent: OrderedDict[_Key, _Recent] = OrderedDict()
        # NB: one write at a time per Event key, so two repeats racing cannot both create an
        # Event; Events about different things are written concurrently.
        self._locks: dict[_Key, asyncio.Lock] = {}
        self._max_queued = max_queued
        self._on_dropped = on_dropped
        self._drain_timeout = drain_timeout
        self._queued: deque[tuple[SecretObject | SecretRef, EventType, str, str]] = deque()
        self._sender: asyncio.Task[None] | None = None
        #: Events dropped because the queue was full, since start.
        self.dropped = 0

    async def emit(
        self,
        *,
        secret: SecretObject | SecretRef,
        type: EventType,
        reason: str,
        message: str,
    ) -> None:
        """Record an Event about `secret`; never raises (except on cancellation)."""
        message = truncate(message, limit=MAX_MESSAGE)
        ref = secret.ref if isinstance(secret, SecretObject) else secret
        key: _Key = (ref.uid or f"{ref.namespace}/{ref.name}", type, reason, message)
        try:
            lock = self._locks.setdefault(key, asyncio.Lock())
            try:
                async with lock:
                    if not await self._bump(key):
                        await self._create(key, ref=ref, type=type, reason=reason, message=message)
            finally:
                if not lock.locked():
                    self._locks.pop(key, None)
        except Exception as e:
            log.warning(
                "could not record an Event",
                namespace=ref.namespace,
                name=ref.name,
                reason=reason,
                error=str(e) if isinstance(e, KubeError) else "",
                error_class=e.__class__.__name__,
            )

    def emit_soon(
        self,
        *,
        secret: SecretObject | SecretRef,
        type: EventType,
        reason: str,
        message: str,
    ) -> None:
        """Record an Event in the background, for Events that report success.

        They are written one at a time, in order, by one task: a report of work done must not
        take the API requests and the CPU that the work itself needs, so a mass fill or
        refresh writes its Secrets first and its Events as it goes and after. At most
        `max_queued` wait; past that an Event is dropped (counted in `dropped`, logged once
        per 100). Call `aclose` at shutdown to let the queue drain.
        """
        if len(self._queued) >= self._max_queued:
            self.dropped += 1
            self._on_dropped()
            if self.dropped % 100 == 1:
                log.warning(
                    "Events are being dropped: too many waiting to be written",
                    waiting=len(self._queued),
                    dropped=self.dropped,
                )
            return
        self._queued.append((secret, type, reason, message))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="events")

    @property
    def waiting(self) -> int:
        """Events queued and not yet written."""
        return len(self._queued)

    async def aclose(self) -> None:
        """Let the Events queued in the background be written, for at most `drain_timeout`
        seconds; then drop the rest."""
        sender = self._sender
        if sender is None or sender.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(sender), self._drain_timeout)
        except TimeoutError:
            log.warning("Events not written at shutdown", dropped=len(self._queued))
            self._queued.clear()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send(self) -> None:
        # Ends when the queue is empty; `emit_soon` starts another when there is more.
        while self._queued:
            secret, type, reason, message = self._queued.popleft()
            await self.emit(secret=secret, type=type, reason=reason, message=message)

    async def _bump(self, key: _Key) -> bool:
        recent = self._recent.get(key)
        if recent is None or self._clock() - recent.last_seen >= self._window:
            return False
        count = recent.count + 1
        patch = {"count": count, "lastTimestamp": _format_time(self._now())}
        try:
            with translated(f"patch Event {recent.namespace}/{recent.name}"):
                await self._client.patch(
                    Event,
                    recent.name,
                    patch,
                    namespace=recent.namespace,
                    patch_type=PatchType.MERGE,
                )
        except NotFound:
            # The Event has expired (the API server keeps them an hour by default).
            del self._recent[key]
            return False
        self._remember(key, _Recent(recent.namespace, recent.name, count, self._clock()))
        return True

    async def _create(
        self,
        key: _Key,
        *,
        ref: SecretRef,
        type: EventType,
        reason: str,
        message: str,
    ) -> None:
        stamp = self._now().astimezone(UTC).replace(microsecond=0)
        # NB: a unique suffix, not client-go's timestamp: two replicas may report the same
        # Secret in the same instant. 253 is the limit on an object name.
        name = f"{ref.name[:236]}.{uuid.uuid4().hex[:16]}"
        event = Event(
            metadata=ObjectMeta(name=name, namespace=ref.namespace),
            involvedObject=ObjectReference(
                apiVersion="v1",
                kind="Secret",
                namespace=ref.namespace,
                name=ref.name,
                uid=ref.uid or None,
                resourceVersion=ref.resource_version or None,
            ),
            type=type,
            reason=reason,
            message=message,
            source=EventSource(component=self._component),
            reportingComponent=self._component,
            reportingInstance=self._instance,
            firstTimestamp=stamp,
            lastTimestamp=stamp,
            count=1,
        )
        with translated(f"create Event {ref.namespace}/{name}"):
            await self._client.create(event)
        self._remember(key, _Recent(ref.namespace, name, 1, self._clock()))

    def _remember(self, key: _Key, recent: _Recent) -> None:
        self._recent[key] = recent
        self._recent.move_to_end(key)
        while len(self._recent) > self._max_recent:
            self._recent.popitem(last=False)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
