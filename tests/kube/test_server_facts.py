"""The API server's version and whether it serves ValidatingAdmissionPolicies, from discovery:
against the real local API server, and an older one (1.29-like) that does not serve them."""

from __future__ import annotations

from typing import Any

import httpx2
import lightkube
import pytest
from lightkube import KubeConfig

from devstack.kubeversions import ADMISSION_POLICY, PLUGIN_SERVICE_ACCOUNT_TOKENS, oldest, selected
from devstack.stack import LocalStack
from pull_secret_updater.kube.client import make_client
from pull_secret_updater.kube.errors import KubeError
from pull_secret_updater.kube.server import (
    OLDEST_TESTED,
    ServerFacts,
    limitations,
    read_server_facts,
)
from pull_secret_updater.kube.server import (
    PLUGIN_SERVICE_ACCOUNT_TOKENS as PLUGIN_TOKENS_MINOR,
)
from tests.fakes import status_reply


def _client(handler: Any) -> lightkube.AsyncClient:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": "http://api.example.test"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return lightkube.AsyncClient(config=config, transport=httpx2.MockTransport(handler))


@pytest.mark.stack
async def test_the_local_api_server_says_its_version_and_serves_admission_policies(
    stack: LocalStack,
) -> None:
    client = make_client(kubeconfig=stack.kubeconfig)
    try:
        facts = await read_server_facts(client)
    finally:
        await client.close()
    # The version the stack was asked to run (the binaries carry it in their build).
    assert facts.version == str(selected())
    assert facts.admission_policies is selected().at_least(ADMISSION_POLICY)
    # What the controller tells the operator at start on this version.
    told = [limitation.message for limitation in limitations(facts)]
    assert not any("older than the oldest" in message for message in told)
    plugin_note = any("ServiceAccount token" in message for message in told)
    assert plugin_note is not selected().at_least(PLUGIN_SERVICE_ACCOUNT_TOKENS)


def test_the_controller_knows_the_versions_the_matrix_tests() -> None:
    assert (oldest().major, oldest().minor) == OLDEST_TESTED
    assert (
        PLUGIN_SERVICE_ACCOUNT_TOKENS.major,
        PLUGIN_SERVICE_ACCOUNT_TOKENS.minor,
    ) == PLUGIN_TOKENS_MINOR


@pytest.mark.parametrize(
    ("version", "policies", "severe", "notes"),
    [
        pytest.param("v1.37.2", True, 0, 0, id="newest"),
        pytest.param("v1.34.4", True, 0, 0, id="plugin-tokens"),
        pytest.param("v1.33.13", True, 0, 1, id="before-plugin-tokens"),
        pytest.param("v1.30.14-eks-1", True, 0, 1, id="oldest-tested"),
        pytest.param("v1.29.9", False, 2, 1, id="older-than-tested"),
        pytest.param(None, False, 1, 0, id="version-unknown"),
    ],
)
def test_the_start_up_says_what_this_version_cannot_do(
    version: str | None, policies: bool, severe: int, notes: int
) -> None:
    found = limitations(ServerFacts(version=version, admission_policies=policies))
    assert sum(1 for f in found if f.severe) == severe
    assert sum(1 for f in found if not f.severe) == notes


async def test_a_server_without_the_v1_admission_api_is_told_apart() -> None:
    async def older(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/version":
            return httpx2.Response(200, json={"gitVersion": "v1.29.9"})
        return status_reply(404, "the server could not find the requested resource")

    client = _client(older)
    facts = await read_server_facts(client)
    await client.close()
    assert (facts.version, facts.admission_policies) == ("v1.29.9", False)


async def test_a_group_served_without_the_policies_counts_as_absent() -> None:
    async def beta_only(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/version":
            return httpx2.Response(200, json={"gitVersion": "v1.30.0"})
        return httpx2.Response(
            200, json={"resources": [{"name": "validatingwebhookconfigurations"}]}
        )

    client = _client(beta_only)
    facts = await read_server_facts(client)
    await client.close()
    assert facts.admission_policies is False


async def test_a_server_that_refuses_is_a_kube_error_not_a_guess() -> None:
    async def refusing(request: httpx2.Request) -> httpx2.Response:
        return status_reply(403, "forbidden")

    client = _client(refusing)
    with pytest.raises(KubeError):
        await read_server_facts(client)
    await client.close()
