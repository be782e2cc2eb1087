"""moto's server behind the front: IAM (OIDC providers, roles and their trust policies), STS
(the temporary credentials) and ECR (the answer's shape), through boto3.

boto3 blocks, so every call runs in a thread. It is imported there too, and warmed up
(``warm_up``) once the service is serving: importing it and loading its models takes longer
than the rest of the service's start. moto serves every account: the
``x-moto-account-id`` header picks the one a call acts in (moto checks no signature, so the
static credentials here only have to look like credentials).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import botocore.exceptions

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient
    from types_boto3_iam.client import IAMClient
    from types_boto3_sts.client import STSClient

_STATIC = {"aws_access_key_id": "moto-front", "aws_secret_access_key": "moto-front"}


@dataclass(frozen=True)
class Role:
    arn: str
    trust_policy: dict[str, Any]
    max_session_duration: int


@dataclass(frozen=True)
class MotoCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    assumed_role_arn: str
    assumed_role_id: str


class MotoBackend:
    def __init__(self, url: str, *, ca_file: str | None, region: str) -> None:
        self._url = url
        self._verify: str | bool = ca_file or True
        self._region = region
        self._clients: dict[tuple[str, str | None, str], Any] = {}
        self._lock = threading.Lock()  # boto3's default session makes clients one at a time

    def _client(self, service: str, account: str | None, region: str | None = None) -> Any:
        """A client acting in ``account`` (moto's default when None), made once and kept:
        boto3 clients may be shared between threads."""
        key = (service, account, region or self._region)
        with self._lock:
            return self._clients.get(key) or self._new_client(key)

    def _new_client(self, key: tuple[str, str | None, str]) -> Any:
        import boto3
        import botocore.config

        service, account, region = key
        client = boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self._url,
            verify=self._verify,
            region_name=region,
            config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=5),
            **_STATIC,
        )
        if account is not None:

            def in_account(params: dict[str, Any], **_: Any) -> None:
                params["headers"]["x-moto-account-id"] = account

            client.meta.events.register("before-call.*.*", in_account)
        self._clients[key] = client
        return client

    def warm_up(self) -> None:
        """Make the clients the first calls need (in a thread: it blocks for a while)."""
        for service in ("sts", "iam", "ecr"):
            self._client(service, None)

    async def _run(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(functools.partial(call, *args, **kwargs))

    # -- IAM

    def _oidc_client_ids(self, account: str, provider_arn: str) -> list[str] | None:
        iam: IAMClient = self._client("iam", account)
        try:
            found = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
        except iam.exceptions.NoSuchEntityException:
            return None
        return list(found.get("ClientIDList", []))

    async def oidc_client_ids(self, account: str, provider_arn: str) -> list[str] | None:
        """The client IDs (audiences) of an IAM OIDC provider; None when there is none."""
        result: list[str] | None = await self._run(self._oidc_client_ids, account, provider_arn)
        return result

    def _role(self, account: str, name: str) -> Role | None:
        iam: IAMClient = self._client("iam", account)
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            return None
        policy: Any = role.get("AssumeRolePolicyDocument") or {}
        return Role(
            arn=role["Arn"],
            trust_policy=dict(policy) if isinstance(policy, dict) else {},
            max_session_duration=int(role.get("MaxSessionDuration") or 3600),
        )

    async def role(self, account: str, name: str) -> Role | None:
        result: Role | None = await self._run(self._role, account, name)
        return result

    # -- STS

    def _assume(
        self, role_arn: str, session_name: str, token: str, duration: int
    ) -> MotoCredentials:
        sts: STSClient = self._client("sts", None)
        answer = sts.assume_role_with_web_identity(
            RoleArn=role_arn,
            RoleSessionName=session_name,
            WebIdentityToken=token,
            DurationSeconds=duration,
        )
        credentials = answer["Credentials"]
        user = answer["AssumedRoleUser"]
        return MotoCredentials(
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
            assumed_role_arn=user["Arn"],
            assumed_role_id=user["AssumedRoleId"],
        )

    async def assume(
        self, role_arn: str, session_name: str, token: str, duration: int
    ) -> MotoCredentials:
        result: MotoCredentials = await self._run(
            self._assume, role_arn, session_name, token, duration
        )
        return result

    # -- ECR

    def _proxy_endpoints(self, account: str, region: str, registry_ids: list[str]) -> list[str]:
        ecr: ECRClient = self._client("ecr", account, region)
        answer = (
            ecr.get_authorization_token(registryIds=registry_ids)
            if registry_ids
            else ecr.get_authorization_token()
        )
        return [data["proxyEndpoint"] for data in answer["authorizationData"]]

    async def proxy_endpoints(
        self, account: str, region: str, registry_ids: list[str]
    ) -> list[str]:
        """The ``proxyEndpoint`` of each registry (the caller's own when none is named)."""
        result: list[str] = await self._run(self._proxy_endpoints, account, region, registry_ids)
        return result


MotoError = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
