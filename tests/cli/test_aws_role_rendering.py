"""The AWS CLI commands printed for ECR pulls: as the shell splits them, they are the three IAM
calls with a trust policy that lets one ServiceAccount of one cluster, with one audience, assume
the role, and nothing else."""

from __future__ import annotations

import json
import shlex

import pytest

from pull_secret_updater.providers.ecr.spec import ROLE_ARN_PATTERN
from pull_secret_updater.tools.awsrole import (
    ACCOUNT_PLACEHOLDER,
    READ_ONLY_POLICY,
    AwsPlan,
    narrower_policy,
    plan_aws,
    private_issuer_warning,
    provider_path,
)
from pull_secret_updater.tools.identity import classify_issuer

KIND = "https://kubernetes.default.svc.cluster.local"
EKS = "https://oidc.eks.us-east-1.amazonaws.com/id/ABC123"
AKS = "https://eastus.oic.prod-aks.azure.com/tenant-id/cluster-guid/"
ACCOUNT = "111122223333"
CONTROLLER = ("pull-secret-updater", "controller", "eks-pull-secrets")


def plan(**overrides: object) -> AwsPlan:
    arguments: dict[str, object] = {"issuer": EKS, "targets": [CONTROLLER], "account": ACCOUNT}
    arguments.update(overrides)
    return plan_aws(**arguments)  # type: ignore[arg-type]


def words(command: str) -> list[str]:
    """The command as the shell would split it (line continuations included)."""
    return shlex.split(command.replace("\\\n", " "))


def call(command: str) -> tuple[list[str], dict[str, str]]:
    """`aws iam <operation>` and its options (each option takes one value here)."""
    split = words(command)
    assert split[:2] == ["aws", "iam"]
    options = split[3:]
    assert len(options) % 2 == 0, options
    values = dict(zip(options[::2], options[1::2], strict=True))
    assert all(key.startswith("--") for key in values)
    return split[:3], {key.removeprefix("--"): value for key, value in values.items()}


def test_three_calls_in_order_each_a_paragraph_of_continued_lines() -> None:
    script = plan().script()
    commands = script.split("\n\n")

    assert [call(c)[0][2] for c in commands] == [
        "create-open-id-connect-provider",
        "create-role",
        "attach-role-policy",
    ]
    for command in commands:
        lines = command.splitlines()
        assert lines[0].startswith("aws iam ")
    # Every line but a paragraph's last ends in a continuation, outside the JSON document.
    assert commands[0].splitlines()[0].endswith(" \\")
    assert commands == plan().commands()


def test_oidc_provider_is_the_issuer_exactly_with_the_audience_as_client_id() -> None:
    _, options = call(plan(issuer=AKS).commands()[0])

    assert options == {"url": AKS, "client-id-list": "sts.amazonaws.com"}
    assert "thumbprint" not in plan().script()


def test_trust_policy_lets_one_service_account_with_one_audience_assume_the_role() -> None:
    _, options = call(plan().commands()[1])

    assert options["role-name"] == "eks-pull-secrets"
    assert json.loads(options["assume-role-policy-document"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {
                    "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/"
                    "oidc.eks.us-east-1.amazonaws.com/id/ABC123"
                },
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        "oidc.eks.us-east-1.amazonaws.com/id/ABC123:sub": (
                            "system:serviceaccount:pull-secret-updater:controller"
                        ),
                        "oidc.eks.us-east-1.amazonaws.com/id/ABC123:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


def test_role_gets_the_managed_read_only_policy() -> None:
    _, options = call(plan().commands()[2])

    assert options == {"role-name": "eks-pull-secrets", "policy-arn": READ_ONLY_POLICY}
    assert READ_ONLY_POLICY == "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"


def test_the_roles_arn_is_one_a_secret_may_name() -> None:
    (role,) = plan().roles

    assert role.arn == f"arn:aws:iam::{ACCOUNT}:role/eks-pull-secrets"
    assert ROLE_ARN_PATTERN.fullmatch(role.arn)


def test_without_an_account_the_placeholder_stays_inside_quotes() -> None:
    script = plan(account=None).script()
    _, options = call(plan(account=None).commands()[1])

    document = json.loads(options["assume-role-policy-document"])
    principal = document["Statement"][0]["Principal"]["Federated"]
    assert principal.startswith(f"arn:aws:iam::{ACCOUNT_PLACEHOLDER}:oidc-provider/")
    # Outside quotes, the shell would read < as a redirection.
    for line in script.splitlines():
        if ACCOUNT_PLACEHOLDER in line:
            assert line.strip().startswith('"'), line


def test_one_role_per_namespace_with_its_own_subject_and_one_oidc_provider() -> None:
    targets = [
        ("team-a", "pull-secret-updater", "kind-pull-secrets-team-a"),
        ("b", "pull-secret-updater", "kind-pull-secrets-b"),
    ]
    commands = plan(issuer=KIND, targets=targets).commands()

    assert [call(c)[0][2] for c in commands].count("create-open-id-connect-provider") == 1
    roles = [call(c)[1] for c in commands if call(c)[0][2] == "create-role"]
    assert [r["role-name"] for r in roles] == ["kind-pull-secrets-team-a", "kind-pull-secrets-b"]
    subjects = [
        json.loads(r["assume-role-policy-document"])["Statement"][0]["Condition"]["StringEquals"][
            "kubernetes.default.svc.cluster.local:sub"
        ]
        for r in roles
    ]
    assert subjects == [
        "system:serviceaccount:team-a:pull-secret-updater",
        "system:serviceaccount:b:pull-secret-updater",
    ]


def test_a_workloads_audience_is_the_client_id_and_the_aud_condition() -> None:
    commands = plan(
        targets=[("team-a", "app", "eks-team-a-app")], audience="pull.example"
    ).commands()

    assert call(commands[0])[1]["client-id-list"] == "pull.example"
    condition = json.loads(call(commands[1])[1]["assume-role-policy-document"])["Statement"][0][
        "Condition"
    ]["StringEquals"]
    assert condition["oidc.eks.us-east-1.amazonaws.com/id/ABC123:aud"] == "pull.example"


def test_provider_path_keeps_the_issuer_character_for_character() -> None:
    assert provider_path(EKS) == "oidc.eks.us-east-1.amazonaws.com/id/ABC123"
    assert provider_path(AKS) == "eastus.oic.prod-aks.azure.com/tenant-id/cluster-guid/"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"account": "1234"}, "not an AWS account ID"),
        ({"targets": [("pull-secret-updater", "controller", "a" * 65)]}, "not an IAM role name"),
        ({"targets": [("pull-secret-updater", "controller", "has space")]}, "not an IAM role"),
        ({"targets": [("Bad_NS", "controller", "r")]}, "not a valid namespace name"),
        ({"targets": [CONTROLLER, CONTROLLER]}, "same name"),
        ({"audience": "two words"}, "one word"),
    ],
    ids=["account", "long-name", "bad-name", "namespace", "twice", "audience"],
)
def test_bad_input_is_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(**overrides)


def test_narrower_policy_allows_pulling_only() -> None:
    assert narrower_policy() == {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": "*",
            },
        ],
    }


def test_a_private_issuer_gets_a_warning_that_aws_must_reach_it() -> None:
    warning = private_issuer_warning(KIND, classify_issuer(KIND))

    assert warning is not None
    assert f"{KIND}/.well-known/openid-configuration" in warning
    assert "public HTTPS" in warning
    assert "EKS" in warning
    assert "SELF_HOSTED_SETUP.md" in warning
    assert private_issuer_warning(EKS, classify_issuer(EKS)) is None
    private = "https://10.0.0.1:6443"
    assert private_issuer_warning(private, classify_issuer(private)) is not None
