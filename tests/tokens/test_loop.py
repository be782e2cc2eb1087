"""The token layer's coroutines without an event loop (the kubelet plugin) and with one (the
controller): `run`, deadlines that nest as asyncio.timeout's do, and the lock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator

import pytest

from pull_secret_updater.tokens import loop


def pause(seconds: float) -> None:
    """Waits as the plugin's blocking calls do (there is no event loop to wait with)."""
    time.sleep(seconds)


class Suspends:
    """An awaitable that suspends, as anything waiting for an event loop does."""

    def __await__(self) -> Generator[None, None, None]:
        yield


def test_run_drives_a_coroutine_that_never_suspends() -> None:
    async def inner() -> int:
        return 2

    async def outer() -> int:
        return await inner() * 21

    assert loop.run(outer()) == 42
    assert not loop.running()


def test_a_coroutine_that_suspends_is_an_error_not_a_hang_and_is_closed() -> None:
    closed = []

    async def waits() -> None:
        try:
            await Suspends()
        finally:
            closed.append(True)

    with pytest.raises(RuntimeError, match="only an event loop delivers"):
        loop.run(waits())
    assert closed == [True]


def test_limit_is_the_operations_own_timeout_until_a_deadline_is_sooner() -> None:
    assert loop.limit(5) == (5, None)
    assert loop.limit(None) == (None, None)

    async def check() -> None:
        async with loop.within(None):
            assert loop.limit(5) == (5, None)
        async with loop.within(60):
            assert loop.limit(5) == (5, None)
            wait, block = loop.limit(None)
            assert wait is not None
            assert 59 < wait <= 60
            assert block is not None
            async with loop.within(1):
                wait, inner = loop.limit(5)
                assert wait is not None
                assert wait <= 1
                assert inner is not None
                assert inner is not block
            async with loop.within(120):  # a later one leaves the sooner in force
                assert loop.limit(None)[1] is block
        assert loop.limit(5) == (5, None)

    loop.run(check())


def test_a_passed_deadline_is_timeout_error_for_its_own_block_only() -> None:
    seen: list[str] = []

    async def operation() -> None:
        loop.limit(5)  # what the blocking transport asks before each socket operation

    async def inner() -> None:
        try:
            async with loop.within(10):
                try:
                    await operation()
                except Exception:  # the case: nothing in between takes it
                    seen.append("swallowed")
        except TimeoutError:
            seen.append("the inner block's")

    async def outer() -> str:
        try:
            async with loop.within(0.01):
                pause(0.02)
                await inner()
        except TimeoutError:
            return "the outer block's"
        return "none"

    assert loop.run(outer()) == "the outer block's"
    assert seen == []
    # Its own deadline passed: the inner block's TimeoutError.

    async def own() -> str:
        try:
            async with loop.within(0.01):
                pause(0.02)
                await operation()
        except TimeoutError:
            return "timed out"
        return "none"

    assert loop.run(own()) == "timed out"
    # A block whose deadline passed with nothing waiting is not an error (as asyncio's).

    async def idle() -> str:
        async with loop.within(0.01):
            pause(0.02)
        return "done"

    assert loop.run(idle()) == "done"


def test_the_lock_without_an_event_loop() -> None:
    lock = loop.Lock()

    async def twice() -> None:
        async with lock:
            pass
        async with lock, lock:
            pass

    with pytest.raises(RuntimeError, match="taken twice"):
        loop.run(twice())

    async def failing() -> None:
        async with lock:
            raise ValueError("inside")

    lock = loop.Lock()
    with pytest.raises(ValueError, match="inside"):
        loop.run(failing())

    async def again() -> str:
        async with lock:
            return "taken again"

    assert loop.run(again()) == "taken again"  # released on the way out of the error


async def test_under_an_event_loop_asyncio_does_the_work() -> None:
    assert loop.running()
    assert isinstance(loop.within(1), asyncio.Timeout)
    with pytest.raises(TimeoutError):
        async with loop.within(0.01):
            await asyncio.sleep(1)
    lock, order = loop.Lock(), []

    async def hold(name: str) -> None:
        async with lock:
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(hold("a"), hold("b"))
    assert order == ["a in", "a out", "b in", "b out"]
