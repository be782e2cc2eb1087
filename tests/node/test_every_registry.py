"""One pull Secret, four registries: the controller fills a cgr.dev-like entry, an ECR entry,
an Artifact Registry entry and an ACR entry, each from its own identity trusting the
controller's ServiceAccount, in one write; a real kubelet pulls a Pod's four images with it,
one from each registry, each registry taking only the credentials its own cloud issued."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devstack import clouds
from devstack.node import Node
from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually, unique
from tests.node.support import Pods, quickstart_pod

pytestmark = [pytest.mark.stack, pytest.mark.node]

CONTROLLER_SUBJECT = "system:serviceaccount:pull-secret-updater:controller"


@pytest.fixture
def pods(cluster: ClusterHelper, node: Node, stack: LocalStack) -> Iterator[Pods]:
    for registry in stack.registries:
        node.remove_image(registry.image)  # every image is pulled for real
    pods = Pods(cluster, node)
    yield pods
    pods.delete_created()


def test_one_secret_filled_for_four_registries_pulls_an_image_from_each(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
    pods: Pods,
) -> None:  # fmt: skip
    name = unique("every-registry")
    made = clouds.trusting(stack, CONTROLLER_SUBJECT, name=name)
    token_path = clouds.controller_token_path(stack.workdir, name)
    providers = clouds.sections(stack, ca_bundle=str(stack.ca_file), token_path=token_path)
    start_controller(name, env={"PSU_PROVIDERS": providers}, audiences=clouds.AUDIENCES)
    ns = cluster.namespace("every-registry")
    cluster.create_pull_secret(ns, installed)
    cluster.kubectl("-n", ns, "annotate", "--overwrite", "secret", "pull-secret",
                    *(f"{k}={v}" for k, v in made.annotations.items()))  # fmt: skip

    hosts = [registry.host for registry in stack.registries]

    def filled() -> dict[str, object] | None:
        auths = cluster.docker_config(ns).get("auths", {})
        return auths if all(host in auths for host in hosts) else None

    auths = eventually(filled, timeout=90, what="the four entries")
    assert len({json.dumps(auths[host], sort_keys=True) for host in hosts}) == 4
    annotations = cluster.annotations(ns)
    assert LAST_ERROR not in annotations
    for provider, identity in made.identities.items():
        key = f"{provider}.pull-secret-updater.chainguard.dev/filled-identity"
        assert annotations[key] in (identity, f"{stack.azure.tenant}/{identity}")

    pod = quickstart_pod(stack.registry.image)
    pod["spec"]["containers"] = [
        {"name": f"from-{i}", "image": registry.image, "command": ["sleep", "Infinity"]}
        for i, registry in enumerate(stack.registries)
    ]
    name = pods.create(ns, pod)
    pods.wait_running(ns, name)
    pulled = [e["message"] for e in pods.events(ns, name) if e["reason"] == "Pulled"]
    for registry in stack.registries:
        assert any(registry.image in message for message in pulled), registry.image
