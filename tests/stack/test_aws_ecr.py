"""The AWS stand-in's ECR, as boto3 and a registry client see it: GetAuthorizationToken checks
the SigV4 signature with the credentials STS issued and answers a fresh password with a real
expiry; the ECR registry's token realm takes that password, and only that one, for a pull."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx2
import pytest
from botocore.exceptions import ClientError

from devstack import pki
from devstack.registry import TEST_IMAGE_REPOSITORY, TEST_IMAGE_TAG
from devstack.stack import LocalStack
from tests.stack.aws_support import (
    Workload,
    assume,
    ecr_client,
    ecr_password,
    error_code,
    new_workload,
    token_for,
)

if TYPE_CHECKING:
    from types_boto3_sts.type_defs import CredentialsTypeDef

pytestmark = pytest.mark.stack

LIFETIME = 60
PULL_SCOPE = f"repository:{TEST_IMAGE_REPOSITORY}:pull"


@pytest.fixture
def workload(stack: LocalStack) -> Workload:
    return new_workload(stack, "ecr")


@pytest.fixture
def credentials(stack: LocalStack, workload: Workload) -> CredentialsTypeDef:
    return assume(stack, workload, token_for(stack, workload))


@pytest.fixture
def lifetime(stack: LocalStack) -> Iterator[int]:
    """ECR passwords of LIFETIME seconds during the test; AWS's 12 hours again after it."""
    stack.aws.set_ecr_token_lifetime(LIFETIME)
    yield LIFETIME
    stack.aws.set_ecr_token_lifetime(None)
    stack.aws.set_session_cap(None)
    stack.aws.clear_faults()


def test_signed_calls_get_a_fresh_password_with_a_real_expiry(
    stack: LocalStack, workload: Workload, credentials: CredentialsTypeDef, lifetime: int
) -> None:
    ecr = ecr_client(stack, credentials)
    first = ecr.get_authorization_token()["authorizationData"]
    asked = time.time()
    second = ecr.get_authorization_token()["authorizationData"]
    assert len(first) == len(second) == 1
    data = second[0]
    assert abs(data["expiresAt"].timestamp() - (asked + lifetime)) < 5
    assert data["proxyEndpoint"] == f"https://{stack.aws.registry_host}"
    passwords = {ecr_password(first[0]["authorizationToken"]),
                 ecr_password(data["authorizationToken"])}  # fmt: skip
    assert len(passwords) == 2
    issued = {p["password"]: p for p in stack.aws.passwords()}
    for password in passwords:
        record = issued[password]
        assert (record["account"], record["region"]) == (stack.aws.account, stack.aws.region)
        assert record["role_arn"] == workload.role_arn
    assert stack.aws.authorizations(workload.role_arn) == 2
    leak_scan = set(stack.token_admin().issued("aws"))  # what a client must never log
    assert passwords | {credentials["SecretAccessKey"], credentials["SessionToken"]} <= leak_scan


def test_the_default_lifetime_is_twelve_hours(
    stack: LocalStack, credentials: CredentialsTypeDef
) -> None:
    data = ecr_client(stack, credentials).get_authorization_token()["authorizationData"][0]
    assert abs(data["expiresAt"].timestamp() - (time.time() + 12 * 3600)) < 5


def test_registry_ids_name_the_registries_asked_for(
    stack: LocalStack, credentials: CredentialsTypeDef, lifetime: int
) -> None:
    other = "210987654321"
    ecr = ecr_client(stack, credentials)
    data = ecr.get_authorization_token(registryIds=[stack.aws.account, other])
    endpoints = [d["proxyEndpoint"] for d in data["authorizationData"]]
    port = stack.aws.registry_host.rsplit(":", 1)[1]
    assert endpoints == [
        f"https://{account}.dkr.ecr.{stack.aws.region}.amazonaws.com:{port}"
        for account in (stack.aws.account, other)
    ]
    with pytest.raises(ClientError) as error:
        ecr.get_authorization_token(registryIds=["not-an-account"])
    assert error_code(error) == "ValidationException"


def test_calls_without_the_right_signature_are_refused(
    stack: LocalStack, credentials: CredentialsTypeDef, lifetime: int
) -> None:
    refused = {
        "InvalidSignatureException": {"aws_secret_access_key": "wrong" * 8},
        "UnrecognizedClientException": {"aws_access_key_id": "ASIAMADEUPKEY0000000"},
    }
    for code, changed in refused.items():
        with pytest.raises(ClientError) as error:
            ecr_client(stack, credentials, **changed).get_authorization_token()
        assert error_code(error) == code
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The right keys without the session token (no X-Amz-Security-Token header).
    with pytest.raises(ClientError) as error:
        ecr_client(stack, credentials, aws_session_token=None).get_authorization_token()
    assert error_code(error) == "UnrecognizedClientException"


def test_expired_credentials_are_refused(
    stack: LocalStack, workload: Workload, lifetime: int
) -> None:
    stack.aws.set_session_cap(1)
    credentials = assume(stack, workload, token_for(stack, workload))
    time.sleep(1.5)
    with pytest.raises(ClientError) as error:
        ecr_client(stack, credentials).get_authorization_token()
    assert error_code(error) == "ExpiredTokenException"


def test_faults_answer_as_ecr_does(
    stack: LocalStack, credentials: CredentialsTypeDef, lifetime: int
) -> None:
    ecr = ecr_client(stack, credentials)
    for mode, code, status in (
        ("throttle", "ThrottlingException", 400),
        ("unavailable", "ServiceUnavailableException", 503),
        ("server_error", "ServerException", 500),
    ):
        stack.aws.set_fault(mode, api="ecr", count=1)
        with pytest.raises(ClientError) as error:
            ecr.get_authorization_token()
        assert error_code(error) == code
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert ecr.get_authorization_token()["authorizationData"]
    stack.aws.set_fault("slow", api="ecr", count=1, delay=1.0)
    started = time.monotonic()
    assert ecr.get_authorization_token()["authorizationData"]  # late, but answered
    assert time.monotonic() - started >= 1.0
    assert stack.aws.admin().aws_faults() == {"mode": "none"}


# -- the ECR registry's token flow -------------------------------------------------------------


def _challenge(stack: LocalStack) -> dict[str, str]:
    """The registry's answer to an anonymous ``GET /v2/``: where to get a token, for what."""
    answer = httpx2.get(f"https://{stack.aws.registry.address}/v2/",
                        verify=pki.trust(stack.ca_file))  # fmt: skip
    assert answer.status_code == 401
    scheme, _, params = answer.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Bearer"
    return dict(p.split("=", 1) for p in params.replace('"', "").split(","))


def _registry_token(
    stack: LocalStack, password: str, *, service: str | None = None, username: str = "AWS"
) -> httpx2.Response:
    challenge = _challenge(stack)
    return httpx2.get(
        challenge["realm"],
        params={"service": service or challenge["service"], "scope": PULL_SCOPE},
        auth=(username, password),
        verify=pki.trust(stack.ca_file),
    )


def _manifest(stack: LocalStack, token: str) -> httpx2.Response:
    return httpx2.get(
        f"https://{stack.aws.registry.address}/v2/{TEST_IMAGE_REPOSITORY}/manifests/{TEST_IMAGE_TAG}",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.oci.image.manifest.v1+json",
        },
        verify=pki.trust(stack.ca_file),
    )


def test_an_issued_password_gets_a_pull_token_for_its_registry(
    stack: LocalStack, credentials: CredentialsTypeDef, lifetime: int
) -> None:
    assert _challenge(stack)["service"] == stack.aws.registry_host
    data = ecr_client(stack, credentials).get_authorization_token()["authorizationData"][0]
    answer = _registry_token(stack, ecr_password(data["authorizationToken"]))
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert answer.json()["expires_in"] <= lifetime
    assert _manifest(stack, token).status_code == 200
    assert _manifest(stack, "not-a-token").status_code == 401


def test_the_registry_refuses_passwords_it_should_not_take(
    stack: LocalStack, credentials: CredentialsTypeDef, lifetime: int
) -> None:
    ecr = ecr_client(stack, credentials)
    own = ecr_password(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])
    foreign = ecr_password(
        ecr.get_authorization_token(registryIds=["210987654321"])["authorizationData"][0][
            "authorizationToken"
        ]
    )
    port = stack.aws.registry_host.rsplit(":", 1)[1]
    other_region = f"{stack.aws.account}.dkr.ecr.eu-west-1.amazonaws.com:{port}"
    refusals = {
        "made up": _registry_token(stack, "bm90LWlzc3VlZA=="),
        "another account's": _registry_token(stack, foreign),
        "for another region's registry": _registry_token(stack, own, service=other_region),
        "with another username": _registry_token(stack, own, username="_token"),
    }
    for why, answer in refusals.items():
        assert answer.status_code == 401, why
    # The first registry (the Chainguard stand-in's) does not take an ECR password either.
    first = httpx2.get(
        stack.token_service.registry_realm,
        params={"service": stack.registry.host, "scope": PULL_SCOPE},
        auth=("AWS", own),
        verify=pki.trust(stack.ca_file),
    )
    assert first.status_code == 401


def test_an_expired_password_is_refused(
    stack: LocalStack, credentials: CredentialsTypeDef, lifetime: int
) -> None:
    stack.aws.set_ecr_token_lifetime(2)
    data = ecr_client(stack, credentials).get_authorization_token()["authorizationData"][0]
    password = ecr_password(data["authorizationToken"])
    answer = _registry_token(stack, password)
    assert answer.status_code == 200
    assert answer.json()["expires_in"] <= 2  # the registry token does not outlive it
    time.sleep(2.5)
    refused = _registry_token(stack, password)
    assert refused.status_code == 401
    assert "expired" in refused.json()["message"]
