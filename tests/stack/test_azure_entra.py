"""The Azure stand-in's Entra ID, as azure-identity sees it: `WorkloadIdentityCredential` gets
an access token for the registries with a real Kubernetes token only when Entra would give
it, and fails with the AADSTS code Entra answers otherwise."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError

from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.stack import LocalStack
from tests.stack.aws_support import cluster_signed
from tests.stack.azure_support import SCOPE, Workload, credential, new_workload, token_for

pytestmark = pytest.mark.stack


@pytest.fixture
def workload(stack: LocalStack) -> Workload:
    return new_workload(stack)


def write(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "azure-identity-token"
    path.write_text(token)
    return path


def refusal(stack: LocalStack, workload: Workload, token_file: Path, **kwargs: str) -> str:
    with pytest.raises(ClientAuthenticationError) as caught:
        credential(stack, workload, token_file, **kwargs).get_token(SCOPE)
    return str(caught.value)


def test_the_sdk_gets_an_access_token_for_the_registries_with_a_trusted_token(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    before = stack.azure.tokens(workload.client_id)
    token_file = write(tmp_path, token_for(stack, workload))
    access = credential(stack, workload, token_file).get_token(SCOPE)
    assert 3500 < access.expires_on - time.time() <= 3600
    claims = jwt.decode(access.token, options={"verify_signature": False})
    assert claims["aud"] == "https://containerregistry.azure.net"
    assert (claims["tid"], claims["appid"]) == (stack.azure.tenant, workload.client_id)
    assert stack.azure.tokens(workload.client_id) == before + 1


def test_a_subject_without_a_federated_credential_is_refused_with_aadsts700213(
    stack: LocalStack, tmp_path: Path
) -> None:
    other = new_workload(stack, federated=False)
    stack.azure.add_federated_credential(
        other.client_id, subject=f"system:serviceaccount:{other.namespace}:someone-else"
    )
    message = refusal(stack, other, write(tmp_path, token_for(stack, other)))
    assert "AADSTS700213" in message
    assert "No matching federated identity record found for presented assertion subject" in message
    assert stack.azure.tokens(other.client_id, "error") == 1


def test_another_audience_is_refused_with_aadsts700212(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    token = token_for(stack, workload, audience="sts.amazonaws.com")
    assert "AADSTS700212" in refusal(stack, workload, write(tmp_path, token))


def test_another_issuer_is_refused_with_aadsts700211(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    stack.azure.add_federated_credential(
        workload.client_id, subject=workload.subject, issuer="https://oidc.example.invalid"
    )
    other = new_workload(stack)  # trusts the cluster's issuer; this one does not
    app = stack.azure.create_app("issuer-mismatch")
    stack.azure.add_federated_credential(
        app, subject=other.subject, issuer="https://oidc.example.invalid"
    )
    message = refusal(stack, other, write(tmp_path, token_for(stack, other)), client_id=app)
    assert "AADSTS700211" in message


def test_a_forged_or_expired_assertion_is_refused(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    real = token_for(stack, workload)
    now = int(time.time())
    claims = {"iss": SERVICE_ACCOUNT_ISSUER, "sub": workload.subject,
              "aud": ["api://AzureADTokenExchange"], "iat": now - 700, "nbf": now - 700,
              "exp": now - 100}  # fmt: skip
    expired = cluster_signed(stack, claims, kid_from=real)
    assert "AADSTS700024" in refusal(stack, workload, write(tmp_path, expired))
    head, payload, _ = real.split(".")
    forged = f"{head}.{payload}.{'A' * 342}"
    assert "AADSTS700027" in refusal(stack, workload, write(tmp_path, forged))


def test_an_app_not_in_the_tenant_is_refused_with_aadsts700016(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    token_file = write(tmp_path, token_for(stack, workload))
    message = refusal(stack, workload, token_file, client_id="99999999-9999-4999-8999-999999999999")
    assert "AADSTS700016" in message


def test_throttling_answers_429_with_retry_after(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    token_file = write(tmp_path, token_for(stack, workload))
    stack.azure.set_fault("throttle", api="entra", count=5)
    try:
        with pytest.raises(ClientAuthenticationError) as caught:
            credential(stack, workload, token_file, retry_total=0).get_token(SCOPE)
        assert "AADSTS90055" in str(caught.value)
    finally:
        stack.azure.clear_faults()
