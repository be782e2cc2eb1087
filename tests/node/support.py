"""Pods on the stack's node, seen the way a user sees them: Events and Pod status.

Kubelet retries a failed pull with a back-off (10 s, then 20 s, 40 s ...), so everything here
waits with generous deadlines and asserts on what happened, never on how fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

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
