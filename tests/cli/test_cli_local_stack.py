"""The helper commands against the local stack, run as a user runs them: as a process.

identity-command recognises the local cluster (its issuer is KinD's) as private and prints a
command that, run with the chainctl stand-in, creates an identity the controller fills a Secret
with; status shows that Secret and the error of a badly annotated one; check performs one
exchange with the controller's token (a Chainguard token, an ECR password, a Google access
token, an ACR refresh token) and reports a refusal in one line.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.controller import ControllerProcess
from devstack.stack import SA_AUDIENCE, LocalStack
from tests.cli.awscli import aws_calls, options, trust_conditions
from tests.helpers import LAST_ERROR, ClusterHelper, cli, eventually, run_pasted

pytestmark = pytest.mark.stack

SUBJECT = "system:serviceaccount:pull-secret-updater:controller"
STS_AUDIENCE = "sts.amazonaws.com"
GAR_AUDIENCE = "sts.googleapis.com"
ACR_AUDIENCE = "api://AzureADTokenExchange"
ACCOUNT = "111122223333"


def flags(command: str) -> dict[str, str]:
    words = shlex.split(command.replace("\\\n", " "))
    return dict(w.removeprefix("--").split("=", 1) for w in words if w.startswith("--"))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_identity_command_recognises_the_local_cluster_and_inlines_its_keys(
    stack: LocalStack,
) -> None:
    result = cli(stack, "identity-command")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("chainctl iam identities create kind-pull-secrets \\\n")
    printed = flags(result.stdout)
    assert json.loads(printed["issuer-keys"]) == stack.control_plane.jwks()
    assert printed["identity-issuer"] == SERVICE_ACCOUNT_ISSUER
    assert printed["subject"] == SUBJECT
    assert printed["role"] == "registry.pull"
    assert "recognised: KinD-like cluster (private issuer)" in result.stderr
    assert "rotates its signing key" in result.stderr


def test_identity_command_prints_one_namespace_scoped_identity_per_namespace(
    stack: LocalStack,
) -> None:
    result = cli(stack, "identity-command", "--for-namespace", "team-a", "--for-namespace", "b")
    assert result.returncode == 0, result.stderr
    commands = result.stdout.strip().split("\n\n")
    assert len(commands) == 2
    for command, namespace in zip(commands, ["team-a", "b"], strict=True):
        assert command.startswith(f"chainctl iam identities create kind-pull-secrets-{namespace} ")
        printed = flags(command)
        assert printed["subject"] == f"system:serviceaccount:{namespace}:pull-secret-updater"
        assert json.loads(printed["issuer-keys"]) == stack.control_plane.jwks()
    notes = " ".join(result.stderr.split())
    assert "kubectl create serviceaccount pull-secret-updater -n team-a" in notes


@pytest.mark.parametrize("scoped", [False, True], ids=["controller", "namespace-scoped"])
def test_identity_command_for_ecr_trusts_the_clusters_own_tokens_and_warns_aws_cannot_reach_it(
    stack: LocalStack, cluster: ClusterHelper, installed: str, scoped: bool
) -> None:
    if scoped:
        namespace, name = cluster.namespace("ecr-id"), "pull-secret-updater"
        cluster.kubectl("-n", namespace, "create", "serviceaccount", name)
        args: tuple[str, ...] = ("--for-namespace", namespace)
    else:
        namespace, name, args = "pull-secret-updater", "controller", ()

    result = cli(stack, "identity-command", "--provider", "ecr", "--account-id", ACCOUNT, *args)

    assert result.returncode == 0, result.stderr
    provider, role, attach = aws_calls(result.stdout)
    assert provider[:2] == ["iam", "create-open-id-connect-provider"]
    assert options(provider) == {"url": SERVICE_ACCOUNT_ISSUER, "client-id-list": STS_AUDIENCE}
    assert attach[:2] == ["iam", "attach-role-policy"]
    federated, conditions = trust_conditions(role)
    path = SERVICE_ACCOUNT_ISSUER.removeprefix("https://")
    assert federated == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{path}"
    assert conditions == {
        f"{path}:sub": f"system:serviceaccount:{namespace}:{name}",
        f"{path}:aud": STS_AUDIENCE,
    }
    # What AWS compares them with: a token of that ServiceAccount, as the controller exchanges it.
    token = cluster.kubectl("-n", namespace, "create", "token", name,
                            f"--audience={STS_AUDIENCE}").strip()  # fmt: skip
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["iss"] == options(provider)["url"]
    assert claims["aud"] == [conditions[f"{path}:aud"]]
    assert claims["sub"] == conditions[f"{path}:sub"]
    notes = " ".join(result.stderr.split())
    assert "recognised: KinD-like cluster (private issuer)" in notes
    assert "warning: AWS cannot reach this issuer" in notes
    assert f"{SERVICE_ACCOUNT_ISSUER}/.well-known/openid-configuration" in notes


def test_the_printed_command_creates_an_identity_the_controller_fills_secrets_with(
    stack: LocalStack,
    cluster: ClusterHelper,
    start_controller: Callable[..., ControllerProcess],
    tmp_path: Path,
) -> None:
    name = f"kind-pull-secrets-{tmp_path.name[-12:]}".lower().replace("_", "-")
    printed = cli(stack, "identity-command", "--name", name)
    assert printed.returncode == 0, printed.stderr
    # Pasted into a shell where chainctl is the local stand-in.
    uid = run_pasted(stack, printed.stdout)
    assert uid

    start_controller()
    filled = cluster.namespace("cli")
    cluster.create_pull_secret(filled, uid)
    cluster.wait_filled(filled)
    broken = cluster.namespace("clibad")
    cluster.create_pull_secret(broken, "bad identity!")
    error = eventually(lambda: cluster.annotations(broken).get(LAST_ERROR), what="an error")

    result = cli(stack, "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["namespace"]: row for row in json.loads(result.stdout)}
    assert rows[filled]["identity"] == uid
    assert rows[filled]["expiresInSeconds"] > 0
    assert rows[filled]["lastRefresh"] is not None
    assert rows[filled]["lastError"] is None
    assert rows[broken]["identity"] is None
    assert rows[broken]["lastError"] == error

    table = cli(stack, "status", "-A")
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines()}
    assert lines["NAMESPACE"].split()[:3] == ["NAMESPACE", "NAME", "IDENTITY"]
    assert lines[filled].split()[:4] == [filled, "pull-secret", uid, "in"]
    assert lines[filled].split()[4].endswith("m"), "the token lasts an hour"
    assert lines[broken].split()[2] == "<invalid>"
    assert lines[broken].endswith(error)
    token = cluster.token(filled)
    assert token
    assert token not in table.stdout + result.stdout


def test_status_falls_back_to_the_current_namespace_when_it_may_not_list_all(
    stack: LocalStack, cluster: ClusterHelper, tmp_path: Path
) -> None:
    namespace = cluster.namespace("cliview")
    cluster.create_pull_secret(namespace, "abc/def")
    kubectl = cluster.kubectl
    kubectl("-n", namespace, "create", "serviceaccount", "viewer")
    kubectl("-n", namespace, "create", "role", "viewer", "--verb=list",
            "--resource=secrets", "--resource-name=pull-secret")  # fmt: skip
    kubectl("-n", namespace, "create", "rolebinding", "viewer", "--role=viewer",
            f"--serviceaccount={namespace}:viewer")  # fmt: skip
    viewer = stack.control_plane.service_account_kubeconfig(
        namespace, "viewer", tmp_path / "viewer.kubeconfig"
    )

    result = cli(stack, "status", kubeconfig=viewer)
    assert result.returncode == 0, result.stderr
    assert "not allowed to list Secrets in all namespaces (403" in result.stderr
    assert f"showing namespace {namespace} only" in " ".join(result.stderr.split())
    (row,) = result.stdout.splitlines()[1:]
    assert row.split()[:3] == [namespace, "pull-secret", "abc/def"]

    everywhere = cli(stack, "status", "-A", kubeconfig=viewer)
    assert everywhere.returncode == 1
    assert "403 Forbidden" in one_line(everywhere.stderr)


def test_check_exchanges_the_controllers_token_once(
    stack: LocalStack, installed: str, tmp_path: Path
) -> None:
    token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=SA_AUDIENCE
    )
    token_file = tmp_path / "oidc-token"
    token_file.write_text(token)
    common = ["--issuer", stack.token_service.url, "--registry", stack.registry.host,
              "--ca-bundle", str(stack.ca_file)]  # fmt: skip

    ok = cli(stack, "check", "--identity", installed, "--token-path", str(token_file), *common)
    assert ok.returncode == 0, ok.stderr
    first, registry_token, sent = ok.stdout.splitlines()[:3]
    assert first.startswith(f"ok: token for {stack.registry.host} expires at ")
    assert first.endswith("(in 59m)")
    assert f"subject {installed}" in registry_token
    assert f"issuer {SERVICE_ACCOUNT_ISSUER}, subject {SUBJECT}" in sent
    assert token not in ok.stdout + ok.stderr

    # The same, with a TokenRequest token as `run --token-source tokenrequest` gets it.
    requested = cli(stack, "check", "--identity", installed, "--token-source", "tokenrequest",
                    "--kubeconfig", str(stack.kubeconfig), *common)  # fmt: skip
    assert requested.returncode == 0, requested.stderr
    assert requested.stdout.startswith("ok: ")

    unknown = "0000000000000000000000000000000000000000/0000000000000000"
    refused = cli(stack, "check", "--identity", unknown, "--token-path", str(token_file), *common)
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert line.startswith(f"pull-secret-updater check: exchange for identity {unknown} failed: ")
    assert "404" in line
    assert token not in refused.stdout + refused.stderr


def test_check_obtains_an_ecr_password_as_the_controller_would(
    stack: LocalStack, installed: str, tmp_path: Path
) -> None:
    subject = "system:serviceaccount:pull-secret-updater:controller"
    role = stack.aws.create_role(f"check-{tmp_path.name[-12:]}", subjects=subject)
    token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience="sts.amazonaws.com"
    )
    token_file = tmp_path / "sts-token"
    token_file.write_text(token)
    section = {"kind": "ecr", "sts_endpoint": stack.aws.endpoint,
               "ecr_endpoint": stack.aws.endpoint, "ca_bundle": str(stack.ca_file),
               "token_path": str(token_file)}  # fmt: skip
    common = ["--ca-bundle", str(stack.ca_file), "--providers", json.dumps([section]),
              "--registries", stack.aws.registry_host]  # fmt: skip

    ok = cli(stack, "check", "--role-arn", role, *common)
    assert ok.returncode == 0, ok.stderr
    first, sent = ok.stdout.splitlines()[:2]
    assert first.startswith(f"ok: password for {stack.aws.registry_host} expires at ")
    assert first.endswith("(in 11h59m)") or first.endswith("(in 12h)"), first
    assert f"issuer {SERVICE_ACCOUNT_ISSUER}, subject {subject}" in sent
    assert "audience sts.amazonaws.com" in sent
    assert (stack.aws.assumed(role), stack.aws.authorizations(role)) == (1, 1)
    printed = ok.stdout + ok.stderr
    assert token not in printed
    assert all(item["password"] not in printed for item in stack.aws.passwords())

    untrusting = stack.aws.create_role(f"nocheck-{tmp_path.name[-12:]}",
                                       subjects="system:serviceaccount:x:y")  # fmt: skip
    refused = cli(stack, "check", "--role-arn", untrusting, *common)
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert line.startswith(
        f"pull-secret-updater check: exchange for identity {untrusting} failed: AWS STS answered"
    )
    assert "AccessDenied" in line
    assert token not in refused.stdout + refused.stderr


def test_check_obtains_a_google_access_token_as_the_controller_would(
    stack: LocalStack, installed: str, tmp_path: Path
) -> None:
    gcp, name = stack.gcp, tmp_path.name[-12:].lower().replace("_", "-")
    provider = gcp.create_pool_provider(
        f"check-{name}"[:32], allowed_audiences=[GAR_AUDIENCE], allowed_subjects=[SUBJECT]
    )
    email = gcp.create_service_account(f"check-{name}"[:30])
    gcp.bind(email, gcp.principal(SUBJECT))
    token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=GAR_AUDIENCE
    )
    token_file = tmp_path / "gcp-token"
    token_file.write_text(token)
    section = {"kind": "gar", "sts_endpoint": gcp.endpoint,
               "iamcredentials_endpoint": gcp.endpoint, "ca_bundle": str(stack.ca_file),
               "token_path": str(token_file)}  # fmt: skip
    common = ["--ca-bundle", str(stack.ca_file), "--providers", json.dumps([section]),
              "--registries", gcp.registry_host,
              "--workload-identity-provider", provider]  # fmt: skip

    ok = cli(stack, "check", "--gcp-service-account", email, *common)
    assert ok.returncode == 0, ok.stderr
    first, sent = ok.stdout.splitlines()[:2]
    assert first.startswith(f"ok: password for {gcp.registry_host} expires at "), first
    assert first.endswith("(in 59m)") or first.endswith("(in 1h)"), first
    assert f"issuer {SERVICE_ACCOUNT_ISSUER}, subject {SUBJECT}" in sent
    assert f"audience {GAR_AUDIENCE}" in sent
    assert (gcp.exchanges(provider), gcp.generations(email)) == (1, 1)
    issued = gcp.tokens()
    assert [t["service_account"] for t in issued if t["provider"] == provider] == [None, email]
    printed = ok.stdout + ok.stderr
    assert token not in printed
    assert all(item["token"] not in printed for item in issued)

    # Without a service account, the federated token itself: one more STS exchange.
    federated = cli(stack, "check", *common)
    assert federated.returncode == 0, federated.stderr
    assert (gcp.exchanges(provider), gcp.generations(email)) == (2, 1)

    # A service account the controller's principal may not impersonate: IAM's own words.
    stranger = gcp.create_service_account(f"nocheck-{name}"[:30])
    refused = cli(stack, "check", "--gcp-service-account", stranger, *common)
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert line.startswith(
        f"pull-secret-updater check: exchange for identity {stranger} failed: "
    ), line
    assert "PERMISSION_DENIED" in line
    assert token not in refused.stdout + refused.stderr


def test_check_obtains_an_acr_refresh_token_as_the_controller_would(
    stack: LocalStack, installed: str, tmp_path: Path
) -> None:
    azure = stack.azure
    client = azure.create_puller(f"check-{tmp_path.name[-12:]}", subject=SUBJECT)
    token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=ACR_AUDIENCE
    )
    token_file = tmp_path / "azure-token"
    token_file.write_text(token)
    section = {**azure.section(), "ca_bundle": str(stack.ca_file), "token_path": str(token_file)}
    common = ["--ca-bundle", str(stack.ca_file), "--providers", json.dumps([section]),
              "--registries", azure.registry_host, "--tenant-id", azure.tenant]  # fmt: skip

    ok = cli(stack, "check", "--client-id", client, *common)
    assert ok.returncode == 0, ok.stderr
    first, sent = ok.stdout.splitlines()[:2]
    assert first.startswith(f"ok: password for {azure.registry_host} expires at "), first
    assert first.endswith("(in 2h59m)") or first.endswith("(in 3h)"), first
    assert f"issuer {SERVICE_ACCOUNT_ISSUER}, subject {SUBJECT}" in sent
    assert f"audience {ACR_AUDIENCE}" in sent
    assert (azure.tokens(client), azure.exchanges(client)) == (1, 1)
    printed = ok.stdout + ok.stderr
    assert token not in printed
    assert all(item["token"] not in printed for item in azure.refresh_tokens())

    # An app that trusts another ServiceAccount: Entra's own code.
    untrusting = azure.create_puller(f"nocheck-{tmp_path.name[-12:]}",
                                     subject="system:serviceaccount:x:y")  # fmt: skip
    refused = cli(stack, "check", "--client-id", untrusting, *common)
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert line.startswith(
        f"pull-secret-updater check: exchange for identity {azure.tenant}/{untrusting} failed: "
        "Microsoft Entra ID answered"
    ), line
    assert "AADSTS700213" in line
    assert token not in refused.stdout + refused.stderr


def test_an_unreadable_kubeconfig_is_one_line(stack: LocalStack, tmp_path: Path) -> None:
    # Every kind of unusable kubeconfig is covered in-process (test_cli_usage); here, once each
    # through KUBECONFIG and through the flag, as a process.
    garbage = tmp_path / "kubeconfig"
    garbage.write_text("apiVersion: v1\nclusters: [ {\n")
    by_variable = cli(stack, "status", kubeconfig=garbage)
    by_flag = cli(stack, "identity-command", "--kubeconfig", str(tmp_path))
    for result, command, path in ((by_variable, "status", garbage),
                                  (by_flag, "identity-command", tmp_path)):  # fmt: skip
        assert result.returncode == 2
        assert one_line(result.stderr).startswith(
            f"pull-secret-updater {command}: cannot use kubeconfig {path}: "
        )
        assert result.stdout == ""
