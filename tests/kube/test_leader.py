"""Leader election on a Lease: one leader, prompt failover, fast handover on release."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import lightkube
import pytest
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from pull_secret_updater.kube import LeaderElector
from pull_secret_updater.kube.leader import JITTER
from tests.kube.support import cancel

pytestmark = pytest.mark.stack

LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
SLACK = 1.0  # request latency and scheduling on a busy machine


class Candidate:
    """One replica: an elector running as a task, recording its start/stop callbacks."""

    def __init__(self, client: lightkube.AsyncClient, namespace: str, identity: str) -> None:
        self.transitions: list[str] = []
        self.stopped = asyncio.Event()

        async def started() -> None:
            self.transitions.append("started")

        async def stopped() -> None:
            self.transitions.append("stopped")
            self.stopped.set()

        self.elector = LeaderElector(
            client,
            namespace=namespace,
            name="pull-secret-updater",
            identity=identity,
            lease_duration=LEASE,
            renew_deadline=RENEW,
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


@pytest.fixture
async def pair(
    admin: lightkube.AsyncClient, namespace: str
) -> AsyncIterator[tuple[Candidate, Candidate]]:
    a, b = Candidate(admin, namespace, "replica-a"), Candidate(admin, namespace, "replica-b")
    try:
        yield a, b
    finally:
        for candidate in (a, b):
            if candidate.task is not None:
                await cancel(candidate.task)


async def _first_leader(a: Candidate, b: Candidate) -> tuple[Candidate, Candidate]:
    async with asyncio.timeout(5):
        await asyncio.wait(
            [asyncio.create_task(c.elector.wait_leading()) for c in (a, b)],
            return_when=asyncio.FIRST_COMPLETED,
        )
    return (a, b) if a.elector.is_leader else (b, a)


async def _holder(admin: lightkube.AsyncClient, namespace: str) -> str | None:
    lease = await admin.get(Lease, "pull-secret-updater", namespace=namespace)
    assert lease.spec is not None
    return lease.spec.holderIdentity


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
    assert await _holder(admin, namespace) == leader.elector.identity
    assert follower.elector.holder == leader.elector.identity

    await leader.kill()  # no release: the Lease has to expire
    killed = time.monotonic()
    assert not leader.elector.is_leader
    assert leader.transitions == ["started", "stopped"]
    async with asyncio.timeout(LEASE + 2 * RETRY * (1 + JITTER) + SLACK):
        await follower.elector.wait_leading()
    took = time.monotonic() - killed

    # It waited for the lease to run out, measured on its own clock, and no longer.
    assert took >= LEASE - RETRY
    assert await _holder(admin, namespace) == follower.elector.identity
    assert follower.transitions == ["started"]
    lease = await admin.get(Lease, "pull-secret-updater", namespace=namespace)
    assert lease.spec is not None
    assert lease.spec.leaseTransitions == 1


async def test_a_released_lease_is_taken_over_at_the_next_retry(
    admin: lightkube.AsyncClient, pair: tuple[Candidate, Candidate]
) -> None:
    a, b = pair
    a.start()
    b.start()
    leader, follower = await _first_leader(a, b)
    await leader.kill()
    assert await leader.elector.release()
    released = time.monotonic()
    async with asyncio.timeout(RETRY * (1 + JITTER) + SLACK):
        await follower.elector.wait_leading()
    assert time.monotonic() - released < LEASE - RETRY
    assert not await leader.elector.release()  # not ours any more: nothing to give up


async def test_a_leader_whose_lease_is_taken_steps_down(
    admin: lightkube.AsyncClient, namespace: str, pair: tuple[Candidate, Candidate]
) -> None:
    a, _ = pair
    a.start()
    async with asyncio.timeout(5):
        await a.elector.wait_leading()
    await admin.patch(
        Lease,
        "pull-secret-updater",
        {"spec": {"holderIdentity": "intruder"}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    async with asyncio.timeout(RETRY + SLACK):  # its next renewal finds out
        await a.stopped.wait()
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
