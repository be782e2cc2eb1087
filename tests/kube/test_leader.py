"""Leader election on a Lease: one leader, prompt failover, fast handover on release.

How soon a takeover happens is shown by counting the contenders' attempts, which are at
least a retry period apart, rather than by timing them: a loaded machine makes fewer
attempts, never more. Where the quick path (a release, a lost Lease noticed) must be told
apart from the slow one (waiting for the Lease to expire), the Lease is made long, so that
a generous deadline still separates the two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import lightkube
import pytest
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from pull_secret_updater.kube import LeaderElector
from tests.kube.support import cancel
from tests.reliability.support import figure

pytestmark = pytest.mark.stack

LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
#: Long enough that nothing on a slow machine takes this long but waiting for the Lease.
LONG_LEASE, LONG_RENEW = 30.0, 20.0
#: For what must happen eventually; for the quick paths, well short of the long Lease.
DEADLINE = 15.0
#: Lease times are wall-clock, the elector's waits monotonic: allow for the clock's slewing.
CLOCK_SLEW = 0.05


class _CountingElector(LeaderElector):
    """A `LeaderElector` that notes when each attempt to take or keep the Lease starts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts: list[float] = []

    async def try_acquire_or_renew(self) -> bool:
        self.attempts.append(time.monotonic())
        return await super().try_acquire_or_renew()

    def attempts_since(self, moment: float) -> int:
        return sum(1 for at in self.attempts if at > moment)


class Candidate:
    """One replica: an elector running as a task, recording its start/stop callbacks."""

    def __init__(
        self, client: lightkube.AsyncClient, namespace: str, identity: str, *,
        lease: float = LEASE, renew: float = RENEW,
    ) -> None:  # fmt: skip
        self.transitions: list[str] = []
        self.stopped = asyncio.Event()
        self.started_at: float | None = None  # wall-clock, when it began to lead

        async def started() -> None:
            self.started_at = time.time()
            self.transitions.append("started")

        async def stopped() -> None:
            self.transitions.append("stopped")
            self.stopped.set()

        self.elector = _CountingElector(
            client,
            namespace=namespace,
            name="pull-secret-updater",
            identity=identity,
            lease_duration=lease,
            renew_deadline=renew,
            retry_period=RETRY,
            on_started=started,
            on_stopped=stopped,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run())

    async def kill(self) -> None:
        assert self.task is not None
        await cancel(self.task)


Candidates = Callable[..., Candidate]


@pytest.fixture
async def candidates(admin: lightkube.AsyncClient, namespace: str) -> AsyncIterator[Candidates]:
    """`make(identity, *, lease=LEASE, renew=RENEW)`: a replica, cancelled at the end."""
    made: list[Candidate] = []

    def make(identity: str, **timings: float) -> Candidate:
        made.append(Candidate(admin, namespace, identity, **timings))
        return made[-1]

    try:
        yield make
    finally:
        for candidate in made:
            if candidate.task is not None:
                await cancel(candidate.task)


@pytest.fixture
def pair(candidates: Candidates) -> tuple[Candidate, Candidate]:
    return candidates("replica-a"), candidates("replica-b")


async def _first_leader(a: Candidate, b: Candidate) -> tuple[Candidate, Candidate]:
    async with asyncio.timeout(DEADLINE):
        await asyncio.wait(
            [asyncio.create_task(c.elector.wait_leading()) for c in (a, b)],
            return_when=asyncio.FIRST_COMPLETED,
        )
    return (a, b) if a.elector.is_leader else (b, a)


async def _lease(admin: lightkube.AsyncClient, namespace: str) -> Lease:
    lease = await admin.get(Lease, "pull-secret-updater", namespace=namespace)
    assert lease.spec is not None
    return lease


async def _holder(admin: lightkube.AsyncClient, namespace: str) -> str | None:
    spec = (await _lease(admin, namespace)).spec
    assert spec is not None
    return spec.holderIdentity


async def test_only_one_of_two_replicas_leads_and_a_killed_leader_is_replaced(
    admin: lightkube.AsyncClient, namespace: str, pair: tuple[Candidate, Candidate]
) -> None:
    a, b = pair
    a.start()
    b.start()
    leader, follower = await _first_leader(a, b)
    await asyncio.sleep(LEASE + RETRY)  # long enough for a wrong takeover to show
    assert leader.elector.is_leader
    assert not follower.elector.is_leader
    assert (leader.elector.leading, follower.elector.leading) == (True, False)
    assert await _holder(admin, namespace) == leader.elector.identity
    assert follower.elector.holder == leader.elector.identity

    await leader.kill()  # no release: the Lease has to expire
    killed = time.monotonic()
    assert not leader.elector.is_leader
    assert not leader.elector.leading
    assert leader.transitions == ["started", "stopped"]
    last = (await _lease(admin, namespace)).spec
    assert last is not None
    assert last.holderIdentity == leader.elector.identity, "taken over before it could expire"
    assert last.renewTime is not None
    async with asyncio.timeout(DEADLINE):
        await follower.elector.wait_leading()
    figure("leader: killed -> the follower leads", time.monotonic() - killed, "s")

    # It waited for the lease to run out, timed from when it saw the last renewal (written
    # after `renewTime` was stamped) ...
    assert follower.started_at is not None
    assert follower.started_at - last.renewTime.timestamp() >= LEASE - CLOCK_SLEW
    # ... and no longer: its attempts are at least a retry period apart, so there are at most
    # this many from the one that saw the last renewal (or the one after, if a read was
    # answered with the record before it) to the one that took over.
    assert follower.elector.attempts_since(killed) <= LEASE / RETRY + 3
    assert await _holder(admin, namespace) == follower.elector.identity
    assert follower.transitions == ["started"]
    lease = await _lease(admin, namespace)
    assert lease.spec is not None
    assert lease.spec.leaseTransitions == 1


async def test_a_released_lease_is_taken_over_at_the_next_retry(
    candidates: Candidates,
) -> None:
    # A long Lease: waiting for it to expire would take far longer than DEADLINE.
    a = candidates("replica-a", lease=LONG_LEASE, renew=LONG_RENEW)
    b = candidates("replica-b", lease=LONG_LEASE, renew=LONG_RENEW)
    a.start()
    b.start()
    leader, follower = await _first_leader(a, b)
    await leader.kill()
    assert await leader.elector.release()
    released = time.monotonic()
    async with asyncio.timeout(DEADLINE):
        await follower.elector.wait_leading()
    figure("leader: released -> the follower leads", time.monotonic() - released, "s")
    # Its next attempt took it (or the one after, if one was under way during the release).
    assert follower.elector.attempts_since(released) <= 2
    assert not await leader.elector.release()  # not ours any more: nothing to give up


async def _stopped_leader(candidates: Candidates) -> Candidate:
    """A replica that led (with a long Lease) and was stopped without releasing it yet."""
    leader = candidates("replica-a", lease=LONG_LEASE, renew=LONG_RENEW)
    leader.start()
    async with asyncio.timeout(DEADLINE):
        await leader.elector.wait_leading()
    await leader.kill()
    return leader


async def _write_behind(
    admin: lightkube.AsyncClient, namespace: str, patch: dict[str, Any]
) -> None:
    """`patch` written to the Lease behind the leader's back (a write it never saw)."""
    await admin.patch(
        Lease, "pull-secret-updater", patch, namespace=namespace, patch_type=PatchType.MERGE
    )


async def test_a_release_frees_the_lease_even_when_a_renewal_answer_was_lost(
    admin: lightkube.AsyncClient, namespace: str, candidates: Candidates
) -> None:
    # A renewal cancelled by the stop after the API server applied it, before its answer came
    # back: the Lease is still ours, but its resourceVersion is newer than the one we know.
    a = await _stopped_leader(candidates)
    renewal = {"spec": {"renewTime": datetime.now(UTC).isoformat(timespec="microseconds")}}
    await _write_behind(admin, namespace, renewal)
    assert await _holder(admin, namespace) == a.elector.identity
    assert await a.elector.release()
    lease = await _lease(admin, namespace)
    assert lease.spec is not None
    assert not lease.spec.holderIdentity
    assert lease.spec.leaseDurationSeconds == 1


async def test_a_release_leaves_alone_a_lease_taken_meanwhile(
    admin: lightkube.AsyncClient, namespace: str, candidates: Candidates
) -> None:
    a = await _stopped_leader(candidates)
    await _write_behind(admin, namespace, {"spec": {"holderIdentity": "intruder"}})
    assert not await a.elector.release()
    assert await _holder(admin, namespace) == "intruder"
    assert a.elector.holder == "intruder"


async def test_a_leader_whose_lease_is_taken_steps_down(
    admin: lightkube.AsyncClient, namespace: str, candidates: Candidates
) -> None:
    # A long renew deadline: stepping down because it lapsed would take longer than DEADLINE.
    a = candidates("replica-a", lease=LONG_LEASE, renew=LONG_RENEW)
    a.start()
    async with asyncio.timeout(DEADLINE):
        await a.elector.wait_leading()
    await admin.patch(
        Lease,
        "pull-secret-updater",
        {"spec": {"holderIdentity": "intruder"}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    taken = time.monotonic()
    async with asyncio.timeout(DEADLINE):  # its next renewal finds out
        await a.stopped.wait()
    assert a.elector.attempts_since(taken) <= 2
    assert a.transitions == ["started", "stopped"]
    assert not a.elector.is_leader
    assert a.elector.holder == "intruder"


async def test_leadership_lapses_with_the_clock_when_renewals_stall(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    now = [100.0]
    elector = LeaderElector(
        admin,
        namespace=namespace,
        name="stalled",
        identity="replica-a",
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
        clock=lambda: now[0],
        # A whole second: the API server insists on six fractional digits in a MicroTime.
        now=lambda: datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert await elector.try_acquire_or_renew()
    assert elector.is_leader
    now[0] += RENEW - 0.1
    assert elector.is_leader
    now[0] += 0.1
    assert not elector.is_leader
    lease = await admin.get(Lease, "stalled", namespace=namespace)
    assert lease.spec is not None
    assert lease.spec.holderIdentity == "replica-a"


def test_timings_that_could_make_two_leaders_are_refused(admin: lightkube.AsyncClient) -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        LeaderElector(
            admin, namespace="n", name="l", identity="i", lease_duration=2, renew_deadline=2
        )
    with pytest.raises(ValueError, match="retry_period"):
        LeaderElector(
            admin, namespace="n", name="l", identity="i", renew_deadline=2, retry_period=2
        )
