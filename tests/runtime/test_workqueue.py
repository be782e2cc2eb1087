"""The work queue: de-duplication, earliest-wins scheduling, one worker per key."""

from __future__ import annotations

import asyncio

import pytest

from pull_secret_updater.runtime.workqueue import WorkQueue
from tests.fakes import FakeClock


async def next_key(queue: WorkQueue[str], wait: float = 0.5) -> str | None:
    try:
        return await asyncio.wait_for(queue.get(), wait)
    except TimeoutError:
        return None


async def test_a_key_added_many_times_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    assert await next_key(queue) == "a"
    assert await next_key(queue, 0.05) is None


async def test_the_earliest_schedule_wins() -> None:
    clock = FakeClock(now=1000.0)
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add("a", delay=100)
    queue.add("a", delay=10)
    queue.add("a", delay=50)
    assert queue.scheduled("a") == 1010
    clock.now += 10
    assert await next_key(queue) == "a"
    clock.now += 100
    assert await next_key(queue, 0.05) is None, "stale heap entries must not be handed out"


async def test_keys_come_out_in_due_order() -> None:
    clock = FakeClock(now=1000.0)
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add("late", delay=2)
    queue.add("early", delay=1)
    queue.add("now")
    clock.now += 5
    assert [await next_key(queue) for _ in range(3)] == ["now", "early", "late"]


async def test_a_delayed_key_is_handed_out_when_due_in_real_time() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", delay=0.05)
    assert await next_key(queue, 0.02) is None
    assert await next_key(queue, 0.5) == "a"


async def test_a_key_being_processed_is_not_given_to_a_second_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await next_key(queue) == "a"
    queue.add("a")  # an event while a worker processes the key
    assert await next_key(queue, 0.05) is None
    queue.done("a")
    assert await next_key(queue) == "a", "the key marked dirty comes back after done()"


async def test_forget_cancels_a_schedule() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", delay=0.01)
    queue.forget("a")
    assert len(queue) == 0
    assert await next_key(queue, 0.05) is None


async def test_a_cancelled_worker_stops_waiting_and_takes_no_key_with_it() -> None:
    # Workers are stopped by cancelling them; a key added afterwards must not be lost to one.
    queue: WorkQueue[str] = WorkQueue()
    stopping = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    queue.add("a")
    assert await next_key(queue) == "a"


async def test_a_worker_cancelled_while_a_key_becomes_due_does_not_swallow_the_cancel() -> None:
    queue: WorkQueue[str] = WorkQueue()
    worker = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a")  # wakes the worker ...
    worker.cancel()  # ... in the same iteration as it is told to stop
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert await next_key(queue) == "a"
