"""identity-command --provider ecr, run in-process against an API server that is a function.

The commands go to stdout and nothing else does: pasted into bash they are exactly the IAM
calls planned, and the AWS CLI itself (where installed) turns them into the IAM API requests
AWS documents, here sent to a recording endpoint. What to know about them goes to stderr: what
was recognised, the account placeholder, the narrower policy, what to annotate, and for an
issuer AWS cannot reach, a warning.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from pull_secret_updater.cli import main
from pull_secret_updater.providers.ecr.spec import REGISTRIES, ROLE_ARN
from pull_secret_updater.tools.awsrole import READ_ONLY_POLICY
from tests.cli.awscli import aws_calls, options
from tests.cli.identity_support import EKS, KIND, identity_command

EKS_PATH = EKS.removeprefix("https://")
ACCOUNT = "111122223333"
PROG = "pull-secret-updater identity-command"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    return identity_command(capsys, "ecr", *args)


def trust_policy(argv: list[str]) -> dict[str, object]:
    return dict(json.loads(options(argv)["assume-role-policy-document"]))


def condition(argv: list[str]) -> dict[str, str]:
    statement = trust_policy(argv)["Statement"][0]  # type: ignore[index]
    return dict(statement["Condition"]["StringEquals"])


def test_stdout_is_the_three_iam_calls_for_the_controller(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = run(capsys, "--account-id", ACCOUNT)

    provider, role, attach = aws_calls(out)
    assert provider[:2] == ["iam", "create-open-id-connect-provider"]
    assert options(provider) == {"url": EKS, "client-id-list": "sts.amazonaws.com"}
    assert role[:2] == ["iam", "create-role"]
    assert options(role)["role-name"] == "eks-pull-secrets"
    statement = trust_policy(role)["Statement"][0]  # type: ignore[index]
    assert statement["Principal"] == {
        "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{EKS_PATH}"
    }
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert condition(role) == {
        f"{EKS_PATH}:sub": "system:serviceaccount:pull-secret-updater:controller",
        f"{EKS_PATH}:aud": "sts.amazonaws.com",
    }
    assert attach[:2] == ["iam", "attach-role-policy"]
    assert options(attach) == {"role-name": "eks-pull-secrets", "policy-arn": READ_ONLY_POLICY}


def test_notes_go_to_stderr_and_name_the_role_to_annotate(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, notes = run(capsys, "--account-id", ACCOUNT, "--role-name", "puller")

    assert "recognised: EKS cluster" in notes
    assert f"{ROLE_ARN}=arn:aws:iam::{ACCOUNT}:role/puller" in notes
    assert f"{REGISTRIES}={ACCOUNT}.dkr.ecr.<region>.amazonaws.com" in notes
    assert "--thumbprint-list" in notes
    assert "ecr:GetAuthorizationToken, ecr:BatchGetImage, ecr:GetDownloadUrlForLayer" in notes
    assert "aws iam put-role-policy --role-name puller" in notes
    assert "<ACCOUNT_ID>" not in notes
    assert "warning" not in notes


def test_a_long_arn_in_the_notes_is_never_broken(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    name = "r" * 64
    assert main(["identity-command", "--provider", "ecr", "--account-id", ACCOUNT,
                 "--role-name", name]) == 0  # fmt: skip

    annotation = f"{ROLE_ARN}=arn:aws:iam::{ACCOUNT}:role/{name}"
    assert len(annotation) > 100
    assert annotation in capsys.readouterr().err.split()


def test_the_narrower_policy_in_the_notes_is_a_command_that_pastes(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, notes = run(capsys, "--account-id", ACCOUNT)

    start = notes.index("aws iam put-role-policy")
    command = notes[start : notes.index("}'", start) + 2]
    (put,) = aws_calls(command)
    assert options(put)["role-name"] == "eks-pull-secrets"
    policy = json.loads(options(put)["policy-document"])
    actions = {
        action
        for statement in policy["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert actions == {
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    }


def test_without_an_account_the_placeholder_is_printed_and_explained(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, notes = run(capsys)

    (_, role, _) = aws_calls(out)
    federated = trust_policy(role)["Statement"][0]["Principal"]["Federated"]  # type: ignore[index]
    assert federated.startswith("arn:aws:iam::<ACCOUNT_ID>:oidc-provider/")
    assert "replace <ACCOUNT_ID> with your AWS account ID" in notes
    assert "aws sts get-caller-identity" in notes


def test_a_private_issuer_is_printed_with_a_warning_that_aws_must_reach_it(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    issuer[0] = KIND
    out, notes = run(capsys, "--account-id", ACCOUNT)

    (provider, role, _) = aws_calls(out)
    assert options(provider)["url"] == KIND
    assert condition(role)["kubernetes.default.svc.cluster.local:sub"] == (
        "system:serviceaccount:pull-secret-updater:controller"
    )
    assert options(role)["role-name"] == "kind-pull-secrets"
    assert "warning:" in notes
    assert f"{KIND}/.well-known/openid-configuration" in notes
    assert "public HTTPS" in notes
    assert "SELF_HOSTED_SETUP.md" in notes
    assert "warning" not in out


def test_namespace_scoped_roles_trust_each_namespaces_service_account(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, notes = run(capsys, "--for-namespace", "team-a", "--for-namespace", "b")

    roles = [c for c in aws_calls(out) if c[1] == "create-role"]
    assert [options(r)["role-name"] for r in roles] == [
        "eks-pull-secrets-team-a",
        "eks-pull-secrets-b",
    ]
    assert [condition(r)[f"{EKS_PATH}:sub"] for r in roles] == [
        "system:serviceaccount:team-a:pull-secret-updater",
        "system:serviceaccount:b:pull-secret-updater",
    ]
    assert [c[1] for c in aws_calls(out)].count("create-open-id-connect-provider") == 1
    assert "kubectl create serviceaccount pull-secret-updater -n team-a" in notes
    assert "kubectl annotate secret pull-secret -n b" in notes


def test_a_workloads_role_trusts_its_service_account_with_the_kubelets_audience(
    issuer: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, notes = run(capsys, "--for-service-account", "team-a/app", "--audience", "pull.example")

    provider, role, _ = aws_calls(out)
    assert options(provider)["client-id-list"] == "pull.example"
    assert options(role)["role-name"] == "eks-team-a-app"
    assert condition(role) == {
        f"{EKS_PATH}:sub": "system:serviceaccount:team-a:app",
        f"{EKS_PATH}:aud": "pull.example",
    }
    assert f"kubectl annotate serviceaccount app -n team-a {ROLE_ARN}=" in notes


def test_the_controllers_audience_can_be_another(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = run(capsys, "--audience", "sts.example.com")

    provider, role, _ = aws_calls(out)
    assert options(provider)["client-id-list"] == "sts.example.com"
    assert condition(role)[f"{EKS_PATH}:aud"] == "sts.example.com"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--provider", "ecr", "--name", "x"], "--role-name"),
        (["--provider", "ecr", "--embed-keys"], "cannot carry keys"),
        (["--role-name", "x"], "go with --provider ecr"),
        (["--account-id", ACCOUNT], "go with --provider ecr"),
        (["--audience", "x"], "--audience goes with"),
        (["--provider", "ecr", "--provider-config", "x"], "--provider-config goes with"),
        (["--provider", "ecr", "--account-id", "1234"], "not an AWS account ID"),
        (["--provider", "ecr", "--role-name", "no spaces"], "not an IAM role name"),
        (["--provider", "quay"], "invalid choice: 'quay'"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(
    issuer: list[str], capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    assert main(["identity-command", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PROG}: ")
    assert words in lines[0]


def test_chainguard_stays_the_default(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["identity-command"]) == 0
    assert capsys.readouterr().out.startswith("chainctl iam identities create eks-pull-secrets")


# -- the AWS CLI itself ---------------------------------------------------------------------------


class _RecordingIAM(http.server.BaseHTTPRequestHandler):
    """Answers every IAM Query API request with an empty success, and records it."""

    requests: list[dict[str, list[str]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = urllib.parse.parse_qs(body)
        self.requests.append(form)
        action = form["Action"][0]
        reply = (
            f'<{action}Response xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            f"<{action}Result></{action}Result>"
            "<ResponseMetadata><RequestId>0</RequestId></ResponseMetadata>"
            f"</{action}Response>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def iam_endpoint() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    requests: list[dict[str, list[str]]] = []
    handler = type("Handler", (_RecordingIAM,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_the_aws_cli_sends_the_iam_requests_aws_documents(
    issuer: list[str],
    capsys: pytest.CaptureFixture[str],
    iam_endpoint: tuple[str, list[dict[str, list[str]]]],
    tmp_path: Path,
) -> None:
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed")
    url, requests = iam_endpoint
    out, _ = run(capsys, "--account-id", ACCOUNT)

    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c",
         f'aws() {{ "{aws}" --endpoint-url {url} "$@"; }}\n{out}'],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert shell.returncode == 0, shell.stderr
    provider, role, attach = ({k: v[0] for k, v in r.items()} for r in requests)
    assert provider == {
        "Action": "CreateOpenIDConnectProvider",
        "Version": "2010-05-08",
        "Url": EKS,
        "ClientIDList.member.1": "sts.amazonaws.com",
    }
    assert role["Action"] == "CreateRole"
    assert role["RoleName"] == "eks-pull-secrets"
    document = json.loads(role["AssumeRolePolicyDocument"])
    assert document["Statement"][0]["Condition"]["StringEquals"][f"{EKS_PATH}:sub"] == (
        "system:serviceaccount:pull-secret-updater:controller"
    )
    assert attach == {
        "Action": "AttachRolePolicy",
        "Version": "2010-05-08",
        "RoleName": "eks-pull-secrets",
        "PolicyArn": READ_ONLY_POLICY,
    }
