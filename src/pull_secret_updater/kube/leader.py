"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Only the leader writes Secrets; the other replicas wait, ready to take over. The protocol
trusts no clock but each replica's own monotonic one:

- A replica takes the Lease over only when the record it reads has not changed for the
  record's `leaseDurationSeconds`, timed from the moment *this* replica first saw that
  version of the record. `renewTime` is written for humans and never compared across
  machines, so clock skew between nodes cannot cause two leaders.
- Every write is a PUT carrying the resourceVersion that was read; when two replicas race,
  the API server lets one through and answers 409 to the other.
- The leader renews every `retry_period`. If no renewal has succeeded for `renew_deadline`
  (shorter than the lease duration, so it steps down before anyone may take over) it stops
  leading. `is_leader` checks that age against the clock on every call, so a loop that has
  stalled cannot keep claiming leadership.
- On a graceful stop `release()` empties the holder and shortens the lease to one second,
  so the next replica takes over at its next retry rather than a full lease later.

Times: `renew_deadline` is measured from the start of the renewing request, not its end, and
another replica's lease is timed from the end of the read that saw it; both choices err on
the side of never having two leaders.

NB: longer than our other modules because it is one protocol in one class; the length is its
cases (take over, renew, lose, release), each with the reason it is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import lightkube
import structlog
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from pull_secret_updater.kube.errors import Conflict, KubeError, NotFound, translated

__all__ = ["LeaderElector", "LeaseRecord"]

log = structlog.get_logger(__name__)

#: Waits between attempts are stretched by up to this share, so replicas do not march in step.
JITTER = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRecord:
    """The leader-election fields of a Lease, compared to tell whether it changed."""

    holder: str | None
    lease_duration: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int

    @classmethod
    def of(cls, lease: Lease) -> LeaseRecord:
        spec = lease.spec or LeaseSpec()
        return cls(
            holder=spec.holderIdentity or None,
            lease_duration=spec.leaseDurationSeconds or 0,
            acquire_time=spec.acquireTime,
            renew_time=spec.renewTime,
            transitions=spec.leaseTransitions or 0,
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Contends for the Lease `namespace/name` as `identity` (unique per process).

    `on_started` and `on_stopped` are awaited when leadership is gained and lost (including
    when `run()` is cancelled while leading); they must return promptly (start or stop a task,
    set a flag), since the Lease is not renewed while they run.
    """

    def __init__(
        self,
        client: lightkube.AsyncClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started: Callable[[], Awaitable[None]] | None = None,
        on_stopped: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        if not lease_duration > renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if not renew_deadline > retry_period * (1 + JITTER):
            raise ValueError(f"renew_deadline must be greater than {1 + JITTER:g} * retry_period")
        if not retry_period > 0:
            raise ValueError("retry_period must be positive")
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._log = log.bind(lease=f"{namespace}/{name}")
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._client = client
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._clock = clock
        self._now = now
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        # The Lease as last read or written, and when (local monotonic time) its record last
        # changed under our eyes.
        self._lease: Lease | None = None
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        # Start of the last successful acquire or renew while leading; None when not leading.
        self._renewed_at: float | None = None
        self._leading = asyncio.Event()
        self._running = False

    # -- what the rest of the controller asks ---------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while leading and the last renewal is younger than `renew_deadline`."""
        renewed_at = self._renewed_at
        return renewed_at is not None and self._clock() - renewed_at < self.renew_deadline

    @property
    def leading(self) -> bool:
        """True from becoming the leader until stepping down, even while a renewal is overdue
        (when `is_leader` is already False): the renewal may yet succeed."""
        return self._leading.is_set()

    @property
    def holder(self) -> str | None:
        """The holder of the Lease as last observed (None: nobody, or not read yet)."""
        return self._observed.holder if self._observed else None

    async def wait_leading(self) -> None:
        """Return once this replica leads (at once if it does); check `is_leader` before acting."""
        await self._leading.wait()

    async def run(self) -> None:
        """Acquire, renew until that fails, step down, repeat; until cancelled."""
        if self._running:
            raise RuntimeError("LeaderElector.run() is already running")
        self._running = True
        try:
            while True:
                await self._acquire()
                await self._start_leading()
                await self._renew_until_lost()
                await self._stop_leading(reason="renewal failed or lease lost")
        finally:
            self._running = False
            await self._stop_leading(reason="stopped")

    async def release(self) -> bool:
        """Give up the Lease if we hold it, so another replica takes over at once.

        Call it after cancelling `run()`. Returns whether a release was written; a Lease that
        someone else has taken meanwhile is left alone.
        """
        if self._running:
            raise RuntimeError("cancel run() before release()")
        lease = self._lease
        if lease is None or LeaseRecord.of(lease).holder != self.identity:
            return False
        await self._stop_leading(reason="released")
        what = f"release Lease {self.namespace}/{self.name}"
        try:
            try:
                with translated(what):
                    written = await self._client.replace(self._released(lease))
            except Conflict:
                # NB: written since our last remembered write. A renewal cancelled after the
                # API server applied it but before its answer arrived does that, and so does
                # anyone else. Read it: still ours (the holder is this process's own identity),
                # it is ours to free; the PUT's resourceVersion check covers whoever might
                # take it between the read and the write.
                fresh = await self._read()  # a GET, now that we lead no more
                if fresh is None:
                    return False  # deleted: nothing to free
                if LeaseRecord.of(fresh).holder != self.identity:
                    self._log.info("the leader Lease was taken meanwhile: not released",
                                   holder=self.holder)  # fmt: skip
                    return False
                with translated(what):
                    written = await self._client.replace(self._released(fresh))
        except (Conflict, NotFound):
            return False  # someone else has written (or deleted) the Lease: not ours to free
        except KubeError as e:
            self._log.warning("could not release the leader Lease", error=str(e))
            return False
        self._remember(written, at=self._clock())
        self._log.info("released the leader Lease")
        return True

    def _released(self, lease: Lease) -> Lease:
        """`lease` given up: as client-go's ReleaseOnCancel writes it, an empty holder and a
        one-second duration, the transitions kept."""
        stamp = _micro(self._now())
        spec = LeaseSpec(
            holderIdentity="",
            leaseDurationSeconds=1,
            acquireTime=stamp,
            renewTime=stamp,
            leaseTransitions=LeaseRecord.of(lease).transitions,
        )
        return Lease(metadata=lease.metadata, spec=spec)

    # -- the protocol ---------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True if we hold it now.

        Raises `KubeError` when the API server could not be asked; a lost race (409) or a
        Lease held by someone else is an ordinary False.
        """
        started = self._clock()
        stamp = _micro(self._now())
        lease = await self._read()
        if lease is None:
            created = await self._write_new(stamp)
            if created is None:
                return False
            self._remember(created, at=self._clock())
            self._renewed_at = started
            return True
        record = LeaseRecord.of(lease)
        if (
            record.holder is not None
            and record.holder != self.identity
            and self._observed_at + record.lease_duration > self._clock()
        ):
            return False
        if record.holder == self.identity:
            acquire_time, transitions = record.acquire_time or stamp, record.transitions
        else:
            acquire_time, transitions = stamp, record.transitions + 1
        spec = LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=self._lease_seconds,
            acquireTime=_micro(acquire_time),
            renewTime=stamp,
            leaseTransitions=transitions,
        )
        try:
            with translated(f"update Lease {self.namespace}/{self.name}"):
                written = await self._client.replace(Lease(metadata=lease.metadata, spec=spec))
        except (Conflict, NotFound):
            # NB: someone else wrote (or deleted) the Lease after we read it. Read what they
            # wrote right away, so the caller sees the new holder instead of retrying blind.
            self._lease = None
            with contextlib.suppress(KubeError):
                await self._read()
            return False
        self._remember(written, at=self._clock())
        self._renewed_at = started
        return True

    @property
    def _lease_seconds(self) -> int:
        return max(1, math.ceil(self.lease_duration))

    async def _read(self) -> Lease | None:
        """The current Lease (None if absent), noting when its record last changed."""
        cached = self._lease
        if cached is not None and self._renewed_at is not None:
            # NB: while leading, our own last write is the record; the PUT's resourceVersion
            # check tells us if anyone wrote since, so renewals skip the GET.
            return cached
        try:
            with translated(f"get Lease {self.namespace}/{self.name}"):
                lease = await self._client.get(Lease, self.name, namespace=self.namespace)
        except NotFound:
            return None
        self._remember(lease, at=self._clock())
        return lease

    async def _write_new(self, stamp: datetime) -> Lease | None:
        lease = Lease(
            metadata=ObjectMeta(name=self.name, namespace=self.namespace),
            spec=LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=self._lease_seconds,
                acquireTime=stamp,
                renewTime=stamp,
                leaseTransitions=0,
            ),
        )
        try:
            with translated(f"create Lease {self.namespace}/{self.name}"):
                created: Lease = await self._client.create(lease)
        except Conflict:
            return None  # another replica created it first
        return created

    def _remember(self, lease: Lease, *, at: float) -> None:
        self._lease = lease
        record = LeaseRecord.of(lease)
        if record != self._observed:
            self._observed, self._observed_at = record, at

    async def _acquire(self) -> None:
        logged = False
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
                if not logged:
                    self._log.info("waiting for the leader Lease", holder=self.holder)
                    logged = True
            except KubeError as e:
                self._log_failure("acquire", e)
            await asyncio.sleep(self._jittered(self.retry_period))

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            if not await self._renew():
                return

    async def _renew(self) -> bool:
        """Renew, retrying until `renew_deadline` after the last success; False if lost."""
        while self._renewed_at is not None:
            remaining = self._renewed_at + self.renew_deadline - self._clock()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    if await self.try_acquire_or_renew():
                        return True
                if self.holder not in (None, self.identity):
                    return False  # someone else holds it: no point retrying
            except KubeError as e:
                self._log_failure("renew", e)
            except TimeoutError:
                return False
            remaining = self._renewed_at + self.renew_deadline - self._clock()
            await asyncio.sleep(max(0.0, min(self._jittered(self.retry_period), remaining)))
        return False

    async def _start_leading(self) -> None:
        self._log.info("became the leader", instance=self.identity)
        self._leading.set()
        if self._on_started is not None:
            await self._on_started()

    async def _stop_leading(self, *, reason: str) -> None:
        self._renewed_at = None
        if not self._leading.is_set():
            return  # acquired, but stopped before leading began: nothing was started
        self._leading.clear()
        self._log.info("stopped leading", why=reason)
        if self._on_stopped is not None:
            await self._on_stopped()

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + JITTER * self._rng.random())

    def _log_failure(self, what: str, error: KubeError) -> None:
        self._log.warning(
            f"could not {what} the leader Lease",
            error=str(error),
            error_class=type(error).__name__,
        )


def _micro(moment: datetime) -> datetime:
    # NB: Lease times are MicroTime, which the API server parses with exactly six fractional
    # digits; lightkube (msgspec) writes a datetime whose microsecond is 0 with none, and the
    # server rejects it. One microsecond later is indistinguishable for this purpose.
    moment = moment.astimezone(UTC)
    return moment if moment.microsecond else moment.replace(microsecond=1)
