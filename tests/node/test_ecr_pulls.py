"""A real kubelet pulls from the ECR stand-in's registry with a pull Secret holding
``AWS:<password>``, the password from GetAuthorizationToken, as a user's Pod does on EKS.

The registry is ``<account>.dkr.ecr.<region>.amazonaws.com:<port>``: containerd resolves it
through the node's /etc/hosts line, trusts the stack's CA for it, and follows its token realm
to the stand-in, which takes only passwords it issued for that registry.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import hoststate
from devstack.aws.standin import ecr_host_name
from devstack.node import Node
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper
from tests.node.support import UNAUTHORIZED, Pods, quickstart_pod
from tests.stack.aws_support import assume, ecr_client, ecr_password, new_workload, token_for

pytestmark = [pytest.mark.stack, pytest.mark.node]


@pytest.fixture
def pods(cluster: ClusterHelper, node: Node, stack: LocalStack) -> Iterator[Pods]:
    # Every test pulls for real: an image already on the node would not be pulled again.
    node.remove_image(stack.aws.image)
    pods = Pods(cluster, node)
    yield pods
    pods.delete_created()


def _docker_config(stack: LocalStack, password: str) -> str:
    auth = base64.b64encode(f"AWS:{password}".encode()).decode()
    entry = {"username": "AWS", "password": password, "auth": auth}
    return json.dumps({"auths": {stack.aws.registry_host: entry}})


def test_the_node_resolves_the_ecr_registry_through_a_marked_hosts_line(
    stack: LocalStack, node: Node
) -> None:
    lines = hoststate.HOSTS_FILE.read_text().splitlines()
    name = ecr_host_name(stack.aws.account, stack.aws.region)
    ours = [line for line in lines if name in line.split() and node.node_id in line]
    assert len(ours) == 1
    assert ours[0].split()[0] == "127.0.0.1"


def test_a_pod_pulls_with_an_ecr_password_and_not_with_a_made_up_one(
    stack: LocalStack, cluster: ClusterHelper, pods: Pods
) -> None:
    workload = new_workload(stack, "ecr-pull")
    namespace = workload.namespace
    cluster.create_pull_secret(namespace, None, config=_docker_config(stack, "bm90LWlzc3VlZA=="))
    name = pods.create(namespace, quickstart_pod(stack.aws.image))
    pods.wait_waiting(namespace, name, containing=UNAUTHORIZED)
    assert pods.get(namespace, name)["status"].get("phase") == "Pending"

    credentials = assume(stack, workload, token_for(stack, workload))
    data = ecr_client(stack, credentials).get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == f"https://{stack.aws.registry_host}"
    config = _docker_config(stack, ecr_password(data["authorizationToken"]))
    secret = json.dumps({"data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}})
    cluster.kubectl("-n", namespace, "patch", "secret", "pull-secret", "-p", secret)

    pulled = pods.wait_event(namespace, name, reason="Pulled",
                             containing="Successfully pulled image")  # fmt: skip
    assert stack.aws.image in pulled["message"]
    pods.wait_running(namespace, name)


def test_hosts_lines_of_nodes_that_are_gone_are_swept(
    stack: LocalStack, node: Node, tmp_path: Path
) -> None:
    name = ecr_host_name(stack.aws.account, stack.aws.region)
    with hoststate.HOSTS_FILE.open("a") as hosts:  # what a node killed with SIGKILL leaves
        hosts.write(f"127.0.0.1 {name} # pull-secret-updater node deadbeef\n")
    probe = dataclasses.replace(
        node._claim,
        node_id="probe000",
        workdir=str(tmp_path / "probe"),
        cgroup_root="/psu-node-probe000",
        containerd_socket=str(tmp_path / "probe" / "containerd.sock"),
        bridge="psu-probe000",
    )
    hoststate.acquire(probe)  # the next node to start sweeps
    with_probe = hoststate.HOSTS_FILE.read_text()
    hoststate.release(probe)
    after = hoststate.HOSTS_FILE.read_text()
    assert "deadbeef" not in with_probe
    assert "probe000" in with_probe
    assert "probe000" not in after
    assert f"node {node.node_id}" in after  # the running node keeps its line
