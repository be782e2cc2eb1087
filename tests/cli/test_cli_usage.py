"""The command line: every command is listed and documented, every failure is one line."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pull_secret_updater import wiring
from pull_secret_updater.cli import main
from pull_secret_updater.tokens import Subject
from tests.cli.fakes import token_service_at
from tests.fakes import FakeClock
from tests.tokens.fakes import (
    EXCHANGE_PATH,
    IDENTITY,
    KEYS_PATH,
    SA_TOKEN,
    FakeTokenService,
    SubjectTokenMap,
)

COMMANDS = ("run", "identity-command", "status", "check")
WIP = "projects/123456789012/locations/global/workloadIdentityPools/cluster/providers/kube"
OTHER_AUDIENCE = (
    "https://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/"
    "cluster/providers/other"
)
EMAIL = "puller@my-project.iam.gserviceaccount.com"
GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ACR_HOST = "myregistry.azurecr.io"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("PSU_") or name in ("KUBECONFIG", "POD_NAMESPACE", "POD_NAME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: ")
    assert "Traceback" not in err
    return lines[0]


def test_help_lists_every_command_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        (line,) = [line for line in out.splitlines() if line.strip().startswith(command + " ")]
        assert len(line.split()) > 3, f"{command} has no description"


def test_no_command_prints_the_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pull-secret-updater {command}")


def test_check_help_offers_the_controllers_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    for flag in ("--identity", "--issuer", "--registry", "--token-path", "--token-source",
                 "--ca-bundle", "--kubeconfig", "--role-arn", "--registries",
                 "--workload-identity-provider", "--gcp-service-account", "--tenant-id",
                 "--client-id"):  # fmt: skip
        assert flag in out


def test_an_unknown_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    line = one_error_line(capsys.readouterr().err, "pull-secret-updater")
    assert "unknown command 'frobnicate'" in line


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
        (["status", "-n", "a", "-A"], "not allowed with argument"),
        (["status", "-o", "yaml"], "invalid choice: 'yaml'"),
        (["status", "--names", ","], "at least one name"),
        (["status", "--names", "pull-secret,a=b"], "'a=b' is not a valid Secret name"),
        (
            ["check"],
            "give one of --identity (Chainguard), --role-arn and --registries (ECR), "
            "--workload-identity-provider [--gcp-service-account] and --registries "
            "(Artifact Registry), or --tenant-id, --client-id and --registries (ACR)",
        ),
        (["check", "--identity", "x", "--role-arn", "y"], "give one of --identity"),
        (["check", "--identity", "x", "--registries", "gcr.io"], "give one of --identity"),
        (["check", "--registries", "gcr.io"], "give one of --identity"),
        (["check", "--role-arn", "y", "--tenant-id", GUID, "--registries", "z"], "give one of"),
        (["check", "--workload-identity-provider", WIP, "--client-id", GUID], "give one of"),
        (["check", "--role-arn", "arn:aws:iam::111122223333:role/x"], "--registries is missing"),
        (
            [
                "check",
                "--role-arn",
                "nope",
                "--registries",
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            ],
            "--role-arn is not an IAM role ARN",
        ),
        (
            ["check", "--role-arn", "arn:aws:iam::111122223333:role/x", "--registries", "ghcr.io"],
            "--registries: item 1 is not an ECR registry host",
        ),
        (
            [
                "check",
                "--role-arn",
                "arn:aws:iam::111122223333:role/x",
                "--registries",
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            ],
            "provider ecr is not configured",
        ),
        # Artifact Registry: the provider's own spec says what is wrong, in the flags' words.
        (
            ["check", "--workload-identity-provider", WIP],
            "--workload-identity-provider is set but --registries is missing",
        ),
        (
            ["check", "--workload-identity-provider", "nope", "--registries", "gcr.io"],
            "--workload-identity-provider is not a workload identity pool provider",
        ),
        (
            ["check", "--gcp-service-account", EMAIL, "--registries", "gcr.io"],
            "--workload-identity-provider is missing",
        ),
        (
            [
                "check",
                "--workload-identity-provider",
                WIP,
                "--gcp-service-account",
                "a@b.com",
                "--registries",
                "gcr.io",
            ],
            "--gcp-service-account is not a Google service account",
        ),
        (
            ["check", "--workload-identity-provider", WIP, "--registries", "ghcr.io"],
            "--registries: item 1 is not a Google registry host",
        ),
        (
            [
                "check",
                "--workload-identity-provider",
                WIP,
                "--gcp-service-account",
                EMAIL,
                "--registries",
                "europe-west4-docker.pkg.dev",
            ],
            "provider gar is not configured",
        ),
        (
            [
                "check",
                "--workload-identity-provider",
                WIP,
                "--registries",
                "gcr.io",
                "--providers",
                json.dumps([{"kind": "gar", "sa_audience": OTHER_AUDIENCE}]),
            ],
            "--workload-identity-provider names another provider than the one the controller's "
            "tokens are for",
        ),
        # ACR, likewise.
        (
            ["check", "--tenant-id", GUID],
            "--tenant-id is set but --client-id and --registries are missing",
        ),
        (
            ["check", "--tenant-id", GUID, "--client-id", "nope", "--registries", ACR_HOST],
            "--client-id contains 'n' at position 1",
        ),
        (
            [
                "check",
                "--tenant-id",
                GUID,
                "--client-id",
                GUID,
                "--registries",
                f"{ACR_HOST},other.azurecr.io",
            ],
            "--registries contains ','",
        ),
        (
            ["check", "--tenant-id", GUID, "--client-id", GUID, "--registries", "ghcr.io"],
            "--registries is not an Azure Container Registry host",
        ),
        (
            ["check", "--tenant-id", GUID, "--client-id", GUID, "--registries", ACR_HOST],
            "provider acr is not configured",
        ),
        (["check", "--identity", "has space"], "--identity contains ' '"),
        (["check", "--identity", "x", "--token-source", "carrier-pigeon"], "token_source"),
        (["check", "--identity", "x", "--issuer", "http://clear.example"], "https://"),
        (["identity-command", "--namespace", "Not_Valid"], "not a valid namespace name"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert words in one_error_line(capsys.readouterr().err, f"pull-secret-updater {argv[0]}")


@pytest.mark.parametrize("command", ["status", "identity-command"])
def test_an_unusable_kubeconfig_is_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [unclosed\n")
    not_a_kubeconfig = tmp_path / "list.yaml"
    not_a_kubeconfig.write_text("- 1\n- 2\n")
    cases = {
        tmp_path / "absent": "does not exist",
        tmp_path: "does not exist or is not a file",
        garbage: "not valid YAML",
        not_a_kubeconfig: "not a kubeconfig",
    }
    for path, words in cases.items():
        assert main([command, "--kubeconfig", str(path)]) == 2
        line = one_error_line(capsys.readouterr().err, f"pull-secret-updater {command}")
        assert f"cannot use kubeconfig {path}: " in line
        assert words in line


def test_without_any_kubeconfig_the_way_to_give_one_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert main(["status"]) == 2
    assert "pass --kubeconfig or set KUBECONFIG" in capsys.readouterr().err
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    assert main(["status"]) == 2
    line = one_error_line(capsys.readouterr().err, "pull-secret-updater status")
    assert f"KUBECONFIG={tmp_path / 'nowhere'} does not exist" in line


def write_kubeconfig(path: Path, *, server: str, context: str = "c") -> Path:
    path.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: k, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: not-a-real-token}}}}]
contexts: [{{name: {context}, context: {{cluster: k, user: u, namespace: team}}}}]
current-context: {context}
"""
    )
    return path


def test_an_unknown_context_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", server="https://127.0.0.1:1")
    assert main(["status", "--kubeconfig", str(kubeconfig), "--context", "other"]) == 2
    assert "Context 'other' not found" in one_error_line(
        capsys.readouterr().err, "pull-secret-updater status"
    )


@pytest.mark.parametrize("command", ["status", "identity-command"])
def test_an_unreachable_api_server_is_one_line_and_exit_1(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", server="https://127.0.0.1:1")
    assert main([command, "--kubeconfig", str(kubeconfig)]) == 1
    line = one_error_line(capsys.readouterr().err, f"pull-secret-updater {command}")
    assert "connection failed" in line
    assert "not-a-real-token" not in line


@pytest.fixture
def token_service(monkeypatch: pytest.MonkeyPatch) -> FakeTokenService:
    """The token service `check` talks to (at the default issuer), instead of the network."""
    service = FakeTokenService(clock=FakeClock(time.time()), issuer="https://issuer.enforce.dev")
    token_service_at(monkeypatch, service)
    return service


def test_a_missing_token_file_for_check_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token_service: FakeTokenService
) -> None:
    argv = ["check", "--identity", "abc/def", "--token-path", str(tmp_path / "absent")]
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err, "pull-secret-updater check")
    assert f"service-account token file {tmp_path / 'absent'} does not exist" in line
    assert token_service.hits(KEYS_PATH) == 0  # the token file is read before anything is fetched
    assert token_service.hits(EXCHANGE_PATH) == 0


def check_without_keys(tmp_path: Path, token_service: FakeTokenService) -> int:
    token_file = tmp_path / "token"
    token_file.write_text("not-a-real-token")
    token_service.failing[KEYS_PATH] = 503
    return main(["check", "--identity", "abc/def", "--token-path", str(token_file)])


def test_check_fails_with_exit_1_when_the_token_services_keys_are_unavailable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token_service: FakeTokenService
) -> None:
    assert check_without_keys(tmp_path, token_service) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == (
        "pull-secret-updater check: exchange for identity abc/def failed: "
        "the key set at https://issuer.enforce.dev/keys answered 503"
    )
    assert token_service.hits(EXCHANGE_PATH) == 0


def test_check_without_keys_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], token_service: FakeTokenService
) -> None:
    assert check_without_keys(tmp_path, token_service) == 1
    one_error_line(capsys.readouterr().err, "pull-secret-updater check")


def test_check_exchanges_as_the_secret_namespaces_service_account(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    token_service: FakeTokenService,
) -> None:
    wanted = Subject("team-a", "puller")
    tokens = SubjectTokenMap(tokens={wanted: SA_TOKEN})
    monkeypatch.setattr(wiring, "subject_tokens", lambda settings, *, client: tokens)
    argv = ["check", "--identity", IDENTITY, "--token-subject", "namespace",
            "--namespace-service-account", "puller", "--secret-namespace", "team-a"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert tokens.asked == [wanted]
    assert token_service.hits(EXCHANGE_PATH) == 1
    assert capsys.readouterr().out.startswith("ok: token for cgr.dev expires at ")
