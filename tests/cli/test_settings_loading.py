"""Settings: the original's defaults, environment and flags, and one-line validation errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pull_secret_updater.cli.flags import env_vars, flag, load_settings
from pull_secret_updater.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack exports PSU_* variables of its own; start every test without them."""
    import os

    for name in list(os.environ):
        if name.startswith("PSU_") or name in ("POD_NAMESPACE", "POD_NAME"):
            monkeypatch.delenv(name)


def test_defaults_are_the_originals() -> None:
    settings = load_settings([])
    assert settings.model_dump() == {
        "issuer": "https://issuer.enforce.dev",
        "registry": "cgr.dev",
        "secret_names": ["pull-secret"],
        "token_path": Path("/var/run/chainguard/oidc/oidc-token"),
        "token_source": "file",
        "sa_audience": "issuer.enforce.dev",
        "ca_bundle": None,
        "exchange_timeout": 10.0,
        "refresh_fraction": 0.66,
        "refresh_jitter": 0.1,
        "refresh_margin": 60.0,
        "min_token_lifetime": 30.0,
        "backoff_base": 1.0,
        "backoff_cap": 300.0,
        "policy_file": None,
        "namespace": "pull-secret-updater",
        "service_account": "controller",
        "leader_election": True,
        "lease_name": "pull-secret-updater",
        "lease_duration": 15.0,
        "renew_deadline": 10.0,
        "retry_period": 2.0,
        "pod_name": socket.gethostname(),
        "metrics_port": 8080,
        "metrics_host": "0.0.0.0",
        "workers": 4,
        "watch_timeout": 60,
        "log_level": "info",
        "kubeconfig": None,
    }


def test_environment_is_read_with_the_psu_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSU_ISSUER", "https://sts.example")
    monkeypatch.setenv("PSU_SECRET_NAMES", "pull-secret, team.pull-secret")
    monkeypatch.setenv("PSU_LEADER_ELECTION", "false")
    monkeypatch.setenv("PSU_CA_BUNDLE", "/etc/ca.pem")
    monkeypatch.setenv("PSU_WORKERS", "16")
    settings = load_settings([])
    assert settings.issuer == "https://sts.example"
    assert settings.secret_names == ["pull-secret", "team.pull-secret"]
    assert settings.leader_election is False
    assert settings.ca_bundle == Path("/etc/ca.pem")
    assert settings.workers == 16


def test_secret_names_may_be_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSU_SECRET_NAMES", '["a", "b"]')
    assert load_settings([]).secret_names == ["a", "b"]


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSU_ISSUER", "https://from-env.example")
    monkeypatch.setenv("PSU_SECRET_NAMES", "from-env")
    monkeypatch.setenv("PSU_LEADER_ELECTION", "true")
    settings = load_settings(
        [
            "--issuer", "https://from-flag.example",
            "--secret-names", "a,b",
            "--no-leader-election",
            "--refresh-margin", "120",
            "--token-source", "tokenrequest",
        ]
    )  # fmt: skip
    assert settings.issuer == "https://from-flag.example"
    assert settings.secret_names == ["a", "b"]
    assert settings.leader_election is False
    assert settings.refresh_margin == 120.0
    assert settings.token_source == "tokenrequest"


def test_pod_namespace_and_pod_name_come_from_the_downward_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "elsewhere")
    monkeypatch.setenv("POD_NAME", "controller-7d9f-abcde")
    settings = load_settings([])
    assert (settings.namespace, settings.pod_name) == ("elsewhere", "controller-7d9f-abcde")

    monkeypatch.setenv("PSU_NAMESPACE", "explicit")
    assert load_settings([]).namespace == "explicit"
    assert load_settings(["--namespace", "flagged"]).namespace == "flagged"


def test_a_bare_issuer_host_means_https() -> None:
    assert load_settings(["--issuer", "issuer.enforce.dev/"]).issuer == "https://issuer.enforce.dev"


def test_unset_optional_paths_with_an_empty_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSU_CA_BUNDLE", "/etc/ca.pem")
    assert load_settings(["--ca-bundle", ""]).ca_bundle is None


def named(name: str) -> str:
    """How a message names a setting: itself, its flag and its variables."""
    return f"{name} ({flag(name)}, {', '.join(env_vars(name))}): "


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--issuer", "http://x.example"], named("issuer") + "must be an https:// URL"),
        (["--registry", "https://cgr.dev/"], named("registry") + "must be a bare registry host"),
        (
            ["--secret-names", "Pull_Secret"],
            named("secret_names") + "'Pull_Secret' is not a valid Kubernetes name",
        ),
        (["--secret-names", ","], named("secret_names") + "must name at least one Secret"),
        (["--secret-names", "a,a"], named("secret_names") + "names a Secret more than once"),
        (["--namespace", "a.b"], named("namespace") + "is not a valid namespace name"),
        (["--lease-name=-x"], named("lease_name") + "is not a valid Kubernetes name"),
        (["--refresh-fraction", "1"], named("refresh_fraction") + "must be between 0 and 1"),
        (
            ["--refresh-fraction", "0.95"],
            "refresh_fraction +/- refresh_jitter (0.85 to 1.05) must stay between 0 and 1",
        ),
        (["--refresh-jitter", "-0.1"], named("refresh_jitter") + "must be at least 0"),
        (
            ["--refresh-margin", "5"],
            "refresh_margin (5s) must be at least exchange_timeout (10s)",
        ),
        (["--refresh-margin", "nan"], named("refresh_margin") + "must be a number of seconds"),
        (["--exchange-timeout", "0"], named("exchange_timeout") + "must be a number of seconds"),
        (["--backoff-cap", "0.5"], "backoff_cap (0.5s) must be at least backoff_base (1s)"),
        (
            ["--renew-deadline", "20"],
            "retry_period (2s) < renew_deadline (20s) < lease_duration (15s)",
        ),
        (["--metrics-port", "70000"], named("metrics_port") + "must be a port number"),
        (["--workers", "0"], named("workers") + "must be at least 1"),
        (["--workers", "many"], named("workers") + "Input should be a valid integer"),
        (["--log-level", "loud"], named("log_level") + "must be one of debug, info, warning"),
        (["--token-source", "vault"], named("token_source") + "Input should be 'file' or"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_flag_and_variable(
    argv: list[str], expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(argv)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "Not_A_Namespace")
    with pytest.raises(SettingsError) as caught:
        load_settings([])
    assert named("namespace") in str(caught.value)
    assert "POD_NAMESPACE" in named("namespace")


def test_lease_timings_are_not_checked_without_leader_election() -> None:
    settings = load_settings(["--no-leader-election", "--renew-deadline", "20"])
    assert settings.renew_deadline == 20


def test_settings_are_immutable() -> None:
    settings = load_settings([])
    with pytest.raises(ValueError, match="frozen"):
        settings.workers = 8


def test_help_lists_every_setting_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        load_settings(["--help"], prog="pull-secret-updater run")
    assert exited.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    for name, field in Settings.model_fields.items():
        assert flag(name) in printed
        assert env_vars(name)[0] in printed
        assert field.description is not None
        assert " ".join(field.description.split()) in printed
