"""Stopping a run of the local stack however its user leaves, and cleaning up to the end.

The stack changes the host (``devstack.hoststate``), so the process that owns it must finish
its cleanup whatever ends the run:

- Ctrl-C (SIGINT), ``kill`` (SIGTERM) or a closed terminal (SIGHUP), sent to the process or to
  its whole process group, and often twice: ``uv run`` forwards to its child the signal the
  group already got;
- output nobody reads any more: after a hangup every write to the terminal fails (EIO), and
  when the reader of a pipe went away (``make demo | head``, or the ``tee`` of
  ``make demo | tee log`` that the same Ctrl-C stopped) every write fails (EPIPE). An error
  from a ``print`` in a ``finally`` skips the cleanup that follows it.

``install()`` turns the first of these into ``Interrupted`` in the main thread and ignores
the ones after it, which would interrupt the cleanup the first one started. ``Interrupted`` is
a ``KeyboardInterrupt``, so whatever handles Ctrl-C handles the others too: ``finally``
blocks, pytest's teardown of fixtures, ``asyncio.run``. A stop that arrives within
``deferred()`` (the stack's and the node's ``stop()``) is raised when the block ends, so a
cleanup that is not the last thing a run does is not cut short either. Output that cannot be
written any more goes to /dev/null, and a reader that goes away while the run is quiet stops
it as well (the run is watched for it, not only its writes).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_CAUSES = {
    signal.SIGINT: "Ctrl-C",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP: the terminal went away",
}
_OUTPUT_CLOSED = "the output was closed"


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop: by a signal, or because its output was closed."""


class _State:
    installed = False
    stopping = False  # a stop was raised, or the run is cleaning up before it exits
    deferring = 0
    pending: str | None = None  # the cause of a stop that waits for the end of deferred()
    output_closed = False


_state = _State()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.stopping:
        return
    cause = _OUTPUT_CLOSED if _state.output_closed else _CAUSES[signal.Signals(signum)]
    if _state.deferring:
        _state.pending = _state.pending or cause
        return
    _state.stopping = True
    raise Interrupted(cause)


def install(*, std_streams: bool = True) -> None:
    """Stop on the signals and the closed output above (idempotent; from the main thread).

    ``std_streams``: also replace ``sys.stdout`` and ``sys.stderr`` with line-buffered streams
    whose writes never fail; a runner that swaps them itself (pytest's capture) says False.
    """
    if _state.installed:
        return
    for signum in STOP_SIGNALS:
        # Also over an inherited SIG_IGN (nohup, some launchers): the stack must not outlive
        # whoever started it, with nobody left to stop it.
        signal.signal(signum, _on_signal)
    # NB: SIGPIPE stays ignored, as Python sets it: a write to any closed pipe or socket (a
    # child's stdin, an HTTP connection) raises SIGPIPE, not only one to the output.
    if std_streams and sys.stdout is not None and sys.stderr is not None:
        sys.stdout = _forgiving_stream(sys.stdout)
        sys.stderr = _forgiving_stream(sys.stderr)
    watched = {}
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            watched[os.dup(fd)] = fd  # the file as it is now, whatever is put on fd later
    threading.Thread(
        target=_watch_output, args=(watched,), name="output-watch", daemon=True
    ).start()
    _state.installed = True


def wait() -> None:
    """Block until a stop is raised."""
    while True:
        # Not signal.pause(): a signal that lands on another thread would not end it.
        time.sleep(1)


def exiting() -> None:
    """The run is cleaning up to exit: from now on stop signals are ignored, not raised."""
    _state.stopping = True


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop that arrives within the block is raised only when the block ends."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
        if not _state.deferring and _state.pending is not None and not _state.stopping:
            _state.stopping = True
            raise Interrupted(_state.pending)


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def _divert(fd: int, original: int) -> None:
    """Point ``fd`` at /dev/null if it still holds the file ``original`` is a copy of (pytest's
    capture puts other files there for a while)."""
    try:
        now, then = os.fstat(fd), os.fstat(original)
    except OSError:
        return
    if (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino):
        _to_devnull(fd)


def _watch_output(watched: dict[int, int]) -> None:
    """Stop the run when its stdout or stderr goes away (a pipe's reader closed, a hangup)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # they are the main thread's
    poller = select.poll()
    for copy in watched:
        poller.register(copy, 0)  # errors and hang-ups are always reported
    while watched:
        for copy, events in poller.poll():
            if not events & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                continue
            poller.unregister(copy)
            _divert(watched.pop(copy), copy)
            os.close(copy)
            _state.output_closed = True
            # NB: to the main thread itself, so that a blocking call there returns.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGHUP)


class _ForgivingWriter(io.RawIOBase):
    """Writes to ``fd`` that never fail: once the file is gone, ``fd`` is /dev/null."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return os.write(self._fd, data)
        except OSError:
            _to_devnull(self._fd)
            return memoryview(data).nbytes


def _forgiving_stream(stream: TextIO) -> io.TextIOWrapper:
    with contextlib.suppress(OSError):
        stream.flush()
    return io.TextIOWrapper(
        io.BufferedWriter(_ForgivingWriter(stream.fileno())),
        encoding=stream.encoding or "utf-8",
        errors="backslashreplace",
        line_buffering=True,  # a reader of the pipe (tee, a test) sees each line as it comes
    )
