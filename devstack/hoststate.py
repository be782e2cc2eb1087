"""What the local stack changes on the host, and putting it back.

Almost everything a stack creates lives in its temporary directory (``psu-stack-*``: etcd's
data, logs, and a node's containerd root and state, kubelet root, pod logs, sockets), which
its owner removes when it stops. A node also changes what cannot live there:

- kernel tunables the kubelet insists on (``vm.overcommit_memory``, ``kernel.panic``,
  ``kernel.panic_on_oops``, ...). The kubelet runs with ``protectKernelDefaults``, so it only
  checks them; ``acquire`` sets them and the last node to ``release`` restores the saved values;
- a cgroup root per node (``/psu-node-<id>`` in every hierarchy), which the kubelet fills with
  ``kubepods/...``;
- paths the kubelet and CNI hard-code: ``/var/lib/kubelet/device-plugins``,
  ``/var/log/containers``, ``/usr/libexec/kubernetes/kubelet-plugins`` (created at start even
  when another directory is configured), ``/var/lib/cni`` (the plugins' result cache) and
  ``/run/mount`` (util-linux's mount records). Those that did not exist before the first node
  are removed after the last; in those that did, only what names a node (links into its
  directory, its network's cached results) is removed;
- the node's Pod bridge (``psu-<id>``, made by the CNI bridge plugin) and the host ends of its
  Pods' veths, deleted at release;
- names that must resolve to 127.0.0.1 for containerd (the ECR stand-in's registry,
  ``<account>.dkr.ecr.<region>.amazonaws.com``; ``*.localhost`` does not resolve here): one
  line each in /etc/hosts, marked with the node's id, removed at release. The file is rewritten
  in place (in a container it is often a bind mount);
- mounts (the kubelet's root, pod volumes, container root filesystems, network namespaces) and
  processes (containerd's shims and the containers, which outlive containerd by design).

The shared record (``/run/pull-secret-updater/nodes.json``, under a lock) lists the running
nodes and the saved values, so two stacks on one machine do not undo each other's changes, and
a node whose owner died without cleaning up (SIGKILL, a crash) is swept by the next
``acquire``. ``/run`` is a tmpfs: after a reboot there is nothing to restore. A stack's
directory names its owner too (``owner.json``), so the directory of one that died is told
from that of one still running.

``python -m devstack.hoststate`` (``make clean-host``) sweeps what dead runs left, without
waiting for the next node, and prints one line for each thing it put back.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
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
HOSTS_FILE = Path("/etc/hosts")
_HOSTS_MARK = "# pull-secret-updater node "
CNI_RESULTS = Path("/var/lib/cni/results")  # <network>-<container id>-<interface>
CGROUP_FS = Path("/sys/fs/cgroup")
SHIM = "containerd-shim-runc-v2"
STACK_PREFIX = "psu-stack-"
_OWNER = "owner.json"


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
    hosts: tuple[str, ...] = ()  # names given to 127.0.0.1 in /etc/hosts


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(claim: NodeClaim) -> bool:
    return start_time(claim.owner_pid) == claim.owner_start


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


def claims() -> list[NodeClaim]:
    """The nodes in the shared record, running or not."""
    if not _STATE.exists():
        return []
    with _locked_state() as state:
        return [NodeClaim(**c) for c in state["nodes"].values()]


def read_sysctl(name: str) -> int:
    return int((Path("/proc/sys") / name).read_text().split()[0])


def _write_sysctl(name: str, value: int) -> None:
    try:
        (Path("/proc/sys") / name).write_text(f"{value}\n")
    except OSError as e:
        raise HostError(f"cannot set {name.replace('/', '.')}={value}: {e}") from e


def cgroup_version() -> int:
    return 2 if (CGROUP_FS / "cgroup.controllers").exists() else 1


def cgroup_dirs(root: str) -> list[Path]:
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
    for d in cgroup_dirs(root):
        d.mkdir(exist_ok=True)
    if cgroup_version() == 2:
        # The kubelet needs these controllers below its root.
        wanted = (CGROUP_FS / "cgroup.controllers").read_text().split()
        (CGROUP_FS / root.strip("/") / "cgroup.subtree_control").write_text(
            " ".join(f"+{c}" for c in wanted if c in {"cpu", "cpuset", "memory", "pids", "io"})
        )


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def cgroup_processes(root: str) -> set[int]:
    """The processes in the node's cgroup root or below it, in any hierarchy."""
    pids: set[int] = set()
    for top in cgroup_dirs(root):
        if not top.exists():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(pid) for pid in procs.read_text().split())
    return pids


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def _kill(victims: dict[int, str]) -> list[str]:
    """SIGKILL each process (pid: why it is killed) and wait until they are gone, so that
    nothing of theirs holds a mount or a cgroup any more."""
    done = []
    for pid, why in sorted(victims.items()):
        name = process_name(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            done.append(f"killed {name} (pid {pid}), {why}")
    for _ in range(100):  # a process in uninterruptible sleep dies when it wakes
        if all(_gone(pid) for pid in victims):
            break
        time.sleep(0.1)
    return done


def _remove_cgroup_root(root: str) -> list[str]:
    removed = []
    for top in cgroup_dirs(root):
        if not top.exists():
            continue
        for _ in range(50):  # a killed process leaves its cgroup a moment later
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
            if not top.exists():
                removed.append(top.parent.name)
                break
            time.sleep(0.1)
    return [f"removed cgroup {root} ({', '.join(removed)})"] if removed else []


def shims_of(socket: str) -> list[int]:
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


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, in the order they were mounted."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4].replace("\\040", " ") for line in lines]


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below ``directory``, deepest first."""
    top = directory.rstrip("/")
    points = {p for p in mount_points() if p == top or p.startswith(top + "/")}
    return sorted(points, key=lambda p: -p.count("/"))


def unmount_under(directory: str) -> list[str]:
    done = []
    for _ in range(3):  # a bind mount may be stacked on itself (the kubelet's root)
        points = mounts_under(directory)
        if not points:
            break
        for point in points:
            result = subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
            if result.returncode == 0:
                done.append(f"unmounted {point}")
    return done


def _delete_link(name: str) -> list[str]:
    result = subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
    return [f"deleted network link {name}"] if result.returncode == 0 else []


def _delete_pod_network(bridge: str) -> list[str]:
    """The bridge and the host ends of the veths still on it (a Pod's netns that nothing
    holds takes its veth along; one that something still holds would keep it)."""
    device = Path("/sys/class/net", bridge)
    if not device.exists():
        return []
    done = []
    for port in sorted(p.name for p in (device / "brif").iterdir()):
        done += _delete_link(port)
    return done + _delete_link(bridge)


def _host_lines() -> list[str]:
    try:
        return HOSTS_FILE.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return []


def _write_host_lines(lines: list[str]) -> None:
    try:
        with HOSTS_FILE.open("r+" if HOSTS_FILE.exists() else "w") as f:
            f.write("".join(lines))
            f.truncate()
    except OSError as e:
        raise HostError(f"cannot change {HOSTS_FILE}: {e}") from e


def _marked_node(line: str) -> str | None:
    """The id of the node that added this /etc/hosts line, if one did."""
    _, mark, node_id = line.partition(_HOSTS_MARK)
    return node_id.strip() or None if mark else None


def add_host_names(claim: NodeClaim) -> None:
    """A line ``127.0.0.1 <name>`` in /etc/hosts for each of the node's names."""
    if not claim.hosts:
        return
    lines = _host_lines()
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines += [f"127.0.0.1 {name} {_HOSTS_MARK}{claim.node_id}\n" for name in claim.hosts]
    _write_host_lines(lines)


def remove_host_names(node_ids: set[str] | None = None, *, keep: Collection[str] = ()) -> list[str]:
    """Remove the /etc/hosts lines of the nodes ``node_ids`` (None: of every node but those in
    ``keep``); one line for each removed."""
    lines = _host_lines()
    kept, done = [], []
    for line in lines:
        node_id = _marked_node(line)
        if (
            node_id is not None
            and node_id not in keep
            and (node_ids is None or node_id in node_ids)
        ):
            done.append(f"removed {line.split('#')[0].strip()} from {HOSTS_FILE}")
        else:
            kept.append(line)
    if done:
        _write_host_lines(kept)
    return done


def sweep(claim: NodeClaim) -> list[str]:
    """Remove what a node left: containers and shims, mounts, cgroups, its Pod network, links
    in fixed paths. One line for each thing removed."""
    victims = {
        pid: f"a shim of {claim.containerd_socket}" for pid in shims_of(claim.containerd_socket)
    }
    victims.update(
        (pid, f"in cgroup {claim.cgroup_root}") for pid in cgroup_processes(claim.cgroup_root)
    )
    done = _kill(victims)
    done += unmount_under(claim.workdir)
    done += _remove_cgroup_root(claim.cgroup_root)
    done += _delete_pod_network(claim.bridge)
    done += remove_host_names({claim.node_id})
    ours = claim.workdir.rstrip("/") + "/"
    for fixed in FIXED_PATHS:
        if not fixed.is_dir():
            continue
        for entry in list(fixed.iterdir()):
            if entry.is_symlink() and os.readlink(entry).startswith(ours):
                entry.unlink(missing_ok=True)
                done.append(f"removed {entry}")
    if CNI_RESULTS.is_dir():
        for cached in CNI_RESULTS.glob(f"{claim.bridge}-*"):
            cached.unlink(missing_ok=True)
            done.append(f"removed {cached}")
    return done


def _sweep_dead(state: dict[str, Any]) -> list[str]:
    done = []
    for other in [NodeClaim(**c) for c in state["nodes"].values()]:
        if not _alive(other):
            done += sweep(other)
            del state["nodes"][other.node_id]
    # Lines of nodes the record does not know (a record lost with /run at a reboot).
    return done + remove_host_names(keep=set(state["nodes"]))


def _restore_host(state: dict[str, Any]) -> list[str]:
    """What the first node changed, put back once no node runs."""
    done = []
    for name, value in state["sysctls"].items():
        was = read_sysctl(name)
        if was != value:
            _write_sysctl(name, value)
            done.append(f"restored {name.replace('/', '.')}={value} (was {was})")
    for path in map(Path, state["created"]):
        done += unmount_under(str(path))
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}")
    state["sysctls"], state["created"] = {}, []
    return done


def acquire(claim: NodeClaim) -> None:
    """Record the node and prepare the host for its kubelet (see the module docstring)."""
    with _locked_state() as state:
        _sweep_dead(state)
        if not state["nodes"]:
            _restore_host(state)  # what a node left that died before restoring it
            state["sysctls"] = {name: read_sysctl(name) for name in KUBELET_SYSCTLS}
            state["created"] = [str(p) for p in FIXED_PATHS if not p.exists()]
        try:
            for name, value in KUBELET_SYSCTLS.items():
                if read_sysctl(name) != value:
                    _write_sysctl(name, value)
            _create_cgroup_root(claim.cgroup_root)
            add_host_names(claim)
        except BaseException:
            remove_host_names({claim.node_id})
            if not state["nodes"]:
                for name, value in state["sysctls"].items():
                    with contextlib.suppress(HostError):
                        _write_sysctl(name, value)
            _remove_cgroup_root(claim.cgroup_root)
            raise
        state["nodes"][claim.node_id] = asdict(claim)


def release(claim: NodeClaim) -> None:
    """Sweep the node's leftovers; the last node also restores the host's values and paths.
    Harmless for a claim that was never recorded."""
    with _locked_state() as state:
        sweep(claim)
        state["nodes"].pop(claim.node_id, None)
        _sweep_dead(state)
        if not state["nodes"]:
            _restore_host(state)


# -- the stacks' directories ---------------------------------------------------------------


def make_stack_dir() -> Path:
    """A new temporary directory for a stack, marked with its owner (this process)."""
    path = Path(tempfile.mkdtemp(prefix=STACK_PREFIX))
    owner = {"pid": os.getpid(), "start": start_time(os.getpid())}
    (path / _OWNER).write_text(json.dumps(owner))
    return path


def disown_stack_dir(path: Path) -> None:
    """Keep the directory after its owner is gone (``PSU_KEEP_STACK=1``): no sweep takes it."""
    (path / _OWNER).unlink(missing_ok=True)


def _stack_dir_owner_gone(path: Path) -> bool:
    try:
        owner = json.loads((path / _OWNER).read_text())
    except (OSError, ValueError):
        return False  # being created, kept on purpose, or not a stack's
    return bool(start_time(int(owner["pid"])) != owner["start"])


def remove_stack_dir(path: Path) -> list[str]:
    """Remove a stack's directory, after whatever is still mounted below it."""
    done = unmount_under(str(path))
    still = mounts_under(str(path))
    if still:
        # NB: removing the files of a mounted directory would remove what is mounted there.
        raise HostError(f"{path} not removed: {still[0]} is still mounted")
    shutil.rmtree(path, ignore_errors=True)
    return [*done, f"removed {path}"]


def dead_stack_dirs() -> list[Path]:
    """Directories of stacks whose owner is gone."""
    found = Path(tempfile.gettempdir()).glob(f"{STACK_PREFIX}*")
    return sorted(p for p in found if p.is_dir() and _stack_dir_owner_gone(p))


# -- sweeping after dead runs --------------------------------------------------------------


@dataclass(frozen=True)
class Cleaned:
    restored: tuple[str, ...]  # one line for each thing put back
    failed: tuple[str, ...]  # what could not be, and why


def clean_host() -> Cleaned:
    """Put back what runs that are gone left (SIGKILL, a crash): their nodes' leftovers, the
    host's values and paths once no node runs, their directories. Running stacks are left
    alone."""
    restored: list[str] = []
    failed: list[str] = []
    if STATE_DIR.exists() or any(_marked_node(line) for line in _host_lines()):
        try:
            with _locked_state() as state:
                restored += _sweep_dead(state)
                if not state["nodes"]:
                    restored += _restore_host(state)
        except PermissionError as e:
            failed.append(f"the record of the nodes needs root: {e}")
        except HostError as e:
            failed.append(str(e))
    for path in dead_stack_dirs():
        try:
            restored += remove_stack_dir(path)
        except HostError as e:
            failed.append(str(e))
    return Cleaned(restored=tuple(restored), failed=tuple(failed))


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m devstack.hoststate",
        description="Put back what local stacks that did not stop (SIGKILL, a crash) left on "
        "this host: one line for each thing restored; exit status 1 when something could not "
        "be. Running stacks are left alone. make clean-host runs it.",
    ).parse_args(argv)
    cleaned = clean_host()
    for line in cleaned.restored:
        print(line)
    for line in cleaned.failed:
        print(f"not restored: {line}", file=sys.stderr)
    if not cleaned.restored and not cleaned.failed:
        print("nothing to restore")
    return 1 if cleaned.failed else 0


if __name__ == "__main__":
    sys.exit(main())
