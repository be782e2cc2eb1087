"""The official ECR credential provider (k8s.io/cloud-provider-aws, built from Go modules)
gets its credentials from the local AWS stand-in as from AWS, and they pull: the stand-in is
faithful to a client that is not ours. A role that does not trust the ServiceAccount is
refused to it too, with AWS's words."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.aws.standin import STS_AUDIENCE
from devstack.binaries import find_ecr_credential_provider
from devstack.ecrplugin import OfficialPluginError, run_official_ecr_plugin
from devstack.registry import TEST_IMAGE_REPOSITORY, TEST_IMAGE_TAG, skopeo_inspect
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, unique

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def official_plugin() -> Path:
    return find_ecr_credential_provider(build=True)


def workload(stack: LocalStack, cluster: ClusterHelper) -> tuple[str, str]:
    namespace = cluster.namespace("ecr-official")
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "puller")
    token = stack.control_plane.service_account_token(namespace, "puller", audience=STS_AUDIENCE)
    return f"system:serviceaccount:{namespace}:puller", token


def ask_plugin(binary: Path, stack: LocalStack, *, role: str, token: str) -> dict[str, Any]:
    """The plugin's answer for the stack's ECR image, as the kubelet asks in token mode."""
    return run_official_ecr_plugin(
        binary,
        image=stack.aws.image,
        endpoint=stack.aws.endpoint,
        ca_file=stack.ca_file,
        region=stack.aws.region,
        role_arn=role,
        service_account_token=token,
        web_identity_token_file=None,
    )


def test_the_official_plugin_gets_a_password_that_pulls(
    stack: LocalStack, cluster: ClusterHelper, official_plugin: Path, tmp_path: Path
) -> None:
    subject, token = workload(stack, cluster)
    role = stack.aws.create_role(unique("official"), subjects=subject)
    answer = ask_plugin(official_plugin, stack, role=role, token=token)
    assert answer["kind"] == "CredentialProviderResponse"
    assert answer["cacheKeyType"] == "Registry"
    ((key, credentials),) = answer["auth"].items()
    # NB: the plugin keys its answer by the host without the port (a real ECR host has none).
    assert key == stack.aws.registry_host.split(":")[0]
    assert credentials["username"] == "AWS"
    issued = {item["password"]: item for item in stack.aws.passwords()}
    assert issued[credentials["password"]]["role_arn"] == role
    assert (stack.aws.assumed(role), stack.aws.authorizations(role)) == (1, 1)

    address = stack.aws.registry.address
    auth = base64.b64encode(f"AWS:{credentials['password']}".encode()).decode()
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {address: {"auth": auth}}}))
    pulled = skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=f"{address}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}",
        authfile=authfile,
        ca_file=stack.ca_file,
    )
    assert pulled.returncode == 0, pulled.stderr


def test_the_official_plugin_is_refused_a_role_that_does_not_trust_the_workload(
    stack: LocalStack, cluster: ClusterHelper, official_plugin: Path
) -> None:
    _, token = workload(stack, cluster)
    role = stack.aws.create_role(unique("official"), subjects="system:serviceaccount:x:y")
    with pytest.raises(OfficialPluginError) as refused:
        ask_plugin(official_plugin, stack, role=role, token=token)
    assert "AccessDenied" in str(refused.value)
    assert token not in str(refused.value)
