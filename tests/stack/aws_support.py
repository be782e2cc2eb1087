"""The AWS stand-in as the AWS SDK sees it: boto3 clients on ``stack.aws.endpoint`` trusting
the stack's CA, ServiceAccounts with roles, and their tokens.

The clients never retry (``total_max_attempts=1``), so a fault injected for one call is seen
by exactly that call, and an error is the stand-in's answer, not the last of a few.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import jwt
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from devstack.aws.standin import STS_AUDIENCE
from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.stack import LocalStack
from tests.helpers import unique

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient
    from types_boto3_sts.client import STSClient
    from types_boto3_sts.type_defs import CredentialsTypeDef

NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1})


def sts_client(stack: LocalStack) -> STSClient:
    # NB: AssumeRoleWithWebIdentity is unsigned; boto3 still wants some credentials to exist.
    client: STSClient = boto3.client(
        "sts",
        endpoint_url=stack.aws.endpoint,
        verify=str(stack.ca_file),
        region_name=stack.aws.region,
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
        config=NO_RETRIES,
    )
    return client


def ecr_client(
    stack: LocalStack, credentials: CredentialsTypeDef, *, region: str | None = None, **changed: Any
) -> ECRClient:
    """An ECR client signing with ``credentials`` (``changed`` overrides one of boto3's
    credential arguments: ``aws_secret_access_key``, ``aws_session_token``...)."""
    arguments: dict[str, Any] = {
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
        **changed,
    }
    client: ECRClient = boto3.client(
        "ecr",
        endpoint_url=stack.aws.endpoint,
        verify=str(stack.ca_file),
        region_name=region or stack.aws.region,
        config=NO_RETRIES,
        **arguments,
    )
    return client


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


@dataclass(frozen=True)
class Workload:
    """A ServiceAccount and a role that trusts it."""

    namespace: str
    service_account: str
    role_arn: str

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def service_account(stack: LocalStack, prefix: str) -> tuple[str, str]:
    namespace = unique(prefix)
    stack.control_plane.kubectl("create", "namespace", namespace)
    stack.control_plane.kubectl("create", "serviceaccount", "app", "-n", namespace)
    return namespace, "app"


def new_workload(stack: LocalStack, prefix: str = "aws") -> Workload:
    namespace, name = service_account(stack, prefix)
    arn = stack.aws.create_role(
        unique("role"), subjects=f"system:serviceaccount:{namespace}:{name}"
    )
    return Workload(namespace, name, arn)


def token_for(stack: LocalStack, workload: Workload, *, audience: str = STS_AUDIENCE) -> str:
    """A real TokenRequest token of the workload's ServiceAccount."""
    return stack.control_plane.service_account_token(
        workload.namespace, workload.service_account, audience=audience, seconds=600
    )


def cluster_signed(stack: LocalStack, claims: dict[str, Any], *, kid_from: str) -> str:
    """A token signed with the cluster's own service-account key (as only the API server
    could), with the key id of the real token ``kid_from``."""
    key = serialization.load_pem_private_key(
        (stack.control_plane.pki_dir / "sa.key").read_bytes(), password=None
    )
    kid = jwt.get_unverified_header(kid_from)["kid"]
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})  # type: ignore[arg-type]


def claims_of(workload: Workload, **changed: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": SERVICE_ACCOUNT_ISSUER,
        "sub": workload.subject,
        "aud": [STS_AUDIENCE],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    return {**claims, **changed}


def assume(stack: LocalStack, workload: Workload, token: str, **extra: Any) -> CredentialsTypeDef:
    answer = sts_client(stack).assume_role_with_web_identity(
        RoleArn=workload.role_arn, RoleSessionName="psu-test", WebIdentityToken=token, **extra
    )
    return answer["Credentials"]


def ecr_password(authorization_token: str) -> str:
    user, _, password = base64.b64decode(authorization_token).decode().partition(":")
    assert user == "AWS"
    return password
