"""A real kubelet pulls from the Google stand-in's Artifact Registry with a pull Secret holding
``oauth2accesstoken:<access token>``, the token a service account's impersonation gave, as a
user's Pod does on GKE.

The registry is ``us-docker.pkg.dev:<port>``: containerd resolves it through the node's
/etc/hosts line, trusts the stack's CA for it, and follows its token realm to the stand-in,
which takes only access tokens it issued and that have not expired.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import hoststate
from devstack.gcp.standin import gar_host_name
from devstack.node import Node
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper
from tests.node.support import UNAUTHORIZED, Pods, quickstart_pod
from tests.stack.gcp_support import new_workload, refresh, sdk_credentials, token_for

pytestmark = [pytest.mark.stack, pytest.mark.node]


@pytest.fixture
def pods(cluster: ClusterHelper, node: Node, stack: LocalStack) -> Iterator[Pods]:
    # Every test pulls for real: an image already on the node would not be pulled again.
    node.remove_image(stack.gcp.image)
    pods = Pods(cluster, node)
    yield pods
    pods.delete_created()


def _docker_config(stack: LocalStack, token: str) -> str:
    auth = base64.b64encode(f"oauth2accesstoken:{token}".encode()).decode()
    entry = {"username": "oauth2accesstoken", "password": token, "auth": auth}
    return json.dumps({"auths": {stack.gcp.registry_host: entry}})


def test_the_node_resolves_the_artifact_registry_through_a_marked_hosts_line(
    stack: LocalStack, node: Node
) -> None:
    lines = hoststate.HOSTS_FILE.read_text().splitlines()
    ours = [line for line in lines if gar_host_name() in line.split() and node.node_id in line]
    assert len(ours) == 1
    assert ours[0].split()[0] == "127.0.0.1"


def test_a_pod_pulls_with_a_google_access_token_and_not_with_a_made_up_one(
    stack: LocalStack, cluster: ClusterHelper, pods: Pods, tmp_path: Path
) -> None:
    workload = new_workload(stack, "gar-pull")
    namespace = workload.namespace
    cluster.create_pull_secret(namespace, None, config=_docker_config(stack, "ya29.made-up"))
    name = pods.create(namespace, quickstart_pod(stack.gcp.image))
    pods.wait_waiting(namespace, name, containing=UNAUTHORIZED)
    assert pods.get(namespace, name)["status"].get("phase") == "Pending"

    token_file = tmp_path / "token"
    token_file.write_text(token_for(stack, workload))
    token = refresh(stack, sdk_credentials(stack, workload, token_file))
    config = _docker_config(stack, token)
    secret = json.dumps({"data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}})
    cluster.kubectl("-n", namespace, "patch", "secret", "pull-secret", "-p", secret)

    pulled = pods.wait_event(namespace, name, reason="Pulled",
                             containing="Successfully pulled image")  # fmt: skip
    assert stack.gcp.image in pulled["message"]
    pods.wait_running(namespace, name)
