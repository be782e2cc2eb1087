"""Pods on the stack's node, seen the way a user sees them: Events and Pod status; and the
host around the node, read before and after a run to find what the run left on it.

Kubelet retries a failed pull with a back-off (10 s, then 20 s, 40 s ...), so everything here
waits with generous deadlines and asserts on what happened, never on how fast.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from devstack import hoststate
from devstack.binaries import cache_dir
from devstack.node import Node
from tests.helpers import ClusterHelper, eventually

# From a first failure to the retry after the cause is gone: at most two back-offs (10 + 20 s)
# plus the pull itself, with room for a busy machine.
PULL_DEADLINE = 120.0
UNAUTHORIZED = "401 Unauthorized"

T = TypeVar("T")


def quickstart_pod(image: str, *, name: str | None = None) -> dict[str, Any]:
    """The Pod of the original instructions, with the image in the local registry."""
    metadata = {"name": name} if name else {"generateName": "pull-secret-example-"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [
                {"name": "pull-secret-example", "image": image, "command": ["sleep", "Infinity"]}
            ],
            "imagePullSecrets": [{"name": "pull-secret"}],
        },
    }


class Pods:
    def __init__(self, cluster: ClusterHelper, node: Node) -> None:
        self.cluster = cluster
        self.node = node
        self.kubectl = cluster.kubectl
        self.created: list[tuple[str, str]] = []

    def wait_default_service_account(self, namespace: str) -> None:
        """kube-controller-manager gives a new namespace its ``default`` ServiceAccount, which
        a Pod without ``serviceAccountName`` needs."""
        eventually(
            lambda: self.kubectl("-n", namespace, "get", "serviceaccount", "default", "-o",
                                 "name", check=False),
            timeout=30, what=f"the default ServiceAccount in {namespace}",
        )  # fmt: skip

    def create(self, namespace: str, pod: dict[str, Any]) -> str:
        """``kubectl create -f -``; returns the Pod's name."""
        self.wait_default_service_account(namespace)
        out = self.kubectl("-n", namespace, "create", "-f", "-", "-o", "name",
                           input=yaml.safe_dump(pod))  # fmt: skip
        name = out.strip().split("/", 1)[1]
        self.created.append((namespace, name))
        return name

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("-n", namespace, "get", "pod", name, "-o", "json")))

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=Pod,involvedObject.name={name}"
        out = self.kubectl("-n", namespace, "get", "events", "-o", "json",
                           f"--field-selector={selector}")  # fmt: skip
        return list(json.loads(out)["items"])

    def _wait(
        self, probe: Callable[[], T | None], namespace: str, name: str, *, what: str,
        timeout: float = PULL_DEADLINE,
    ) -> T:  # fmt: skip
        """``eventually``, failing with the Pod's state and Events at the deadline."""
        try:
            return eventually(probe, timeout=timeout, interval=0.5, what=what)
        except AssertionError as e:
            state = self.describe(namespace, name)
            raise AssertionError(f"{e}\n{namespace}/{name}: {state}") from None

    def wait_event(
        self, namespace: str, name: str, *, reason: str, containing: str = "",
        after: set[str] | None = None, timeout: float = PULL_DEADLINE,
    ) -> dict[str, Any]:  # fmt: skip
        """An Event of the Pod with ``reason`` whose message contains ``containing``; with
        ``after`` (uids of Events seen before), only a newer one."""

        def found() -> dict[str, Any] | None:
            for event in self.events(namespace, name):
                if event["reason"] != reason or containing not in event.get("message", ""):
                    continue
                if after is None or event["metadata"]["uid"] not in after:
                    return event
            return None

        return self._wait(found, namespace, name, timeout=timeout,
                          what=f"a {reason} Event with {containing!r}")  # fmt: skip

    def event_uids(self, namespace: str, name: str) -> set[str]:
        return {e["metadata"]["uid"] for e in self.events(namespace, name)}

    def wait_waiting(self, namespace: str, name: str, *, containing: str) -> str:
        """Until the container waits with ErrImagePull or ImagePullBackOff whose message says
        ``containing``; returns the message."""

        def waiting() -> str | None:
            status = self.get(namespace, name).get("status", {})
            for container in status.get("containerStatuses") or []:
                state = container.get("state", {}).get("waiting") or {}
                message = state.get("message", "")
                if state.get("reason") in {"ErrImagePull", "ImagePullBackOff"} and (
                    containing in message
                ):
                    return str(message)
            return None

        return self._wait(waiting, namespace, name, what="the container waiting on a refused pull")

    def wait_running(self, namespace: str, name: str, *, timeout: float = PULL_DEADLINE) -> None:
        def running() -> bool:
            pod = self.get(namespace, name)
            statuses = pod.get("status", {}).get("containerStatuses") or []
            return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)

        self._wait(running, namespace, name, timeout=timeout, what="the containers running")

    def describe(self, namespace: str, name: str) -> str:
        """The Pod's phase, container states and Events, for failure messages."""
        out = self.kubectl("-n", namespace, "get", "pod", name, "-o", "json", check=False)
        if not out:
            return "(no such Pod)"
        status = json.loads(out).get("status", {})
        states = [s.get("state") for s in status.get("containerStatuses") or []]
        events = [f"{e['reason']}: {e.get('message', '')[:300]}"
                  for e in self.events(namespace, name)]  # fmt: skip
        return f"phase={status.get('phase')} states={states} events={events}"

    def delete(self, namespace: str, name: str) -> None:
        self.kubectl("-n", namespace, "delete", "pod", name, "--wait=false", check=False)

    def delete_created(self) -> None:
        """Delete the Pods made with ``create``, so the node does not run them for the rest of
        the session."""
        for namespace, name in self.created:
            self.delete(namespace, name)
        self.created.clear()


@dataclass(frozen=True)
class HostState:
    """What a stack and its node change on the host (see ``devstack.hoststate``), as it is when
    read; ``leftovers`` compares a later reading with this one."""

    processes: frozenset[tuple[int, str]]  # (pid, start time)
    mounts: frozenset[str]
    links: frozenset[str]
    node_cgroups: frozenset[str]  # psu-node-* directories, in any hierarchy
    sysctls: Mapping[str, int]
    fixed_paths: Mapping[str, frozenset[str]]  # what is below each one that exists
    nodes: frozenset[str]  # node ids in the shared record
    record: bool  # whether the shared record's directory exists
    host_names: frozenset[str]  # the lines of /etc/hosts that a node added

    @classmethod
    def read(cls) -> HostState:
        return cls(
            processes=frozenset((pid, start) for pid, start, _ in _processes()),
            mounts=frozenset(hoststate.mount_points()),
            links=frozenset(os.listdir("/sys/class/net")),
            node_cgroups=frozenset(
                str(d) for top in hoststate.cgroup_dirs("/") for d in top.glob("psu-node-*")
            ),
            sysctls={name: hoststate.read_sysctl(name) for name in hoststate.KUBELET_SYSCTLS},
            fixed_paths={
                str(path): frozenset(str(p) for p in path.rglob("*"))
                for path in hoststate.FIXED_PATHS
                if path.exists()
            },
            nodes=frozenset(claim.node_id for claim in hoststate.claims()),
            record=hoststate.STATE_DIR.exists(),
            host_names=frozenset(
                line
                for line in hoststate.HOSTS_FILE.read_text().splitlines()
                if "# pull-secret-updater node " in line
            ),
        )

    def leftovers(self, *, stack_dir: Path, claim: hoststate.NodeClaim) -> list[str]:
        """What is on the host now that was not when this was read and that the stack in
        ``stack_dir`` with the node ``claim`` made or may have made: its processes (those
        that name its directory, its node's containers and shims), mounts, network links,
        cgroups, changed kernel tunables and fixed paths, /etc/hosts lines, its record and its
        directory."""
        now = HostState.read()
        found = []
        in_node = hoststate.cgroup_processes(claim.cgroup_root)
        shims = set(hoststate.shims_of(claim.containerd_socket))
        for pid, start, argv in _processes():
            if (pid, start) in self.processes:
                continue
            if pid in in_node or pid in shims or any(str(stack_dir) in arg for arg in argv):
                # The name only: the command line may hold a password or a token.
                found.append(f"process {pid} ({hoststate.process_name(pid)})")
        # Not what image builds (in the cache) and the image tests' podman (in pytest's
        # directories) mount meanwhile, for this run or another one.
        elsewhere = (f"{cache_dir()}/", f"{tempfile.gettempdir()}/pytest-of-")
        found += [f"mount {m}" for m in now.mounts - self.mounts if not m.startswith(elsewhere)]
        found += [f"network link {link}" for link in now.links - self.links]
        found += [f"cgroup {d}" for d in now.node_cgroups - self.node_cgroups]
        for name, value in self.sysctls.items():
            if now.sysctls[name] != value:
                found.append(f"{name.replace('/', '.')}={now.sysctls[name]} (was {value})")
        for path in sorted(set(self.fixed_paths) | set(now.fixed_paths)):
            before, after = self.fixed_paths.get(path), now.fixed_paths.get(path)
            if before is None:
                found.append(f"{path} created")
            elif after is None:
                found.append(f"{path} removed")
            else:
                found += [f"{p} created" for p in sorted(after - before)]
        if claim.node_id in now.nodes:
            found.append(f"node {claim.node_id} still in {hoststate.STATE_DIR}")
        found += [f"{hoststate.HOSTS_FILE}: {line}" for line in now.host_names - self.host_names]
        if now.record and not self.record:
            found.append(f"{hoststate.STATE_DIR} created")
        if stack_dir.exists():
            found.append(f"directory {stack_dir}")
        return found


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    """Every live process: its pid, start time and command line."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if stat[0] != "Z":  # a zombie is gone but for its parent's wait
            yield int(proc.name), stat[19], argv
