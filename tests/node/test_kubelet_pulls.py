"""A real kubelet pulls with the pull Secret, exactly as a user's Pod does.

The Pod is the quickstart's (``imagePullSecrets: [pull-secret]``, the image in the local
registry). With a Secret the registry must refuse (empty, forged, expired), the kubelet reports
``ErrImagePull`` with the registry's 401; once the controller fills or refreshes the Secret, the
kubelet's next retry pulls (Event ``Pulled``: "Successfully pulled image") and the container
runs. The controller runs as a local process here (tests/node/test_controller_pod.py runs it as
a Pod), so each test can stop and start it at the moment that matters.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.controller import ControllerProcess
from devstack.node import Node
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, eventually
from tests.node.support import UNAUTHORIZED, Pods, quickstart_pod

pytestmark = [pytest.mark.stack, pytest.mark.node]


@pytest.fixture
def identity(stack: LocalStack, installed: str) -> str:
    """An identity of the test's own: the controller shares a valid token among Secrets of one
    identity, and these tests need the token they set up, not another test's."""
    return stack.create_kind_identity(name=f"node-pulls-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def pods(cluster: ClusterHelper, node: Node, stack: LocalStack) -> Iterator[Pods]:
    # Every test pulls for real: an image already on the node would not be pulled again.
    node.remove_image(stack.registry.image)
    pods = Pods(cluster, node)
    yield pods
    pods.delete_created()


def _refused_then_pulled(pods: Pods, namespace: str, name: str, fix: Callable[[], None]) -> None:
    """The Pod's pull is refused with 401; after ``fix`` the kubelet's retry pulls and runs."""
    pods.wait_waiting(namespace, name, containing=UNAUTHORIZED)
    failed = pods.wait_event(namespace, name, reason="Failed", containing=UNAUTHORIZED)
    assert "Failed to pull image" in failed["message"]
    assert pods.get(namespace, name)["status"].get("phase") == "Pending"

    fix()

    pulled = pods.wait_event(namespace, name, reason="Pulled",
                             containing="Successfully pulled image")  # fmt: skip
    assert pulled["source"] == {"component": "kubelet", "host": pods.node.name}
    pods.wait_running(namespace, name)


def test_an_empty_secret_is_refused_and_the_filled_one_pulls(
    stack: LocalStack,
    cluster: ClusterHelper,
    pods: Pods,
    identity: str,
    start_controller: Callable[..., ControllerProcess],
) -> None:
    namespace = cluster.namespace("node-empty")
    cluster.create_pull_secret(namespace, None)  # '{}', not annotated yet
    name = pods.create(namespace, quickstart_pod(stack.registry.image))

    def fill() -> None:
        start_controller()
        cluster.annotate(namespace, identity)
        cluster.wait_filled(namespace)

    _refused_then_pulled(pods, namespace, name, fill)


def _forged_token(stack: LocalStack, identity: str) -> str:
    """A token with every claim of a real one, signed by a key the token service never had."""
    now = int(time.time())
    claims = {
        "iss": stack.token_service.url,
        "sub": identity,
        "aud": stack.registry.host,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")


def test_a_forged_token_is_refused_and_the_controller_replaces_it(
    stack: LocalStack,
    cluster: ClusterHelper,
    pods: Pods,
    identity: str,
    start_controller: Callable[..., ControllerProcess],
) -> None:
    namespace = cluster.namespace("node-forged")
    forged = _forged_token(stack, identity)
    config = {"auths": {stack.registry.host: {"username": "_token", "password": forged}}}
    cluster.create_pull_secret(namespace, identity, config=json.dumps(config))
    name = pods.create(namespace, quickstart_pod(stack.registry.image))

    def replace() -> None:
        start_controller()
        cluster.wait_filled(namespace, other_than=forged)

    _refused_then_pulled(pods, namespace, name, replace)


def test_an_expired_token_is_refused_and_the_refreshed_one_pulls(
    stack: LocalStack,
    cluster: ClusterHelper,
    pods: Pods,
    identity: str,
    start_controller: Callable[..., ControllerProcess],
    token_lifetime: Callable[[int], None],
) -> None:
    token_lifetime(15)
    namespace = cluster.namespace("node-expired")
    controller = start_controller()
    cluster.create_pull_secret(namespace, identity)
    stale = cluster.wait_filled(namespace)
    controller.stop()  # nobody refreshes it now
    expiry = jwt.decode(stale, options={"verify_signature": False})["exp"]
    eventually(lambda: time.time() > expiry + 1, timeout=30, what="the token's expiry")
    assert cluster.token(namespace) == stale
    name = pods.create(namespace, quickstart_pod(stack.registry.image))

    def refresh() -> None:
        token_lifetime(3600)
        start_controller()
        cluster.wait_filled(namespace, other_than=stale)

    _refused_then_pulled(pods, namespace, name, refresh)
