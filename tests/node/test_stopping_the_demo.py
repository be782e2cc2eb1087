"""However ``make demo`` is stopped, the host is left as it was before it started; and what a
SIGKILL leaves behind, ``make clean-host`` (``python -m devstack.hoststate``) puts back.

The demo runs as a user starts it, in a session of its own, with its output on a pipe that the
test reads. Once the quickstart's Pod runs on its node (the demo then waits for the refresh,
with kubectl calls in flight), it is stopped the way a user stops it: Ctrl-C, ``kill``, or a
closed terminal, each sent to its whole process group as a terminal sends them, or the reader
of its output going away (``make demo | head``). Then nothing it made may be left: processes
(the node's containers and shims included), mounts, network links, cgroups, kernel tunables,
the kubelet's fixed paths, the shared record and the stack's directory
(``support.HostState``).

Each case starts a whole demo with a node (about half a minute once the controller's image is
built; the first run builds it), so they run without the session's node: see
``tests/conftest.py``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import hoststate
from devstack.binaries import REPO, MissingBinary, find_node_binaries
from devstack.deployment import image_build_prerequisites
from tests.node.support import HostState

pytestmark = [pytest.mark.stack, pytest.mark.node]

# What the demo prints once the kubelet pulled the quickstart's image and runs its container.
UP = b"containers run"
# Generous: the first run builds the controller's image, and a stop removes a whole node.
UP_DEADLINE = 900.0
STOP_DEADLINE = 300.0


class DemoRun:
    """``python -m devstack.demo --node=1`` in a session (and process group) of its own."""

    def __init__(self) -> None:
        # As under uv run: the demo's shell commands run `python` (chainctl) from the venv.
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack.demo", "--node=1"],
            cwd=REPO,
            env={**os.environ, "PATH": path},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._out: int | None = self.process.stdout.fileno()
        self.output = bytearray()

    def _read(self, deadline: float) -> bool:
        """Read what is there (waiting up to the deadline); False at the end of the output."""
        assert self._out is not None
        ready, _, _ = select.select([self._out], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return True
        chunk = os.read(self._out, 65536)
        self.output += chunk
        return bool(chunk)

    def wait_up(self) -> hoststate.NodeClaim:
        """Until the quickstart's Pod runs; the demo's node as the shared record has it."""
        deadline = time.monotonic() + UP_DEADLINE
        while UP not in self.output:
            if not self._read(deadline) or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the demo did not get its Pod running:\n{self.tail()}")
        (claim,) = [c for c in hoststate.claims() if c.owner_pid == self.process.pid]
        return claim

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def close_output(self) -> None:
        assert self.process.stdout is not None
        self.process.stdout.close()
        self._out = None

    def wait_stopped(self) -> int:
        """Until the demo exited (reading its output meanwhile, so it is never blocked on a
        full pipe); its exit status."""
        deadline = time.monotonic() + STOP_DEADLINE
        while self._out is not None and time.monotonic() < deadline and self._read(deadline):
            pass
        try:
            return self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the demo did not stop:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL, and wait: the record takes a dead owner's node for a running one until its
        process is gone."""
        self.signal_group(signal.SIGKILL)
        self.process.wait()

    def tail(self) -> str:
        """The end of the output, after the line that says why the demo failed, if one did."""
        text = self.output.decode(errors="replace")
        failed = [line for line in text.splitlines() if "demo failed" in line]
        return "\n".join([*failed, text[-3000:]])


@pytest.fixture
def before() -> Iterator[HostState]:
    """The host as it is before the demo starts; whatever a failed test left is swept after."""
    if os.environ.get("PSU_SKIP_NODE") == "1":
        pytest.skip("PSU_SKIP_NODE=1: tests on a real node are skipped")
    try:
        find_node_binaries()
    except MissingBinary as e:
        pytest.fail(f"the demo cannot run a node here: {e}", pytrace=False)
    missing = image_build_prerequisites()
    if missing:
        pytest.fail(f"the demo cannot build the controller's image: {missing}", pytrace=False)
    yield HostState.read()
    hoststate.clean_host()


STOPS = ("SIGINT", "SIGTERM", "SIGHUP", "closed output")


@pytest.mark.parametrize("stop", STOPS)
def test_the_demo_leaves_the_host_as_it_was_however_it_is_stopped(
    before: HostState, stop: str
) -> None:
    demo = DemoRun()
    claim = demo.wait_up()
    if stop == "closed output":
        demo.close_output()
    else:
        demo.signal_group(signal.Signals[stop])
    status = demo.wait_stopped()

    left = before.leftovers(stack_dir=Path(claim.workdir).parent, claim=claim)
    assert not left, "\n".join([f"left after {stop}:", *left, "the demo said:", demo.tail()])
    assert status == 0, demo.tail()


def clean_host() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack.hoststate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=STOP_DEADLINE,
    )


def test_clean_host_puts_back_what_a_killed_demo_left(before: HostState) -> None:
    demo = DemoRun()
    claim = demo.wait_up()
    demo.signal_group(signal.SIGKILL)
    demo.wait_stopped()
    stack_dir = Path(claim.workdir).parent
    # Nothing can run at a SIGKILL: the node's containers and all the rest stay behind.
    assert before.leftovers(stack_dir=stack_dir, claim=claim)

    cleaned = clean_host()

    assert cleaned.returncode == 0, cleaned.stderr
    assert before.leftovers(stack_dir=stack_dir, claim=claim) == []
    report = cleaned.stdout.splitlines()
    assert f"removed {stack_dir}" in report
    assert any(line.startswith("removed cgroup " + claim.cgroup_root) for line in report)
    assert any(line.endswith(f"from {hoststate.HOSTS_FILE}") for line in report)  # ECR's name
    again = clean_host()
    assert (again.returncode, again.stdout) == (0, "nothing to restore\n")
