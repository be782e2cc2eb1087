"""The RBAC that `credential-provider rbac` prints is what the API server needs, under
NodeRestriction, to let a kubelet request the Pod-bound ServiceAccount token that it hands to
the plugin; and that token, so requested, is what the bundle exchanges.

No kubelet runs here: the test acts as one (a client certificate for ``system:node:<name>`` in
``system:nodes``), for a Pod bound to its Node, and makes the TokenRequest the kubelet makes
(``kubelet/pkg/credentialprovider/plugin``: one audience, bound to the Pod).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from devstack import pki
from devstack.cluster import SERVICE_ACCOUNT_ISSUER, write_kubeconfig
from devstack.stack import LocalStack
from pull_secret_updater.cli import main
from pull_secret_updater.credentialprovider.protocol import API_VERSION
from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from tests.helpers import ClusterHelper, unique

pytestmark = pytest.mark.stack


@dataclass
class NodePod:
    node: str
    namespace: str
    pod: str
    uid: str
    kubeconfig: Path


@pytest.fixture
def node_pod(stack: LocalStack, cluster: ClusterHelper, tmp_path: Path) -> NodePod:
    """A Node, a Pod of ServiceAccount `app` bound to it, and the Node's kubelet credentials."""
    node = unique("cp-node")
    cluster.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
    ))  # fmt: skip
    namespace = cluster.namespace("cp-node")
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "app")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app"},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "app",
            "containers": [{"name": "app", "image": stack.registry.image}],
        },
    }
    created = json.loads(
        cluster.kubectl("-n", namespace, "create", "-f", "-", "-o", "json", input=json.dumps(pod))
    )
    cert = pki.issue_cert(stack.ca, tmp_path, stem="kubelet", common_name=f"system:node:{node}",
                          organizations=("system:nodes",), client=True)  # fmt: skip
    kubeconfig = write_kubeconfig(
        tmp_path / "kubelet.kubeconfig",
        server=stack.control_plane.server,
        ca_file=stack.ca_file,
        user=f"system:node:{node}",
        client_cert=cert,
    )
    return NodePod(node, namespace, "app", created["metadata"]["uid"], kubeconfig)


def kubelet_token_request(
    stack: LocalStack, node_pod: NodePod, audience: str
) -> subprocess.CompletedProcess[str]:
    """The kubelet's TokenRequest for the plugin, made with the Node's credentials."""
    return subprocess.run(
        [
            str(stack.binaries.kubectl), f"--kubeconfig={node_pod.kubeconfig}",
            "-n", node_pod.namespace, "create", "token", "app", f"--audience={audience}",
            "--bound-object-kind=Pod", f"--bound-object-name={node_pod.pod}",
            f"--bound-object-uid={node_pod.uid}",
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.fixture
def audience_rbac(
    cluster: ClusterHelper, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[str, str]]:
    """A fresh audience, and the RBAC for it as `credential-provider rbac` prints it (applied
    by the test, deleted afterwards)."""
    audience = f"{unique('aud')}.example"
    name = unique("psu-cp")
    assert main(["credential-provider", "rbac", f"--audience={audience}", f"--name={name}"]) == 0
    manifests = capsys.readouterr().out
    yield audience, manifests
    cluster.kubectl("delete", "clusterrolebinding,clusterrole", name, "--ignore-not-found")


def test_without_the_rbac_the_kubelet_cannot_request_the_plugins_audience(
    stack: LocalStack, node_pod: NodePod, audience_rbac: tuple[str, str]
) -> None:
    audience, _ = audience_rbac
    refused = kubelet_token_request(stack, node_pod, audience)
    assert refused.returncode != 0
    # NodeRestriction's wording changed in 1.37 ("not authorized to request tokens for
    # audience ..." instead of "audience ... not found in pod spec volume").
    assert "forbidden" in refused.stderr
    assert f'audience "{audience}"' in refused.stderr


def test_with_the_rbac_the_kubelet_gets_a_pod_bound_token_with_that_audience(
    stack: LocalStack, cluster: ClusterHelper, node_pod: NodePod, audience_rbac: tuple[str, str]
) -> None:
    audience, manifests = audience_rbac
    cluster.kubectl("apply", "-f", "-", input=manifests)

    granted = kubelet_token_request(stack, node_pod, audience)
    assert granted.returncode == 0, granted.stderr
    claims = jwt.decode(granted.stdout.strip(), options={"verify_signature": False})
    assert claims["aud"] == [audience]
    assert claims["iss"] == SERVICE_ACCOUNT_ISSUER
    assert claims["sub"] == f"system:serviceaccount:{node_pod.namespace}:app"
    assert claims["kubernetes.io"]["pod"] == {"name": node_pod.pod, "uid": node_pod.uid}
    assert claims["kubernetes.io"]["node"]["name"] == node_pod.node

    # Still only for its own Pods: another Node's kubelet is refused the same token.
    other = NodePod(unique("cp-other"), node_pod.namespace, node_pod.pod, node_pod.uid,
                    node_pod.kubeconfig.with_name("other.kubeconfig"))  # fmt: skip
    cert = pki.issue_cert(stack.ca, node_pod.kubeconfig.parent, stem="other",
                          common_name=f"system:node:{other.node}",
                          organizations=("system:nodes",), client=True)  # fmt: skip
    write_kubeconfig(other.kubeconfig, server=stack.control_plane.server, ca_file=stack.ca_file,
                     user=f"system:node:{other.node}", client_cert=cert)  # fmt: skip
    refused = kubelet_token_request(stack, other, audience)
    assert refused.returncode != 0
    # The Node authorizer's words: the Pod is not bound to that Node.
    assert f"no relationship found between node '{other.node}'" in refused.stderr, refused.stderr


def test_the_bundle_exchanges_the_token_the_kubelet_got_for_an_identity_with_that_audience(
    bundle: Path,
    stack: LocalStack,
    cluster: ClusterHelper,
    node_pod: NodePod,
    audience_rbac: tuple[str, str],
) -> None:
    audience, manifests = audience_rbac
    cluster.kubectl("apply", "-f", "-", input=manifests)
    token = kubelet_token_request(stack, node_pod, audience).stdout.strip()
    identity = stack.token_admin().create_identity(
        name=unique("cp-aud"),
        issuer=SERVICE_ACCOUNT_ISSUER,
        subject=f"system:serviceaccount:{node_pod.namespace}:app",
        audience=audience,
        issuer_keys=json.dumps(stack.control_plane.jwks()),
    )
    request = {
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": stack.registry.image,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": {IDENTITY_KEY: identity},
    }
    done = subprocess.run(
        [str(bundle), f"--issuer={stack.token_service.url}", f"--registry={stack.registry.host}",
         f"--ca-bundle={stack.ca_file}"],
        input=json.dumps(request), capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [auth] = json.loads(done.stdout)["auth"].values()
    assert jwt.decode(auth["password"], options={"verify_signature": False})["sub"] == identity
