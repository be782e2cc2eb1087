"""The AWS stand-in's STS, as boto3 sees it: AssumeRoleWithWebIdentity with real Kubernetes
tokens succeeds only when AWS would let it, and fails with the code AWS answers otherwise."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from xml.etree import ElementTree

import httpx2
import jwt
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import pki
from devstack.aws.standin import STS_AUDIENCE
from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.stack import LocalStack
from tests.helpers import unique
from tests.stack.aws_support import (
    Workload,
    assume,
    claims_of,
    cluster_signed,
    error_code,
    new_workload,
    service_account,
    sts_client,
    token_for,
)

pytestmark = pytest.mark.stack


@pytest.fixture
def workload(stack: LocalStack) -> Workload:
    return new_workload(stack)


def test_a_cluster_token_of_the_trusted_service_account_assumes_the_role(
    stack: LocalStack, workload: Workload
) -> None:
    token = token_for(stack, workload)
    before = stack.aws.assumed(workload.role_arn)
    answer = sts_client(stack).assume_role_with_web_identity(
        RoleArn=workload.role_arn, RoleSessionName="psu-test", WebIdentityToken=token
    )
    credentials = answer["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA")
    assert credentials["SecretAccessKey"]
    assert credentials["SessionToken"]
    left = credentials["Expiration"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=3540) < left <= dt.timedelta(seconds=3600)
    assert answer["SubjectFromWebIdentityToken"] == workload.subject
    assert answer["Audience"] == STS_AUDIENCE
    assert answer["Provider"] == SERVICE_ACCOUNT_ISSUER
    role_name = workload.role_arn.rsplit("/", 1)[1]
    assert answer["AssumedRoleUser"]["Arn"] == (
        f"arn:aws:sts::{stack.aws.account}:assumed-role/{role_name}/psu-test"
    )
    assert stack.aws.assumed(workload.role_arn) == before + 1


def test_duration_seconds_sets_the_expiry_within_the_roles_maximum(
    stack: LocalStack, workload: Workload
) -> None:
    token = token_for(stack, workload)
    credentials = assume(stack, workload, token, DurationSeconds=900)
    left = credentials["Expiration"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=840) < left <= dt.timedelta(seconds=900)
    with pytest.raises(ClientError) as error:  # above the role's MaxSessionDuration (1 h)
        assume(stack, workload, token, DurationSeconds=7200)
    assert error_code(error) == "ValidationError"


def test_errors_have_the_query_apis_xml_shape(stack: LocalStack, workload: Workload) -> None:
    # boto3 refuses to send a DurationSeconds below 900 itself: sent by hand here.
    form = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": workload.role_arn,
        "RoleSessionName": "psu-test",
        "WebIdentityToken": token_for(stack, workload),
        "DurationSeconds": "899",
    }
    answer = httpx2.post(stack.aws.endpoint, data=form, verify=pki.trust(stack.ca_file))
    assert answer.status_code == 400
    error = ElementTree.fromstring(answer.text)
    ns = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
    assert error.findtext("sts:Error/sts:Type", namespaces=ns) == "Sender"
    assert error.findtext("sts:Error/sts:Code", namespaces=ns) == "ValidationError"
    assert error.findtext("sts:RequestId", namespaces=ns)
    # The Query API also takes its parameters in a GET's URL.
    answer = httpx2.get(stack.aws.endpoint, params={**form, "DurationSeconds": "900"},
                        verify=pki.trust(stack.ca_file))  # fmt: skip
    assert answer.status_code == 200
    result = ElementTree.fromstring(answer.text)
    path = "sts:AssumeRoleWithWebIdentityResult/sts:Credentials/sts:AccessKeyId"
    assert result.findtext(path, namespaces=ns)


def test_a_role_may_allow_longer_sessions(stack: LocalStack) -> None:
    namespace, name = service_account(stack, "aws-long")
    subject = f"system:serviceaccount:{namespace}:{name}"
    arn = stack.aws.create_role(unique("long"), subjects=subject, max_session_duration=43200)
    workload = Workload(namespace, name, arn)
    credentials = assume(stack, workload, token_for(stack, workload), DurationSeconds=43200)
    left = credentials["Expiration"] - dt.datetime.now(dt.UTC)
    assert left > dt.timedelta(hours=11, minutes=59)


def test_subjects_may_be_globs_and_lists(stack: LocalStack) -> None:
    first, _ = service_account(stack, "aws-glob")
    second, _ = service_account(stack, "aws-glob")
    other, _ = service_account(stack, "aws-other")
    glob = stack.aws.create_role(unique("glob"), subjects="system:serviceaccount:aws-glob-*:app")
    listed = stack.aws.create_role(
        unique("list"), subjects=[f"system:serviceaccount:{ns}:app" for ns in (first, other)]
    )
    for namespace, arn, allowed in (
        (first, glob, True), (second, glob, True), (other, glob, False),
        (first, listed, True), (other, listed, True), (second, listed, False),
    ):  # fmt: skip
        workload = Workload(namespace, "app", arn)
        token = token_for(stack, workload)
        if allowed:
            assert assume(stack, workload, token)["AccessKeyId"]
        else:
            with pytest.raises(ClientError) as error:
                assume(stack, workload, token)
            assert error_code(error) == "AccessDenied"


def test_tokens_aws_would_refuse_are_refused_with_its_codes(
    stack: LocalStack, workload: Workload
) -> None:
    real = token_for(stack, workload)
    other_namespace, _ = service_account(stack, "aws-stranger")
    stranger = Workload(other_namespace, "app", workload.role_arn)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(real)["kid"]
    refused = {
        "wrong audience": (token_for(stack, workload, audience="other"), "InvalidIdentityToken"),
        "another subject": (token_for(stack, stranger), "AccessDenied"),
        "forged": (
            jwt.encode(claims_of(workload), forger, algorithm="RS256", headers={"kid": kid}),
            "InvalidIdentityToken",
        ),
        "expired": (
            cluster_signed(stack, claims_of(workload, exp=int(time.time()) - 60), kid_from=real),
            "ExpiredTokenException",
        ),
        "unregistered issuer": (
            stack.token_admin().mint_token(sub=workload.subject, aud=STS_AUDIENCE),
            "InvalidIdentityToken",
        ),
        "not a JWT": ("x" * 40, "InvalidIdentityToken"),
    }
    errors = stack.aws.assumed(workload.role_arn, "error")
    for why, (token, code) in refused.items():
        with pytest.raises(ClientError) as error:
            assume(stack, workload, token)
        assert error_code(error) == code, why
        status = error.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status == (403 if code == "AccessDenied" else 400), why
    assert stack.aws.assumed(workload.role_arn, "error") == errors + len(refused)


def test_a_role_that_does_not_exist_is_refused_as_not_authorized(
    stack: LocalStack, workload: Workload
) -> None:
    missing = Workload(
        workload.namespace, workload.service_account,
        f"arn:aws:iam::{stack.aws.account}:role/{unique('missing')}",
    )  # fmt: skip
    with pytest.raises(ClientError) as error:
        assume(stack, missing, token_for(stack, workload))
    assert error_code(error) == "AccessDenied"
    assert "sts:AssumeRoleWithWebIdentity" in error.value.response["Error"]["Message"]


def test_hand_written_trust_policies_are_judged_as_written(
    stack: LocalStack, workload: Workload
) -> None:
    token = token_for(stack, workload)
    name = workload.role_arn.rsplit("/", 1)[1]
    allowing = stack.aws.trust_policy(workload.subject)
    denying = {
        **allowing,
        "Statement": [*allowing["Statement"], {**allowing["Statement"][0], "Effect": "Deny"}],
    }
    other_provider = stack.aws.trust_policy(workload.subject, issuer="https://elsewhere.example")
    wrong_audience = stack.aws.trust_policy(workload.subject, audience="something-else")
    for policy in (denying, other_provider, wrong_audience):
        stack.aws.set_trust_policy(name, policy)
        with pytest.raises(ClientError) as error:
            assume(stack, workload, token)
        assert error_code(error) == "AccessDenied"
    stack.aws.set_trust_policy(name, allowing)
    assert assume(stack, workload, token)["AccessKeyId"]


def test_an_issuer_without_an_oidc_provider_in_the_roles_account_is_refused(
    stack: LocalStack, workload: Workload
) -> None:
    # The same trust policy in another account (of this test's own), with no provider yet.
    elsewhere = f"{secrets.randbelow(10**12):012d}"
    policy = stack.aws.trust_policy(workload.subject, account=elsewhere)
    arn = stack.aws.create_role(unique("elsewhere"), trust_policy=policy, account=elsewhere)
    with pytest.raises(ClientError) as error:
        assume(stack, Workload(workload.namespace, "app", arn), token_for(stack, workload))
    assert error_code(error) == "InvalidIdentityToken"
    stack.aws.create_oidc_provider(account=elsewhere)
    assert assume(stack, Workload(workload.namespace, "app", arn), token_for(stack, workload))


def test_faults_answer_as_aws_does_then_clear(stack: LocalStack, workload: Workload) -> None:
    token = token_for(stack, workload)
    try:
        stack.aws.set_fault("throttle", api="sts", count=2)
        for _ in range(2):
            with pytest.raises(ClientError) as error:
                assume(stack, workload, token)
            assert error_code(error) == "Throttling"
            assert error.value.response["Error"]["Message"] == "Rate exceeded"
        assert assume(stack, workload, token)["AccessKeyId"]
        stack.aws.set_fault("unavailable", api="sts")
        for _ in range(3):
            with pytest.raises(ClientError) as error:
                assume(stack, workload, token)
            assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        stack.aws.clear_faults()
    assert assume(stack, workload, token)["AccessKeyId"]
