"""``AwsStandIn``: what tests and the demo see of the local AWS (``LocalStack.aws``).

One https ``endpoint`` answers STS and ECR as AWS does (the token service's AWS front, with
moto behind it); the ECR registry of ``account`` in ``region`` is a distribution registry at
``registry_host`` holding the test image. IAM is written here, straight into moto, with
boto3: the cluster's OIDC provider and roles whose trust policy names ServiceAccounts.
Faults, counters and lifetimes go through the token service's admin API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devstack.registry import Registry
from devstack.tokenservice import TokenServiceAdmin
from devstack.tokenservice.aws.trust import web_identity_policy

if TYPE_CHECKING:
    from types_boto3_iam.client import IAMClient

ACCOUNT: Final = "123456789012"  # moto's default account
REGION: Final = "us-east-1"
STS_AUDIENCE: Final = "sts.amazonaws.com"


def ecr_host_name(account: str, region: str) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def issuer_host_path(issuer: str) -> str:
    return issuer.removeprefix("https://").rstrip("/")


class AwsStandIn:
    def __init__(
        self,
        *,
        endpoint: str,
        moto_url: str,
        registry: Registry,
        ca_file: Path,
        admin: TokenServiceAdmin,
        issuer: str,
        account: str = ACCOUNT,
        region: str = REGION,
    ) -> None:
        self.endpoint = endpoint
        self.moto_url = moto_url
        self.registry = registry
        self.ca_file = ca_file
        self.account = account
        self.region = region
        #: The cluster's service-account issuer, which ``create_oidc_provider`` registers.
        self.issuer = issuer
        self._admin = admin

    @property
    def registry_host(self) -> str:
        """``<account>.dkr.ecr.<region>.amazonaws.com:<port>``: resolves to 127.0.0.1 only
        while a node runs (it adds the line to /etc/hosts); ``registry.address`` always does."""
        return self.registry.host

    @property
    def image(self) -> str:
        return self.registry.image

    # -- IAM, in moto

    def iam(self, account: str | None = None) -> IAMClient:
        """An IAM client of moto's, acting in ``account`` (the stand-in's by default)."""
        import boto3  # NB: here, so importing the stack does not cost boto3's 0.3 s

        client: IAMClient = boto3.client(
            "iam",
            endpoint_url=self.moto_url,
            verify=str(self.ca_file),
            region_name=self.region,
            aws_access_key_id="stack-admin",
            aws_secret_access_key="stack-admin",  # moto checks no signature
        )
        acting_in = account or self.account

        def in_account(params: dict[str, Any], **_: Any) -> None:
            params["headers"]["x-moto-account-id"] = acting_in

        client.meta.events.register("before-call.*.*", in_account)
        return client

    def provider_arn(self, issuer: str | None = None, *, account: str | None = None) -> str:
        host_path = issuer_host_path(issuer or self.issuer)
        return f"arn:aws:iam::{account or self.account}:oidc-provider/{host_path}"

    def create_oidc_provider(
        self,
        issuer: str | None = None,
        *,
        client_ids: Sequence[str] = (STS_AUDIENCE,),
        account: str | None = None,
    ) -> str:
        """Register an IAM OIDC provider (by default the cluster's issuer, for ``sts``);
        returns its ARN."""
        created = self.iam(account).create_open_id_connect_provider(
            Url=issuer or self.issuer, ClientIDList=list(client_ids)
        )
        return created["OpenIDConnectProviderArn"]

    def register_cluster(self, jwks: Mapping[str, Any]) -> str:
        """The cluster's issuer as an IAM OIDC provider for ``sts.amazonaws.com``, with its keys
        given to the front, which cannot reach the issuer's discovery (as on KinD, whose issuer
        is an in-cluster name); returns the provider's ARN."""
        arn = self.create_oidc_provider()
        self._admin.set_aws_issuer_keys(self.issuer, jwks)
        return arn

    def trust_policy(
        self,
        subjects: str | Sequence[str],
        *,
        audience: str = STS_AUDIENCE,
        issuer: str | None = None,
        account: str | None = None,
    ) -> dict[str, Any]:
        """The trust policy EKS documents for IRSA (StringLike when a subject has a glob)."""
        listed = [subjects] if isinstance(subjects, str) else list(subjects)
        return web_identity_policy(
            self.provider_arn(issuer, account=account),
            issuer_host_path(issuer or self.issuer),
            subjects=listed,
            audience=audience,
        )

    def create_role(
        self,
        name: str,
        *,
        subjects: str | Sequence[str] | None = None,
        audience: str = STS_AUDIENCE,
        trust_policy: Mapping[str, Any] | None = None,
        max_session_duration: int = 3600,
        account: str | None = None,
    ) -> str:
        """A role that ServiceAccounts (``system:serviceaccount:<ns>:<name>``, StringLike globs
        allowed) of the cluster may assume with tokens for ``audience``, or whose trust policy
        is ``trust_policy`` as given; returns its ARN."""
        if trust_policy is None:
            if subjects is None:
                raise ValueError("give subjects or a trust_policy")
            trust_policy = self.trust_policy(subjects, audience=audience, account=account)
        created = self.iam(account).create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust_policy),
            MaxSessionDuration=max_session_duration,
        )
        return created["Role"]["Arn"]

    def set_trust_policy(
        self, name: str, policy: Mapping[str, Any], *, account: str | None = None
    ) -> None:
        self.iam(account).update_assume_role_policy(
            RoleName=name, PolicyDocument=json.dumps(policy)
        )

    # -- the front's knobs and counters

    def admin(self) -> TokenServiceAdmin:
        """The token service's admin client: ``set_aws_fault``, ``aws_stats``,
        ``aws_passwords``, ``set_ecr_token_lifetime``, ``set_aws_session_cap``..."""
        return self._admin

    def stats(self) -> dict[str, Any]:
        return self._admin.aws_stats()

    def assumed(self, role_arn: str, outcome: str = "ok") -> int:
        """AssumeRoleWithWebIdentity calls for ``role_arn`` with ``outcome`` (ok or error)."""
        per_role = self.stats()["assume_role_with_web_identity"].get(role_arn, {})
        return int(per_role.get(outcome, 0))

    def authorizations(self, role_arn: str, outcome: str = "ok") -> int:
        """GetAuthorizationToken calls signed by ``role_arn``'s credentials with ``outcome``."""
        per_role = self.stats()["get_authorization_token"].get(role_arn, {})
        return int(per_role.get(outcome, 0))

    def set_fault(
        self, mode: str, *, api: str | None = None, count: int | None = None, delay: float = 5.0
    ) -> None:
        self._admin.set_aws_fault(mode, api=api, count=count, delay=delay)

    def clear_faults(self) -> None:
        self._admin.clear_aws_faults()

    def passwords(self) -> list[dict[str, Any]]:
        return self._admin.aws_passwords()

    def set_ecr_token_lifetime(self, seconds: int | None) -> None:
        self._admin.set_ecr_token_lifetime(seconds)

    def set_session_cap(self, seconds: int | None) -> None:
        self._admin.set_aws_session_cap(seconds)

    def env(self) -> dict[str, str]:
        """For a shell or process that uses the stand-in (the stack's ``env()`` holds it)."""
        return {
            "PSU_AWS_ENDPOINT": self.endpoint,
            "PSU_ECR_REGISTRY": self.registry_host,
            "PSU_ECR_TEST_IMAGE": self.image,
        }
