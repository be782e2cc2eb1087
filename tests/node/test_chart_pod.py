"""The Helm chart installed on the node: its Deployment's Pod runs from the built image and
fills a Secret, configured by the chart's values (the post-renderer adds only host networking,
for which the chart has no value)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devstack.binaries import MissingBinary, find_helm
from devstack.deployment import (
    ControllerImage,
    chart_values,
    image_pull_secret,
    ready_pods,
    write_post_renderer,
)
from devstack.node import Node
from devstack.procs import free_port
from devstack.stack import LocalStack
from tests.deploy.support import CHART, Helm, value_args
from tests.helpers import ClusterHelper, eventually

pytestmark = [pytest.mark.stack, pytest.mark.node]

POD_DEADLINE = 240.0


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    identity: str

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"


@pytest.fixture(scope="module")
def release(
    stack: LocalStack,
    node: Node,
    controller_image: ControllerImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    try:
        helm = Helm(find_helm(), kubeconfig=stack.kubeconfig)
    except MissingBinary as e:
        pytest.fail(f"helm is missing ({e}); hack/setup.sh builds it", pytrace=False)
    cluster = ClusterHelper(stack)
    namespace = cluster.namespace("psu-chart")
    name = f"psu-{namespace.rsplit('-', 1)[1]}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(image_pull_secret(stack, namespace)))
    identity = stack.create_kind_identity(name=f"chart-{uuid.uuid4().hex[:8]}", namespace=namespace)
    values = chart_values(stack, image=controller_image.reference, metrics_port=free_port())
    renderer = write_post_renderer(tmp_path_factory.mktemp("helm"))
    helm.run("install", name, str(CHART), f"--namespace={namespace}",
             f"--post-renderer={renderer}", *value_args(values))  # fmt: skip
    try:
        yield Release(name, namespace, identity)
    finally:
        helm.run("uninstall", name, f"--namespace={namespace}", "--wait", check=False)


def test_the_chart_runs_on_the_node_and_fills_a_secret(
    stack: LocalStack, cluster: ClusterHelper, release: Release
) -> None:
    def one_ready() -> list[dict[str, Any]] | None:
        ready = ready_pods(stack, release.namespace, release.selector)
        return ready if len(ready) == 1 else None

    try:
        (pod,) = eventually(one_ready, timeout=POD_DEADLINE, interval=1.0,
                            what="the chart's controller Pod ready")  # fmt: skip
    except AssertionError as e:
        listing = cluster.kubectl("-n", release.namespace, "get", "pods,events")
        raise AssertionError(f"{e}\n{listing}") from None
    assert pod["spec"]["hostNetwork"] is True

    namespace = cluster.namespace("chart-app")
    cluster.create_pull_secret(namespace, release.identity)

    cluster.wait_filled(namespace, timeout=60)
    assert cluster.exchanges(release.identity) >= 1
