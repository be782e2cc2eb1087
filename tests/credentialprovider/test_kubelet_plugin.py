"""A real kubelet pulls through the plugin: Pods of an annotated ServiceAccount pull with no
imagePullSecrets, share one exchange while the kubelet's cache lasts, and everything that can go
wrong ends in a refused pull with the reason in the kubelet's log, never in someone else's.

The stack's node (``devstack.node``: containerd and the kubelet, NodeRestriction on the API
server) gets the plugin as a node administrator installs it: the bundle in a bin directory, the
config ``credential-provider config`` prints, the shipped RBAC (``config/credential-provider``),
and the kubelet restarted with ``--image-credential-provider-config`` and
``--image-credential-provider-bin-dir``; at the end it is restarted as it was. Every Pod pulls
with ``imagePullPolicy: Always``, so the kubelet asks for credentials at each Pod even though
the image is on the node already.

What the kubelet sent is recorded by a wrapper in front of the bundle (the requests, tokens
included, go to a file in the stack's directory, which is removed with it), and the token
service confirms it: the identities here trust exactly one ServiceAccount with the audience of
the config.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from devstack.node import Node
from devstack.stack import LocalStack
from pull_secret_updater.credentialprovider.install import ProviderPlan, credential_provider_config
from pull_secret_updater.credentialprovider.options import PROG
from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from tests.helpers import ClusterHelper, eventually, exchanges, unique
from tests.node.support import UNAUTHORIZED, Pods

pytestmark = [pytest.mark.stack, pytest.mark.node]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PluginNode:
    node: Node
    pods: Pods
    bin_dir: Path
    recorded: Path

    @property
    def plugin(self) -> Path:
        return self.bin_dir / PROG

    def requests(self) -> list[dict[str, Any]]:
        """The requests the kubelet has sent the plugin so far."""
        if not self.recorded.exists():
            return []
        return [json.loads(line) for line in self.recorded.read_text().splitlines() if line]

    def kubelet_log_since(self, offset: int) -> str:
        return self.node.kubelet.log_path.read_text(errors="replace")[offset:]

    def kubelet_log_size(self) -> int:
        return len(self.node.kubelet.log_path.read_text(errors="replace"))


def _restart_kubelet(node: Node, argv: list[str]) -> None:
    node.kubelet.stop()
    node.kubelet.argv = argv
    node.kubelet.start()
    eventually(node.ready, timeout=120, interval=0.5, what="the restarted kubelet's Node Ready")


@pytest.fixture(scope="module")
def plugin_node(stack: LocalStack, node: Node, bundle: Path) -> Iterator[PluginNode]:
    """The node with the plugin installed; put back as it was afterwards."""
    directory = stack.workdir / "credential-provider"
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle, directory / PROG)
    recorded = directory / "requests.jsonl"
    wrapper = bin_dir / PROG
    # The kubelet writes one JSON line; the wrapper keeps a copy and hands it to the bundle.
    wrapper.write_text(
        f'#!/bin/sh\n(cat; echo) | tee -a "{recorded}" | "{directory / PROG}" "$@"\n'
    )
    wrapper.chmod(0o755)
    plan = ProviderPlan(
        issuer=stack.token_service.url,
        registry=stack.registry.host,
        plugin_args=(f"--ca-bundle={stack.ca_file}",),
    )
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(credential_provider_config([plan]), sort_keys=False))
    stack.control_plane.kubectl("apply", "-k", str(ROOT / "config" / "credential-provider"))
    original = list(node.kubelet.argv)
    _restart_kubelet(
        node,
        [
            *original,
            f"--image-credential-provider-config={config}",
            f"--image-credential-provider-bin-dir={bin_dir}",
        ],
    )
    try:
        yield PluginNode(node, Pods(ClusterHelper(stack), node), bin_dir, recorded)
    finally:
        _restart_kubelet(node, original)


@dataclass
class Workload:
    namespace: str
    service_account: str
    identity: str


def workload(
    stack: LocalStack, cluster: ClusterHelper, namespace: str, name: str, *, trusts: str | None
) -> Workload:
    """ServiceAccount `name`, annotated with a new identity that trusts the ServiceAccount
    `trusts` of the same namespace (None: no annotation, no identity)."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", name)
    if trusts is None:
        return Workload(namespace, name, "")
    identity = stack.create_kind_identity(
        name=unique("kubelet"), namespace=namespace, service_account=trusts
    )
    cluster.kubectl("-n", namespace, "annotate", "serviceaccount", name,
                    f"{IDENTITY_KEY}={identity}")  # fmt: skip
    return Workload(namespace, name, identity)


def pod_of(image: str, service_account: str) -> dict[str, Any]:
    """A Pod with no imagePullSecrets that pulls at every start."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{service_account}-"},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "imagePullPolicy": "Always",
                    "command": ["sleep", "Infinity"],
                }
            ],
        },
    }


def pulls(plugin_node: PluginNode, stack: LocalStack, workload: Workload) -> str:
    """A Pod of the workload pulls and runs; returns its name."""
    pods = plugin_node.pods
    name = pods.create(workload.namespace, pod_of(stack.registry.image, workload.service_account))
    pods.wait_event(workload.namespace, name, reason="Pulled",
                    containing="Successfully pulled image")  # fmt: skip
    pods.wait_running(workload.namespace, name)
    pods.delete(workload.namespace, name)
    return name


def is_refused(plugin_node: PluginNode, stack: LocalStack, workload: Workload) -> str:
    """A Pod of the workload is refused by the registry (401); returns its name."""
    pods = plugin_node.pods
    name = pods.create(workload.namespace, pod_of(stack.registry.image, workload.service_account))
    pods.wait_event(workload.namespace, name, reason="Failed", containing=UNAUTHORIZED)
    # NB: gone before anything changes: the kubelet retries a failed pull, and a retry once
    # the token service is back would fill its cache for this ServiceAccount.
    pods.kubectl("-n", workload.namespace, "delete", "pod", name, "--wait=true", "--timeout=90s")
    return name


def total_exchanges(stack: LocalStack) -> int:
    counts = stack.token_admin().stats()["exchanges_total"]
    return int(counts["ok"]) + int(counts["error"])


def test_pods_of_an_annotated_service_account_pull_without_a_secret_and_share_one_exchange(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet")
    app = workload(stack, cluster, namespace, "app", trusts="app")

    asked_before = len(plugin_node.requests())
    first = pulls(plugin_node, stack, app)
    # The kubelet called the plugin once, with a token of <namespace>/app bound to the Pod,
    # with the config's audience, and the annotation; the identity, which trusts only that
    # ServiceAccount with that audience, accepted it.
    [request] = plugin_node.requests()[asked_before:]
    assert request["image"] == stack.registry.image.rsplit(":", 1)[0]  # the kubelet drops the tag
    assert request["serviceAccountAnnotations"] == {IDENTITY_KEY: app.identity}
    claims = jwt.decode(request["serviceAccountToken"], options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{namespace}:app"
    assert claims["aud"] == ["issuer.enforce.dev"]
    assert claims["kubernetes.io"]["pod"]["name"] == first
    assert exchanges(stack, [app.identity]) == 1

    # A second Pod within the cache duration: the kubelet's cached credential, no call, no
    # exchange.
    pulls(plugin_node, stack, app)
    assert len(plugin_node.requests()) == asked_before + 1
    assert exchanges(stack, [app.identity]) == 1


def test_a_service_account_without_the_annotation_is_not_sent_to_the_plugin(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-plain")
    plain = workload(stack, cluster, namespace, "plain", trusts=None)
    before = total_exchanges(stack)
    offset = plugin_node.kubelet_log_size()

    asked_before = len(plugin_node.requests())

    is_refused(plugin_node, stack, plain)

    assert len(plugin_node.requests()) == asked_before
    assert total_exchanges(stack) == before
    assert PROG not in plugin_node.kubelet_log_since(offset)


def test_a_service_account_the_identity_does_not_trust_gets_the_403_and_no_pull(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-untrusted")
    # Annotated with an identity that trusts another ServiceAccount of the namespace.
    intruder = workload(stack, cluster, namespace, "intruder", trusts="app")
    offset = plugin_node.kubelet_log_size()

    is_refused(plugin_node, stack, intruder)

    log = plugin_node.kubelet_log_since(offset)
    assert f"{PROG}: exchange for identity {intruder.identity}" in log
    assert "token service answered 403" in log
    assert stack.token_admin().stats()["exchanges"][intruder.identity]["ok"] == 0


def test_an_outage_or_a_crashing_plugin_leaves_cached_credentials_working(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-outage")
    cached = workload(stack, cluster, namespace, "cached", trusts="cached")
    fresh = workload(stack, cluster, namespace, "fresh", trusts="fresh")
    crashed = workload(stack, cluster, namespace, "crashed", trusts="crashed")
    pulls(plugin_node, stack, cached)  # the kubelet now holds its credential

    admin = stack.token_admin()
    admin.set_fault("refuse")
    try:
        offset = plugin_node.kubelet_log_size()
        pulls(plugin_node, stack, cached)
        is_refused(plugin_node, stack, fresh)
        log = plugin_node.kubelet_log_since(offset)
        assert f"{PROG}: exchange for identity {fresh.identity}" in log
        assert "ConnectError" in log or "could not reach the token service" in log
    finally:
        admin.clear_faults()

    saved = plugin_node.plugin.with_suffix(".saved")
    plugin_node.plugin.rename(saved)
    plugin_node.plugin.write_text("#!/bin/sh\nkill -SEGV $$\n")
    plugin_node.plugin.chmod(0o755)
    try:
        pulls(plugin_node, stack, cached)
        is_refused(plugin_node, stack, crashed)
    finally:
        saved.replace(plugin_node.plugin)
    assert exchanges(stack, [cached.identity]) == 1
    issued = stack.token_admin().stats()["exchanges"]
    assert issued.get(fresh.identity, {}).get("ok", 0) == 0
    assert issued.get(crashed.identity, {}).get("ok", 0) == 0
