"""A real kubelet pulls from the Azure stand-in's registry with a pull Secret holding
``00000000-0000-0000-0000-000000000000:<refresh token>``, the refresh token from the
registry's ``/oauth2/exchange`` of an Entra access token, as a user's Pod does on AKS.

The registry is ``<name>.azurecr.io:<port>``: containerd resolves it through the node's
/etc/hosts line, trusts the stack's CA for it, and follows its token realm to the stand-in,
which takes only refresh tokens it issued for that registry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import hoststate
from devstack.azure.standin import acr_host_name
from devstack.node import Node
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper
from tests.node.support import UNAUTHORIZED, Pods, quickstart_pod
from tests.stack.azure_support import SCOPE, credential, exchange, new_workload, token_for

pytestmark = [pytest.mark.stack, pytest.mark.node]

NIL = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def pods(cluster: ClusterHelper, node: Node, stack: LocalStack) -> Iterator[Pods]:
    # Every test pulls for real: an image already on the node would not be pulled again.
    node.remove_image(stack.azure.image)
    pods = Pods(cluster, node)
    yield pods
    pods.delete_created()


def _docker_config(stack: LocalStack, password: str) -> str:
    auth = base64.b64encode(f"{NIL}:{password}".encode()).decode()
    entry = {"username": NIL, "password": password, "auth": auth}
    return json.dumps({"auths": {stack.azure.registry_host: entry}})


def test_the_node_resolves_the_acr_registry_through_a_marked_hosts_line(
    stack: LocalStack, node: Node
) -> None:
    lines = hoststate.HOSTS_FILE.read_text().splitlines()
    ours = [line for line in lines if acr_host_name() in line.split() and node.node_id in line]
    assert len(ours) == 1
    assert ours[0].split()[0] == "127.0.0.1"


def test_a_pod_pulls_with_an_acr_refresh_token_and_not_with_a_made_up_one(
    stack: LocalStack, cluster: ClusterHelper, pods: Pods, tmp_path: Path
) -> None:
    workload = new_workload(stack, "acr-pull")
    namespace = workload.namespace
    cluster.create_pull_secret(namespace, None, config=_docker_config(stack, "made-up"))
    name = pods.create(namespace, quickstart_pod(stack.azure.image))
    pods.wait_waiting(namespace, name, containing=UNAUTHORIZED)
    assert pods.get(namespace, name)["status"].get("phase") == "Pending"

    token_file = tmp_path / "token"
    token_file.write_text(token_for(stack, workload))
    access = credential(stack, workload, token_file).get_token(SCOPE).token
    refresh = str(exchange(stack, access).json()["refresh_token"])
    config = _docker_config(stack, refresh)
    secret = json.dumps({"data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}})
    cluster.kubectl("-n", namespace, "patch", "secret", "pull-secret", "-p", secret)

    pulled = pods.wait_event(namespace, name, reason="Pulled",
                             containing="Successfully pulled image")  # fmt: skip
    assert stack.azure.image in pulled["message"]
    pods.wait_running(namespace, name)
