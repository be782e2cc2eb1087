"""The Azure stand-in's registry side: `/oauth2/exchange` trades an access token from Entra
(obtained by azure-identity) for a refresh token only when ACR would, and the registry pulls
with `00000000-0000-0000-0000-000000000000:<refresh token>` only for refresh tokens issued
for it and still valid."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx2
import jwt
import pytest

from devstack import pki
from devstack.registry import TEST_IMAGE_REPOSITORY, skopeo_inspect
from devstack.stack import LocalStack
from tests.stack.azure_support import SCOPE, Workload, credential, exchange, new_workload, token_for

pytestmark = pytest.mark.stack

NIL = "00000000-0000-0000-0000-000000000000"
PULL_SCOPE = f"repository:{TEST_IMAGE_REPOSITORY}:pull"


@pytest.fixture
def workload(stack: LocalStack) -> Workload:
    return new_workload(stack)


def access_token(stack: LocalStack, workload: Workload, tmp_path: Path) -> str:
    token_file = tmp_path / "token"
    token_file.write_text(token_for(stack, workload))
    return credential(stack, workload, token_file).get_token(SCOPE).token


def refresh_token(stack: LocalStack, workload: Workload, tmp_path: Path) -> str:
    answer = exchange(stack, access_token(stack, workload, tmp_path))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["refresh_token"])


def registry_token(stack: LocalStack, password: str, *, username: str = NIL) -> httpx2.Response:
    challenge = httpx2.get(f"https://{stack.azure.registry.address}/v2/",
                           verify=pki.trust(stack.ca_file))  # fmt: skip
    assert challenge.status_code == 401
    params = dict(
        p.split("=", 1)
        for p in challenge.headers["WWW-Authenticate"].partition(" ")[2].replace('"', "").split(",")
    )
    assert params["service"] == stack.azure.registry_host
    return httpx2.get(
        params["realm"],
        params={"service": params["service"], "scope": PULL_SCOPE},
        auth=(username, password),
        verify=pki.trust(stack.ca_file),
    )


def test_an_access_token_becomes_a_refresh_token_of_three_hours_for_the_registry(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    token = refresh_token(stack, workload, tmp_path)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == stack.azure.registry_host.rsplit(":", 1)[0]
    assert 3 * 3600 - 60 < claims["exp"] - time.time() <= 3 * 3600
    assert stack.azure.exchanges(workload.client_id) == 1
    assert token in stack.token_admin().issued("azure")


def test_the_exchange_refuses_what_acr_refuses(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    good = access_token(stack, workload, tmp_path)
    no_role = new_workload(stack)
    unassigned = stack.azure.create_app("no-acr-pull")
    stack.azure.add_federated_credential(unassigned, subject=no_role.subject)
    token_file = tmp_path / "other"
    token_file.write_text(token_for(stack, no_role))
    without_role = credential(stack, no_role, token_file, client_id=unassigned).get_token(SCOPE)
    refusals = {
        "made up": exchange(stack, "eyJ0eXAiOiJKV1QifQ.e30.c2ln"),
        "another tenant": exchange(stack, good, tenant="11111111-1111-4111-8111-111111111111"),
        "another registry": exchange(stack, good, service="otherregistry.azurecr.io"),
        "no AcrPull": exchange(stack, without_role.token),
    }
    for why, answer in refusals.items():
        assert answer.status_code == 401, why
        assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED", why


def test_an_arm_audience_token_is_refused_as_by_a_registry_that_disables_them(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token_for(stack, workload))
    arm = credential(stack, workload, token_file).get_token("https://management.azure.com/.default")
    answer = exchange(stack, arm.token)
    assert answer.status_code == 401
    assert "authentication-as-ARM is disabled" in answer.text


def test_a_refresh_token_pulls_from_its_registry_with_the_nil_user(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    token = refresh_token(stack, workload, tmp_path)
    answer = registry_token(stack, token)
    assert answer.status_code == 200, answer.text
    auths = {
        stack.azure.registry.address: {"auth": base64.b64encode(f"{NIL}:{token}".encode()).decode()}
    }
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": auths}))
    image = stack.azure.image.replace(stack.azure.registry_host, stack.azure.registry.address)
    pulled = skopeo_inspect(
        skopeo=stack.binaries.skopeo, image=image, authfile=authfile, ca_file=stack.ca_file
    )
    assert pulled.returncode == 0, pulled.stderr


def test_the_registry_refuses_refresh_tokens_it_should_not_take(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    token = refresh_token(stack, workload, tmp_path)
    forged = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "k" * 32)
    refusals = {
        "made up": registry_token(stack, forged),
        "with another username": registry_token(stack, token, username="_token"),
    }
    for why, answer in refusals.items():
        assert answer.status_code == 401, why


def test_an_expired_refresh_token_is_refused(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    stack.azure.set_lifetimes(refresh_token=2)
    try:
        token = refresh_token(stack, workload, tmp_path)
    finally:
        stack.azure.set_lifetimes(refresh_token=0)
    answer = registry_token(stack, token)
    assert answer.status_code == 200
    assert answer.json()["expires_in"] <= 2
    time.sleep(2.5)
    refused = registry_token(stack, token)
    assert refused.status_code == 401
    assert "expired" in refused.text


def test_faults_answer_as_acr_does(stack: LocalStack, workload: Workload, tmp_path: Path) -> None:
    good = access_token(stack, workload, tmp_path)
    stack.azure.set_fault("throttle", api="acr", count=1)
    throttled = exchange(stack, good)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"]
    assert exchange(stack, good).status_code == 200
