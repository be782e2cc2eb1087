"""The AWS side of ECR pulls for a cluster: an IAM OIDC provider and the roles it lets assume.

AWS STS accepts a Kubernetes ServiceAccount token (`AssumeRoleWithWebIdentity`) when the
account has an IAM OIDC identity provider for the token's issuer, with the token's audience in
its client IDs, and the role's trust policy names that provider and the token's `sub` and
`aud`. Three AWS CLI commands set that up; this module plans them and renders them as a user
would type them:

1. `aws iam create-open-id-connect-provider --url <issuer> --client-id-list <audience>`, once
   per cluster and account. No `--thumbprint-list`: AWS has verified the issuer's TLS
   certificate against its own trusted root CAs since 2023, and the list is optional; it
   matters only for an issuer whose JWKS host has a certificate from a private CA.
2. `aws iam create-role` with the trust policy: `Principal.Federated` is the provider's ARN,
   `arn:aws:iam::<account>:oidc-provider/<issuer without https://>`, and the conditions
   `<that same host and path>:sub` and `:aud` are StringEquals, so one ServiceAccount of one
   cluster, with one audience, may assume the role.
3. `aws iam attach-role-policy` with AWS's managed `AmazonEC2ContainerRegistryReadOnly`.

NB: STS fetches `<issuer>/.well-known/openid-configuration` and the JWKS it names itself, over
public HTTPS, when it checks a token. Unlike a Chainguard identity, an IAM OIDC provider
cannot carry the keys: a cluster whose issuer AWS cannot reach (KinD, kubeadm, k3s) must first
publish them (`private_issuer_warning`).

Pure: no I/O. The caller fetches the issuer (`discovery`) and prints the result.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from pull_secret_updater.providers.ecr import DEFAULT_AUDIENCE
from pull_secret_updater.tools.identity import IssuerClass, check_target, service_account_subject

__all__ = [
    "ACCOUNT_PLACEHOLDER",
    "PULL_ACTIONS",
    "READ_ONLY_POLICY",
    "AwsPlan",
    "OidcProviderPlan",
    "RolePlan",
    "check_account_id",
    "check_role_name",
    "narrower_policy",
    "plan_aws",
    "private_issuer_warning",
    "provider_path",
]

#: Written where the account ID goes when none was given; the commands fail until it is set.
ACCOUNT_PLACEHOLDER = "<ACCOUNT_ID>"
#: AWS's managed policy for pulling from ECR (and listing and describing repositories).
READ_ONLY_POLICY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
#: What pulling needs, no more: the password, then the manifests and the layers.
PULL_ACTIONS = ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
#: Where AWS documents running the OIDC discovery of a self-managed cluster on S3.
SELF_HOSTED_DOC = (
    "https://github.com/aws/amazon-eks-pod-identity-webhook/blob/master/SELF_HOSTED_SETUP.md"
)

_ACCOUNT = re.compile(r"[0-9]{12}")
# IAM role names: letters, digits and + = , . @ _ -, 64 characters at most.
_ROLE_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
_CONTINUATION = " \\\n    "


def check_account_id(account: str) -> str:
    """`account` if it is a 12-digit AWS account ID; raises ValueError otherwise."""
    if not _ACCOUNT.fullmatch(account):
        raise ValueError(f"{account!r} is not an AWS account ID (12 digits)")
    return account


def check_role_name(name: str) -> str:
    """`name` if IAM accepts it as a role name; raises ValueError naming the rule."""
    if not _ROLE_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an IAM role name: at most 64 letters, digits and + = , . @ _ -"
        )
    return name


def provider_path(issuer: str) -> str:
    """The issuer as IAM names its OIDC provider, in the provider's ARN and in the trust
    policy's condition keys: without `https://`, character for character otherwise."""
    return issuer.strip().removeprefix("https://")


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcProviderPlan:
    """The IAM OIDC provider for the cluster's issuer, trusting tokens of `audiences`."""

    issuer: str
    audiences: tuple[str, ...]

    def command(self) -> str:
        return _CONTINUATION.join(
            [
                "aws iam create-open-id-connect-provider",
                f"--url {shlex.quote(self.issuer)}",
                f"--client-id-list {' '.join(shlex.quote(a) for a in self.audiences)}",
            ]
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RolePlan:
    """A role that one ServiceAccount's tokens (`subject`, with `audience`) may assume."""

    name: str
    account: str
    issuer: str
    subject: str
    audience: str

    @property
    def provider_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:oidc-provider/{provider_path(self.issuer)}"

    @property
    def arn(self) -> str:
        """The role's ARN, as a Secret's role-arn annotation names it."""
        return f"arn:aws:iam::{self.account}:role/{self.name}"

    def trust_policy(self) -> dict[str, object]:
        path = provider_path(self.issuer)
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": self.provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {f"{path}:sub": self.subject, f"{path}:aud": self.audience}
                    },
                }
            ],
        }

    def commands(self) -> list[str]:
        """`create-role` with the trust policy inline (as JSON, single-quoted), then
        `attach-role-policy`."""
        document = json.dumps(self.trust_policy(), indent=2)
        name = shlex.quote(self.name)
        return [
            _CONTINUATION.join(
                [
                    "aws iam create-role",
                    f"--role-name {name}",
                    f"--assume-role-policy-document {shlex.quote(document)}",
                ]
            ),
            _CONTINUATION.join(
                [
                    "aws iam attach-role-policy",
                    f"--role-name {name}",
                    f"--policy-arn {READ_ONLY_POLICY}",
                ]
            ),
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class AwsPlan:
    """Everything to run: the OIDC provider once, then each role."""

    provider: OidcProviderPlan
    roles: tuple[RolePlan, ...]

    def commands(self) -> list[str]:
        return [self.provider.command(), *(c for role in self.roles for c in role.commands())]

    def script(self) -> str:
        """The commands, one paragraph each, as they are printed."""
        return "\n\n".join(self.commands())


def plan_aws(
    *,
    issuer: str,
    targets: Sequence[tuple[str, str, str]],
    account: str | None = None,
    audience: str = DEFAULT_AUDIENCE,
) -> AwsPlan:
    """The OIDC provider for `issuer` and one role per `(namespace, service_account, role
    name)` target, each trusting that ServiceAccount's tokens with `audience`.

    Without `account` the ARNs carry `ACCOUNT_PLACEHOLDER`. Raises ValueError for a bad name,
    account ID or audience.
    """
    if account is not None:
        check_account_id(account)
    if not audience.strip() or any(c.isspace() for c in audience):
        raise ValueError("the audience must be one word")
    roles: list[RolePlan] = []
    for namespace, service_account, name in targets:
        check_target(namespace=namespace, service_account=service_account)
        roles.append(
            RolePlan(
                name=check_role_name(name),
                account=account or ACCOUNT_PLACEHOLDER,
                issuer=issuer,
                subject=service_account_subject(namespace, service_account),
                audience=audience,
            )
        )
    if len({role.name for role in roles}) != len(roles):
        raise ValueError("two roles would have the same name")
    return AwsPlan(
        provider=OidcProviderPlan(issuer=issuer, audiences=(audience,)), roles=tuple(roles)
    )


def narrower_policy() -> dict[str, object]:
    """An identity policy that allows pulling and nothing else, from every repository (narrow
    `Resource` of the second statement to repository ARNs to allow fewer)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": PULL_ACTIONS[0], "Resource": "*"},
            {"Effect": "Allow", "Action": list(PULL_ACTIONS[1:]), "Resource": "*"},
        ],
    }


def private_issuer_warning(issuer: str, issuer_class: IssuerClass) -> str | None:
    """What to tell the user when AWS cannot be expected to fetch the issuer's keys; None for
    a public issuer."""
    if issuer_class.public:
        return None
    return (
        f"warning: AWS cannot reach this issuer ({issuer_class.label}). AWS STS must fetch "
        f"{issuer.rstrip('/')}/.well-known/openid-configuration and the JWKS it names over "
        "public HTTPS to check the tokens, and an IAM OIDC provider cannot carry the keys "
        "instead: with this issuer every exchange fails (InvalidIdentityToken). Use a cluster "
        "whose issuer is public (EKS), or publish the discovery document and JWKS at a public "
        "HTTPS URL (an S3 bucket or a static site), make that URL the API server's "
        "--service-account-issuer (with --service-account-jwks-uri), and run this command "
        f"again: {SELF_HOSTED_DOC}"
    )
