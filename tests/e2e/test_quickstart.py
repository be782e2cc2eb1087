"""The quickstart, step by step as a user types it, against the local stack and its node.

Create the identity (chainctl), create the empty Secret and annotate it (kubectl), watch the
controller fill it, then create the Pod of the original instructions: the node's kubelet pulls
its image with the Secret (Event "Successfully pulled image") and runs it. The Secret is
refreshed before the token expires: a second Pod pulls with the new token, and the old token
stops working once it expires (skopeo, with the old Secret content as its auth file).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from devstack.controller import ControllerProcess
from devstack.demo import pod_script
from devstack.node import Node
from devstack.stack import LocalStack
from tests.helpers import EXPIRES_AT, ClusterHelper, eventually
from tests.node.support import Pods

pytestmark = [pytest.mark.stack, pytest.mark.node]


def sh(stack: LocalStack, script: str) -> str:
    """Run a shell snippet the way a user would, with the stack's kubeconfig and tools."""
    env = {
        **os.environ,
        **stack.env(),
        "PATH": f"{stack.binaries.kubectl.parent}:{os.environ['PATH']}",
    }
    env["PSU_PYTHON"] = os.environ.get("PSU_PYTHON", "python")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", textwrap.dedent(script)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_quickstart_fills_a_secret_that_a_pod_pulls_with_and_refreshes_it(
    stack: LocalStack,
    node: Node,
    cluster: ClusterHelper,
    start_controller: Callable[..., ControllerProcess],
    token_lifetime: Callable[[int], None],
    tmp_path: Path,
) -> None:
    token_lifetime(12)
    start_controller()
    chainctl = "python -m devstack.chainctl"
    uid = sh(
        stack,
        f"""
        {chainctl} iam identities create kind-pull-secrets \\
          --issuer-keys="$(kubectl get --raw /openid/v1/jwks)" \\
          --identity-issuer=https://kubernetes.default.svc.cluster.local \\
          --subject=system:serviceaccount:pull-secret-updater:controller \\
          --role=registry.pull
    """,
    ).strip()
    assert uid

    namespace = cluster.namespace("quickstart")
    sh(
        stack,
        f"""
        kubectl config set-context --current --namespace={namespace} >/dev/null
        kubectl create secret generic pull-secret --type=kubernetes.io/dockerconfigjson --from-literal=.dockerconfigjson='{{}}'
        kubectl annotate secret pull-secret pull-secret-updater.chainguard.dev/identity={uid}
    """,
    )
    pods = Pods(cluster, node)
    try:
        first = cluster.wait_filled(namespace)
        secret = json.loads(sh(stack, "kubectl get secret pull-secret -ojson"))
        docker_config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
        entry = docker_config["auths"][stack.registry.host]
        assert entry["username"] == "_token"
        assert base64.b64decode(entry["auth"]).decode() == f"_token:{first}"
        claims = jwt.decode(first, options={"verify_signature": False})
        assert claims["aud"] == stack.registry.host
        assert secret["metadata"]["annotations"][EXPIRES_AT]

        # The Pod of the quickstart: the kubelet pulls its image with the Secret and runs it.
        node.remove_image(stack.registry.image)
        pods.wait_default_service_account(namespace)
        pod = sh(stack, pod_script(stack.registry.image, name_only=True)).strip().split("/", 1)[1]
        pods.created.append((namespace, pod))
        pods.wait_event(namespace, pod, reason="Pulled", containing="Successfully pulled image")
        pods.wait_running(namespace, pod)

        # Refreshed before it expires (lifetime 12 s: at about 2/3 of it), and a new Pod pulls
        # with the new token.
        second = cluster.wait_filled(namespace, other_than=first, timeout=30)
        refreshed = jwt.decode(second, options={"verify_signature": False})
        assert refreshed["iat"] < claims["exp"], "the refresh came only after the token expired"
        node.remove_image(stack.registry.image)
        again = sh(stack, pod_script(stack.registry.image, name_only=True)).strip().split("/", 1)[1]
        pods.created.append((namespace, again))
        pods.wait_event(namespace, again, reason="Pulled", containing="Successfully pulled image")
        pods.wait_running(namespace, again)

        eventually(lambda: time.time() > claims["exp"] + 1, timeout=15, what="old token expiry")
        assert cluster.refused_pull(docker_config, tmp_path) == "token has expired"
        assert {"Filled", "Refreshed"} <= set(cluster.event_reasons(namespace))
    finally:
        pods.delete_created()
        sh(stack, "kubectl config set-context --current --namespace=default >/dev/null")
