"""What a node changes on the host, and putting it back.

Almost everything a node of the local stack creates lives in the stack's temporary directory
(containerd's root and state, the kubelet's root, pod logs, sockets). A few things cannot:

- kernel tunables the kubelet insists on (``vm.overcommit_memory``, ``kernel.panic``,
  ``kernel.panic_on_oops``, ...). The kubelet runs with ``protectKernelDefaults``, so it only
  checks them; ``acquire`` sets them and the last node to ``release`` restores the saved values;
- a cgroup root per node (``/psu-node-<id>`` in every hierarchy), which the kubelet fills with
  ``kubepods/...``;
- paths the kubelet and CNI hard-code: ``/var/lib/kubelet/device-plugins``,
  ``/var/log/containers``, ``/usr/libexec/kubernetes/kubelet-plugins`` (created at start even
  when another directory is configured), ``/var/lib/cni`` (the plugins' result cache) and
  ``/run/mount`` (util-linux's mount records). Those that did not exist before the first node
  are removed after the last; in those that did, only links into a node's directory are
  removed;
- the node's Pod bridge (``psu-<id>``, made by the CNI bridge plugin), deleted at release;
- mounts (the kubelet's root, pod volumes, container root filesystems) and processes
  (containerd's shims and the containers, which outlive containerd by design).

The shared record (``/run/pull-secret-updater/nodes.json``, under a lock) lists the running
nodes and the saved values, so two stacks on one machine do not undo each other's changes, and
a node whose owner died without cleaning up (SIGKILL, a crash) is swept by the next
``acquire``. ``/run`` is a tmpfs: after a reboot there is nothing to restore.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_DIR = Path("/run/pull-secret-updater")
_STATE = STATE_DIR / "nodes.json"
_LOCK = STATE_DIR / "nodes.lock"

# What the kubelet checks at start (pkg/kubelet/cm.setupKernelTunables).
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
FIXED_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/usr/libexec/kubernetes"),
    Path("/var/lib/cni"),
    Path("/run/mount"),
)
CGROUP_FS = Path("/sys/fs/cgroup")
SHIM = "containerd-shim-runc-v2"


class HostError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeClaim:
    """One node's record: who owns it and where its leftovers would be."""

    node_id: str
    owner_pid: int
    owner_start: str  # the owner's start time, so a reused pid is not taken for the owner
    workdir: str
    cgroup_root: str  # e.g. /psu-node-1a2b3c4d
    containerd_socket: str
    bridge: str  # the Pod network's bridge device


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(claim: NodeClaim) -> bool:
    return _start_time(claim.owner_pid) == claim.owner_start


@contextlib.contextmanager
def _locked_state() -> Iterator[dict[str, Any]]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state: dict[str, Any] = (
            json.loads(_STATE.read_text())
            if _STATE.exists()
            else {"nodes": {}, "sysctls": {}, "created": []}
        )
        try:
            yield state
        finally:
            _save(state)


def _save(state: dict[str, Any]) -> None:
    if state["nodes"]:
        tmp = _STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(_STATE)
    else:
        _STATE.unlink(missing_ok=True)
        _LOCK.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            STATE_DIR.rmdir()


def _read_sysctl(name: str) -> int:
    return int((Path("/proc/sys") / name).read_text().split()[0])


def _write_sysctl(name: str, value: int) -> None:
    try:
        (Path("/proc/sys") / name).write_text(f"{value}\n")
    except OSError as e:
        raise HostError(f"cannot set {name.replace('/', '.')}={value}: {e}") from e


def cgroup_version() -> int:
    return 2 if (CGROUP_FS / "cgroup.controllers").exists() else 1


def _cgroup_dirs(root: str) -> list[Path]:
    """The node's cgroup root in every hierarchy (v1), or the one directory (v2)."""
    rel = root.strip("/")
    if cgroup_version() == 2:
        return [CGROUP_FS / rel]
    return [
        h / rel
        for h in sorted(CGROUP_FS.iterdir())
        if h.is_dir() and not h.is_symlink() and (h / "cgroup.procs").exists()
    ]


def _create_cgroup_root(root: str) -> None:
    for d in _cgroup_dirs(root):
        d.mkdir(exist_ok=True)
    if cgroup_version() == 2:
        # The kubelet needs these controllers below its root.
        wanted = (CGROUP_FS / "cgroup.controllers").read_text().split()
        (CGROUP_FS / root.strip("/") / "cgroup.subtree_control").write_text(
            " ".join(f"+{c}" for c in wanted if c in {"cpu", "cpuset", "memory", "pids", "io"})
        )


def _kill_cgroup_processes(root: str) -> int:
    killed = 0
    for top in _cgroup_dirs(root):
        if not top.exists():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                        killed += 1
    return killed


def _remove_cgroup_root(root: str) -> None:
    for top in _cgroup_dirs(root):
        if not top.exists():
            continue
        for _ in range(50):  # a killed process leaves its cgroup a moment later
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
            if not top.exists():
                break
            time.sleep(0.1)


def _shims_of(socket: str) -> list[int]:
    """containerd shims started for this containerd (their ``-address`` is its socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(SHIM.encode()) and socket.encode() in argv:
            pids.append(int(proc.name))
    return pids


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below ``directory``, deepest first."""
    prefix = directory.rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == directory.rstrip("/") or point.startswith(prefix):
            points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


def unmount_under(directory: str) -> None:
    for _ in range(3):  # a bind mount may be stacked on itself (the kubelet's root)
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def sweep(claim: NodeClaim) -> None:
    """Remove what a node left: containers and shims, mounts, cgroups, links in fixed paths."""
    _kill_cgroup_processes(claim.cgroup_root)
    for pid in _shims_of(claim.containerd_socket):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    unmount_under(claim.workdir)
    _remove_cgroup_root(claim.cgroup_root)
    if Path("/sys/class/net", claim.bridge).exists():
        subprocess.run(["ip", "link", "delete", claim.bridge], capture_output=True, check=False)
    for fixed in FIXED_PATHS:
        if not fixed.is_dir():
            continue
        ours = claim.workdir.rstrip("/") + "/"
        for entry in list(fixed.iterdir()):
            if entry.is_symlink() and os.readlink(entry).startswith(ours):
                entry.unlink(missing_ok=True)


def _sweep_dead(state: dict[str, Any]) -> None:
    for other in [NodeClaim(**c) for c in state["nodes"].values()]:
        if not _alive(other):
            sweep(other)
            del state["nodes"][other.node_id]


def acquire(claim: NodeClaim) -> None:
    """Record the node and prepare the host for its kubelet (see the module docstring)."""
    with _locked_state() as state:
        _sweep_dead(state)
        if not state["nodes"]:
            state["sysctls"] = {name: _read_sysctl(name) for name in KUBELET_SYSCTLS}
            state["created"] = [str(p) for p in FIXED_PATHS if not p.exists()]
        try:
            for name, value in KUBELET_SYSCTLS.items():
                if _read_sysctl(name) != value:
                    _write_sysctl(name, value)
            _create_cgroup_root(claim.cgroup_root)
        except BaseException:
            if not state["nodes"]:
                for name, value in state["sysctls"].items():
                    with contextlib.suppress(HostError):
                        _write_sysctl(name, value)
            _remove_cgroup_root(claim.cgroup_root)
            raise
        state["nodes"][claim.node_id] = asdict(claim)


def release(claim: NodeClaim) -> None:
    """Sweep the node's leftovers; the last node also restores the host's values and paths."""
    with _locked_state() as state:
        sweep(claim)
        state["nodes"].pop(claim.node_id, None)
        _sweep_dead(state)
        if state["nodes"]:
            return
        for name, value in state["sysctls"].items():
            if _read_sysctl(name) != value:
                _write_sysctl(name, value)
        for path in map(Path, state["created"]):
            unmount_under(str(path))
            shutil.rmtree(path, ignore_errors=True)
