"""A delayed, de-duplicating work queue of Secret keys.

Like client-go's workqueue: a key is in the queue at most once, at its earliest due time; a
key being processed is never handed to a second worker at the same time (an event that arrives
meanwhile marks it dirty and it is processed again after ``done``). Refreshes, retries with
backoff and watch events all go through ``add``, so one place decides what runs when.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: K, *, delay: float = 0.0) -> None:
        """Schedule ``key`` in ``delay`` seconds, unless it is already due sooner."""
        due = self._clock() + max(0.0, delay)
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._wakeup.set()

    def forget(self, key: K) -> None:
        """Drop any pending schedule of ``key`` (its entry in the heap goes stale)."""
        self._due.pop(key, None)
        self._dirty.discard(key)

    def scheduled(self, key: K) -> float | None:
        """The clock time ``key`` is due at, if it is scheduled."""
        return self._due.get(key)

    async def get(self) -> K:
        """Wait for the next due key that no worker is processing, and mark it processing."""
        while True:
            self._wakeup.clear()
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due:
                    heapq.heappop(self._heap)  # stale entry: rescheduled or forgotten
                    continue
                wait = due - self._clock()
                if wait > 0:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                if key in self._processing:
                    self._dirty.add(key)
                    continue
                self._processing.add(key)
                return key
            timeout = None
            if self._heap:
                timeout = max(0.0, self._heap[0][0] - self._clock())
            # NB: not asyncio.wait_for, which on Python 3.11 can swallow a cancellation that
            # arrives together with the wakeup, leaving a stopping worker asleep.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
