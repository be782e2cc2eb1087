"""The controller as a user runs it: the Deployment from config/, a Pod on a real node, from
the image the project builds, with its projected token at /var/run/chainguard/oidc/oidc-token.

A deleted Pod is replaced by the Deployment (its ReplicaSet), and a killed controller process
by the kubelet; either way the controller leads again and fills Secrets.

The overlay (devstack.deployment) changes only what a loopback stack needs: the image, host
networking, the in-cluster API address, the local issuer, registry and CA, one replica. The
ReplicaSet and the Pods are made by the real kube-controller-manager and kube-scheduler.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.deployment import ControllerImage, Overlay, ready_pods, write_overlay
from devstack.node import Node
from devstack.stack import LocalStack
from tests.helpers import LAST_REFRESH, ClusterHelper, eventually
from tests.node.support import Pods

pytestmark = [pytest.mark.stack, pytest.mark.node]

NAMESPACE = "pull-secret-updater"
DEPLOYMENT = "pull-secret-updater"
SELECTOR = "app.kubernetes.io/name=pull-secret-updater"
TOKEN_DIR = "/var/run/chainguard/oidc"
# A new Pod: scheduled, its image pulled (about 60 MB over loopback), Python started, ready.
POD_DEADLINE = 240.0


def _the_ready_pod(stack: LocalStack, *, other_than: str | None = None) -> dict[str, Any]:
    def one() -> dict[str, Any] | None:
        ready = [p for p in ready_pods(stack, NAMESPACE, SELECTOR)
                 if p["metadata"]["name"] != other_than]  # fmt: skip
        return ready[0] if len(ready) == 1 else None

    try:
        return eventually(one, timeout=POD_DEADLINE, interval=1.0, what="one ready controller Pod")
    except AssertionError as e:
        listing = stack.control_plane.kubectl("-n", NAMESPACE, "get", "pods,events", "-o", "wide")
        raise AssertionError(f"{e}\n{listing}") from None


@pytest.fixture(scope="module")
def deployed(
    stack: LocalStack,
    node: Node,
    controller_image: ControllerImage,
    installed: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Overlay]:
    overlay = write_overlay(
        stack, tmp_path_factory.mktemp("overlay"), image=controller_image.reference
    )
    stack.control_plane.kubectl("apply", "-k", str(overlay.directory))
    try:
        yield overlay
    finally:
        # Later tests run their own controllers; this one must not compete for the Lease.
        stack.control_plane.kubectl("-n", NAMESPACE, "scale", "deployment", DEPLOYMENT,
                                    "--replicas=0")  # fmt: skip
        eventually(lambda: not ready_pods(stack, NAMESPACE, SELECTOR), timeout=60,
                   what="the controller Pods gone")  # fmt: skip


def _lease_holder(cluster: ClusterHelper) -> str:
    lease = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "lease", "pull-secret-updater",
                                       "-o", "json"))  # fmt: skip
    return str(lease["spec"].get("holderIdentity") or "")


def _fill_with_a_new_identity(stack: LocalStack, cluster: ClusterHelper) -> tuple[str, str]:
    """A Secret for an identity nobody has a token for yet, so the controller must exchange
    its own projected token; returns (namespace, identity)."""
    identity = stack.create_kind_identity(name=f"pod-{uuid.uuid4().hex[:8]}")
    namespace = cluster.namespace("pod-fill")
    cluster.create_pull_secret(namespace, identity)
    cluster.wait_filled(namespace, timeout=60)
    return namespace, identity


def test_the_deployment_runs_the_built_image_and_fills_a_secret(
    stack: LocalStack,
    node: Node,
    cluster: ClusterHelper,
    controller_image: ControllerImage,
    deployed: Overlay,
) -> None:
    pod = _the_ready_pod(stack)
    name = pod["metadata"]["name"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == controller_image.reference
    assert spec["hostNetwork"] is True
    assert spec["serviceAccountName"] == "controller"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == TOKEN_DIR)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "issuer.enforce.dev"
    assert source["serviceAccountToken"]["path"] == "oidc-token"
    # The kubelet pulled the image from the registry.
    pulled = Pods(cluster, node).events(NAMESPACE, name)
    assert any(
        e["reason"] == "Pulled" and "Successfully pulled image" in e["message"] for e in pulled
    ), pulled

    namespace, identity = _fill_with_a_new_identity(stack, cluster)

    assert _lease_holder(cluster).startswith(f"{name}_")
    assert cluster.annotations(namespace).get(LAST_REFRESH)
    assert cluster.exchanges(identity) >= 1
    log = node.container_log(NAMESPACE, name, "controller")
    assert '"token written"' in log, log[-3000:]
    assert "Traceback" not in log


def test_a_deleted_controller_pod_is_replaced_and_the_new_one_fills_secrets(
    stack: LocalStack, cluster: ClusterHelper, deployed: Overlay
) -> None:
    old = _the_ready_pod(stack)["metadata"]["name"]

    cluster.kubectl("-n", NAMESPACE, "delete", "pod", old, "--wait=false")

    new = _the_ready_pod(stack, other_than=old)["metadata"]["name"]
    assert new != old
    _fill_with_a_new_identity(stack, cluster)
    assert _lease_holder(cluster).startswith(f"{new}_")


def _container_pid(node: Node, pod: str) -> int:
    pod_id = node.crictl("pods", f"--name={pod}", "--namespace", NAMESPACE, "-q").stdout.split()
    (container,) = node.crictl("ps", "--pod", pod_id[0], "--name=controller", "-q").stdout.split()
    return int(json.loads(node.crictl("inspect", container).stdout)["info"]["pid"])


def test_a_killed_controller_is_restarted_by_the_kubelet_and_leads_again(
    stack: LocalStack, node: Node, cluster: ClusterHelper, deployed: Overlay
) -> None:
    pod = _the_ready_pod(stack)
    name = pod["metadata"]["name"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]

    os.kill(_container_pid(node, name), signal.SIGKILL)  # no chance to release the Lease

    def restarted() -> bool:
        ready = [p for p in ready_pods(stack, NAMESPACE, SELECTOR) if p["metadata"]["name"] == name]
        return bool(ready) and ready[0]["status"]["containerStatuses"][0]["restartCount"] > restarts

    eventually(restarted, timeout=POD_DEADLINE, interval=1.0, what="the controller restarted")
    _fill_with_a_new_identity(stack, cluster)
    assert _lease_holder(cluster).startswith(f"{name}_")
