"""What a node whose owner died leaves on the host is swept by the next node.

A test run killed with SIGKILL takes containerd and the kubelet with it (they die with their
parent), but containers, shims, mounts, cgroups and the Pod bridge outlive them. The shared
record in /run/pull-secret-updater names the dead owner, and the next ``acquire`` removes all
of it. Here the leftovers are made by hand, in the shape a real node leaves them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import hoststate
from devstack.node import Node

pytestmark = [pytest.mark.stack, pytest.mark.node]


def _mounted(path: Path) -> bool:
    return str(path) in hoststate.mounts_under(str(path))


@pytest.fixture
def dead_owner() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def container() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for a container the dead node left running."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_leftovers_of_a_node_whose_owner_died_are_swept(
    node: Node, tmp_path: Path, dead_owner: int, container: subprocess.Popen[bytes]
) -> None:
    workdir = tmp_path / "dead-node"
    volume = workdir / "kubelet" / "pods" / "p" / "volumes" / "token"
    volume.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(volume)], check=True)
    claim = hoststate.NodeClaim(
        node_id="deadbeef",
        owner_pid=dead_owner,
        owner_start="0",
        workdir=str(workdir),
        cgroup_root="/psu-node-deadbeef",
        containerd_socket=str(workdir / "containerd.sock"),
        bridge="psu-deadbeef",
    )
    hoststate._create_cgroup_root(claim.cgroup_root)
    cgroups = hoststate.cgroup_dirs(claim.cgroup_root)
    joined = 0
    for directory in cgroups:
        (directory / "kubepods").mkdir()
        try:  # cpuset (v1) takes tasks only once it has cpus and mems of its own
            (directory / "kubepods" / "cgroup.procs").write_text(str(container.pid))
            joined += 1
        except OSError:
            pass
    assert joined
    subprocess.run(["ip", "link", "add", claim.bridge, "type", "bridge"], check=True)
    logs = Path("/var/log/containers")  # the running node's kubelet made it
    link = logs / "deadbeef_x_c-0.log"
    link.symlink_to(workdir / "pod-logs" / "x" / "0.log")
    with hoststate._locked_state() as state:
        state["nodes"][claim.node_id] = dataclasses.asdict(claim)

    # The next node to start sweeps (here one that starts and stops at once).
    probe = dataclasses.replace(
        node._claim,
        node_id="probe000",
        workdir=str(tmp_path / "probe"),
        cgroup_root="/psu-node-probe000",
        containerd_socket=str(tmp_path / "probe" / "containerd.sock"),
        bridge="psu-probe000",
    )
    hoststate.acquire(probe)
    hoststate.release(probe)

    assert container.wait(timeout=10) == -signal.SIGKILL  # the sweep's, not an exit of its own
    assert not _mounted(volume)
    assert not any(d.exists() for d in cgroups)
    assert not Path("/sys/class/net", claim.bridge).exists()
    assert not link.is_symlink()
    with hoststate._locked_state() as state:
        assert set(state["nodes"]) == {node.node_id}
    # The running node is untouched, and so are the values it needs.
    assert node.ready()
    for name, value in hoststate.KUBELET_SYSCTLS.items():
        assert int(Path("/proc/sys", name).read_text()) == value
    assert os.path.isdir("/var/lib/kubelet")
