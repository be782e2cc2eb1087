"""The Google stand-in, as Google's own SDK sees it: google-auth's identity-pool credentials,
unchanged, get a federated token from STS and a service account's token from IAM Credentials
with a real Kubernetes token, and are refused, in Google's words, whenever Google would
refuse them. The Artifact Registry's realm takes exactly the tokens the stand-in issued."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import httpx2
import pytest
from google.auth import exceptions

from devstack import pki
from devstack.gcp.standin import gar_host_name
from devstack.stack import LocalStack
from tests.stack.gcp_support import (
    SCOPE,
    Workload,
    new_workload,
    refresh,
    sdk_credentials,
    token_for,
)

pytestmark = pytest.mark.stack


@pytest.fixture
def workload(stack: LocalStack) -> Workload:
    return new_workload(stack)


def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "token"
    path.write_text(token)
    return path


def expires_in(expiry: dt.datetime | None) -> float:
    # NB: google-auth's expiry is a naive UTC datetime.
    assert expiry is not None
    return (expiry.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)).total_seconds()


def test_the_sdk_gets_a_federated_token_that_lives_an_hour_at_most(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    path = token_file(tmp_path, token_for(stack, workload))
    credentials = sdk_credentials(stack, workload, path, impersonate=False)
    before = stack.gcp.exchanges(workload.provider)
    assert refresh(stack, credentials).startswith("ya29.")
    assert 3500 < expires_in(credentials.expiry) <= 3600
    assert stack.gcp.exchanges(workload.provider) == before + 1
    (issued,) = [t for t in stack.gcp.tokens() if t["token"] == credentials.token]
    assert issued["principal"] == stack.gcp.principal(workload.subject)
    assert issued["service_account"] is None


def test_the_sdk_impersonates_a_service_account_the_principal_may_use(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    path = token_file(tmp_path, token_for(stack, workload))
    credentials = sdk_credentials(stack, workload, path)
    refresh(stack, credentials)
    assert 3500 < expires_in(credentials.expiry) <= 3600
    (issued,) = [t for t in stack.gcp.tokens() if t["token"] == credentials.token]
    assert issued["service_account"] == workload.email
    assert stack.gcp.generations(workload.email) == 1


def test_a_federated_token_does_not_outlive_the_kubernetes_token(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    path = token_file(tmp_path, token_for(stack, workload, seconds=900))
    credentials = sdk_credentials(stack, workload, path, impersonate=False)
    refresh(stack, credentials)
    assert 840 < expires_in(credentials.expiry) <= 900


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("audience", "invalid_grant"),
        ("subject", "unauthorized_client"),
        ("provider", "invalid_target"),
        ("binding", "PERMISSION_DENIED"),
    ],
)
def test_the_sdk_is_refused_as_google_refuses(
    stack: LocalStack, workload: Workload, tmp_path: Path, change: str, words: str
) -> None:
    token = token_for(
        stack, workload, audience="another-audience" if change == "audience" else None
    )
    provider = None
    if change == "subject":  # a provider whose condition names another ServiceAccount
        provider = stack.gcp.create_pool_provider(
            f"other-{int(time.time() * 1000) % 10**8}",
            allowed_subjects=["system:serviceaccount:x:y"],
        )
        token = token_for(stack, workload, audience=stack.gcp.provider_audience(provider))
    if change == "provider":
        provider = stack.gcp.provider_name("missing")
    if change == "binding":
        nobody = stack.gcp.create_service_account(f"nobody{int(time.time()) % 10**6}")
        workload = Workload(workload.namespace, workload.service_account, workload.provider, nobody)
    credentials = sdk_credentials(stack, workload, token_file(tmp_path, token), provider=provider)
    with pytest.raises(exceptions.GoogleAuthError) as refused:
        refresh(stack, credentials)
    assert words in str(refused.value)
    assert token not in str(refused.value)


def test_errors_have_each_apis_shape(stack: LocalStack, workload: Workload) -> None:
    with httpx2.Client(verify=pki.trust(stack.ca_file), timeout=10) as client:
        sts = client.post(
            f"{stack.gcp.endpoint}/v1/token",
            data={"grant_type": "password", "subject_token": "x"},
        )
        assert sts.status_code == 400
        assert sts.json() == {"error": "unsupported_grant_type",
                              "error_description": "Invalid value for grant_type."}  # fmt: skip
        iam = client.post(
            f"{stack.gcp.endpoint}/v1/projects/-/serviceAccounts/{workload.email}"
            ":generateAccessToken",
            json={"scope": [SCOPE]},
            headers={"Authorization": "Bearer ya29.not-issued"},
        )
        assert iam.status_code == 401
        assert iam.json()["error"]["status"] == "UNAUTHENTICATED"
        assert iam.json()["error"]["code"] == 401


def test_faults_answer_in_googles_shapes_and_are_counted(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    path = token_file(tmp_path, token_for(stack, workload))
    stack.gcp.set_fault("throttle", api="iamcredentials", count=1)
    try:
        with pytest.raises(exceptions.GoogleAuthError) as refused:
            refresh(stack, sdk_credentials(stack, workload, path))
        assert "RESOURCE_EXHAUSTED" in str(refused.value)
        assert stack.gcp.generations(workload.email, "error") == 1
    finally:
        stack.gcp.clear_faults()
    credentials = sdk_credentials(stack, workload, path)
    refresh(stack, credentials)
    assert stack.gcp.generations(workload.email) == 1


def test_the_registry_realm_takes_only_live_tokens_the_stand_in_issued(
    stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    realm = f"{stack.gcp.endpoint}/gar/token"
    service = stack.gcp.registry_host
    assert service.startswith(gar_host_name() + ":")
    scope = "repository:chainguard/busybox:pull"

    def ask(password: str) -> httpx2.Response:
        with httpx2.Client(verify=pki.trust(stack.ca_file), timeout=10) as client:
            return client.get(realm, params={"service": service, "scope": scope},
                              auth=("oauth2accesstoken", password))  # fmt: skip

    path = token_file(tmp_path, token_for(stack, workload))
    assert ask(refresh(stack, sdk_credentials(stack, workload, path))).status_code == 200
    assert ask("ya29.c.never-issued").status_code == 401
    stack.gcp.set_lifetimes(access_token=2)
    try:
        short = refresh(stack, sdk_credentials(stack, workload, path))
    finally:
        stack.gcp.set_lifetimes()
    time.sleep(2.5)
    assert ask(short).status_code == 401
