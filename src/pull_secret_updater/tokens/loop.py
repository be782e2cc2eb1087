"""The token layer's coroutines, with an event loop or without one.

The controller runs the exchanges on asyncio's event loop, many at once. The kubelet plugin is
one short process per call that makes one to three requests one after the other: it runs the
same coroutines without a loop, because importing asyncio and setting a loop up cost about a
tenth of its call and it has nothing to run concurrently. Its transport (`tokens.blocking`)
does blocking I/O inside coroutines that therefore never suspend, and `run` drives such a
coroutine to its end.

What the token layer needs of asyncio it takes from here, and each works both ways:

- `within(seconds)`: a deadline for a block. Under a loop, ``asyncio.timeout``. Without one,
  the deadline is kept in a context variable that the blocking transport reads (`limit`: no
  socket operation waits past it); once it has passed, the transport raises `DeadlineExceeded`
  for the block whose deadline it was (the soonest of those entered), which that block turns
  into ``TimeoutError``, as ``asyncio.timeout`` does. An outer block's deadline passes through
  the inner blocks (and any ``except Exception``) untouched, as a cancellation does.
- `Lock`: ``asyncio.Lock`` under a loop; without one, nothing can contend for it.
- `run(coroutine)`: drives a coroutine that never suspends. One that does (it waits for
  something only an event loop delivers) is an error, never a hang.

NB: asyncio is never imported here. Whether a loop runs is asked of asyncio only when something
has imported it already: no loop can run before that.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Coroutine
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["Deadline", "DeadlineExceeded", "Lock", "limit", "run", "running", "within"]

T = TypeVar("T")


def running() -> bool:
    """Whether this thread runs an event loop (asyncio's)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`coroutine`'s result, driven without an event loop; RuntimeError if it suspends."""
    try:
        waited = coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError(
        f"a coroutine run without an event loop waited for {type(waited).__name__}, which only "
        "an event loop delivers"
    )


class DeadlineExceeded(BaseException):
    """A `within` block's deadline passed during a blocking operation; that block turns it into
    TimeoutError. A BaseException, like asyncio's cancellation, so that no ``except
    Exception`` between the operation and its block takes it for an error of its own."""

    def __init__(self, block: Deadline) -> None:
        super().__init__("deadline exceeded")
        self.block = block


#: The soonest deadline of the `within` blocks entered (without an event loop).
_SOONEST: ContextVar[Deadline | None] = ContextVar("pull_secret_updater_deadline", default=None)


class Deadline:
    """A deadline without an event loop (see `within`)."""

    __slots__ = ("_token", "at")

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds
        self._token: Token[Deadline | None] | None = None

    async def __aenter__(self) -> None:
        soonest = _SOONEST.get()
        if self.at is not None and (soonest is None or soonest.at is None or self.at < soonest.at):
            soonest = self
        self._token = _SOONEST.set(soonest)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._token is not None
        _SOONEST.reset(self._token)
        if isinstance(error, DeadlineExceeded) and error.block is self:
            raise TimeoutError from None


def within(seconds: float | None) -> asyncio.Timeout | Deadline:
    """An async context manager that bounds its block to `seconds` (None: unbounded), raising
    TimeoutError when they pass (module docstring)."""
    if running():
        import asyncio

        return asyncio.timeout(seconds)
    return Deadline(seconds)


def limit(seconds: float | None) -> tuple[float | None, Deadline | None]:
    """How long a blocking operation may wait: `seconds`, or the time left to the soonest
    `within` deadline when that is shorter (returned with its block, for `DeadlineExceeded`).
    Raises DeadlineExceeded when that deadline has passed already."""
    soonest = _SOONEST.get()
    if soonest is None or soonest.at is None:
        return seconds, None
    left = soonest.at - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(soonest)
    if seconds is None or left < seconds:
        return left, soonest
    return seconds, None


class Lock:
    """``asyncio.Lock`` under an event loop (made at its first use there); without one, a
    flag: nothing runs concurrently, so nothing can wait for it."""

    __slots__ = ("_held", "_lock")

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._held = False

    async def __aenter__(self) -> None:
        if running():
            if self._lock is None:
                import asyncio

                self._lock = asyncio.Lock()
            await self._lock.acquire()
            return
        if self._held:
            raise RuntimeError("a lock taken twice without an event loop would never be released")
        self._held = True

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._held:
            self._held = False
        else:
            assert self._lock is not None
            self._lock.release()
