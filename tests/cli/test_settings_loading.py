"""Settings: the original's defaults, environment and flags, one-line validation errors, and
what the settings build (the schedule, the backoff, the subjects, the identity policy)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from lightkube import AsyncClient

from pull_secret_updater import wiring
from pull_secret_updater.cli.flags import env_vars, flag, load_settings
from pull_secret_updater.core.backoff import Backoff
from pull_secret_updater.core.policy import ALLOW_ALL
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.providers.table import ChainguardSection
from pull_secret_updater.settings import Settings, SettingsError
from pull_secret_updater.tokens import ProjectedFileTokenSource, Subject, TokenSourceError


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
        "max_refresh_interval": 14400.0,
        "min_token_lifetime": 30.0,
        "backoff_base": 1.0,
        "backoff_cap": 300.0,
        "exchange_burst_per_namespace": 20,
        "exchange_rate_per_namespace": 20.0,
        "token_subject": "controller",
        "namespace_service_account": "pull-secret-updater",
        "policy_file": None,
        "allow_any_identity": False,
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
        "providers": [],
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


def test_the_identity_settings_are_read_from_the_environment_and_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSU_TOKEN_SUBJECT", "namespace")
    monkeypatch.setenv("PSU_NAMESPACE_SERVICE_ACCOUNT", "puller")
    monkeypatch.setenv("PSU_MAX_REFRESH_INTERVAL", "3600")
    settings = load_settings([])
    assert (settings.token_subject, settings.namespace_service_account) == ("namespace", "puller")
    assert settings.max_refresh_interval == 3600.0
    assert settings.allow_any_identity is False

    monkeypatch.setenv("PSU_ALLOW_ANY_IDENTITY", "true")
    assert load_settings([]).allow_any_identity is True
    flagged = load_settings(
        ["--token-subject", "controller", "--no-allow-any-identity", "--max-refresh-interval", "60"]
    )
    assert (flagged.token_subject, flagged.allow_any_identity) == ("controller", False)
    assert flagged.max_refresh_interval == 60.0


def test_the_schedule_and_the_backoff_are_the_cores_built_from_the_settings() -> None:
    settings = load_settings(
        [
            "--refresh-fraction", "0.5",
            "--refresh-jitter", "0.2",
            "--refresh-margin", "90",
            "--max-refresh-interval", "7200",
            "--backoff-base", "2",
            "--backoff-cap", "60",
        ]
    )  # fmt: skip
    assert settings.schedule == Schedule(fraction=0.5, jitter=0.2, margin=90, max_interval=7200)
    assert settings.backoff == Backoff(base=2, cap=60)
    assert load_settings([]).schedule == Schedule()
    assert load_settings([]).backoff == Backoff()


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


#: How a message names the refresh settings, whose rules the core's Schedule owns.
REFRESH = (
    "refresh settings (refresh_fraction, refresh_jitter, refresh_margin, max_refresh_interval): "
)


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
        (
            ["--refresh-fraction", "1"],
            named("refresh_fraction") + "must be between 0 and 1 (exclusive)",
        ),
        (
            ["--refresh-fraction", "0.95"],
            REFRESH + "refresh fraction +/- jitter (0.85 to 1.05) must stay between 0 and 1",
        ),
        (
            ["--refresh-jitter", "-0.1"],
            named("refresh_jitter") + "must be at least 0 and less than 1",
        ),
        (
            ["--max-refresh-interval", "0"],
            named("max_refresh_interval") + "must be a number of seconds greater than 0",
        ),
        (
            ["--max-refresh-interval", "inf"],
            named("max_refresh_interval") + "must be a number of seconds greater than 0",
        ),
        (
            ["--refresh-margin", "5"],
            "refresh_margin (5s) must be at least exchange_timeout (10s)",
        ),
        (["--refresh-margin", "nan"], named("refresh_margin") + "must be a number of seconds"),
        (["--exchange-timeout", "0"], named("exchange_timeout") + "must be a number of seconds"),
        (
            ["--backoff-cap", "0.5"],
            "backoff settings (backoff_base, backoff_cap): "
            "backoff cap (0.5s) must be at least backoff base (1s)",
        ),
        (
            ["--renew-deadline", "20"],
            "retry_period (2s) < renew_deadline (20s) < lease_duration (15s)",
        ),
        (["--metrics-port", "70000"], named("metrics_port") + "must be a port number"),
        (["--workers", "0"], named("workers") + "must be at least 1"),
        (["--workers", "many"], named("workers") + "Input should be a valid integer"),
        (["--log-level", "loud"], named("log_level") + "must be one of debug, info, warning"),
        (["--token-source", "vault"], named("token_source") + "Input should be 'file' or"),
        (
            ["--token-subject", "pod"],
            named("token_subject") + "Input should be 'controller' or 'namespace'",
        ),
        (
            ["--namespace-service-account", "Puller_SA"],
            named("namespace_service_account") + "is not a valid Kubernetes name",
        ),
        (["--allow-any-identity", "yes"], "unrecognized arguments: yes"),
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


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--refresh-fraction", "1"], "refresh_fraction"),
        (["--refresh-jitter", "1"], "refresh_jitter"),
    ],
)
def test_a_single_bad_refresh_value_names_its_flag_and_variable(argv: list[str], name: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(argv)
    assert named(name) in str(caught.value)


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


# -- what the settings build -----------------------------------------------------------------


def no_client() -> AsyncClient:
    raise AssertionError("no API client may be made for these settings")


def test_with_the_controllers_own_token_every_namespace_uses_the_controller() -> None:
    settings = load_settings(["--namespace", "psu", "--service-account", "ctl"])
    subject_for = wiring.subject_for(settings)
    assert subject_for("team-a") == subject_for("team-b") == Subject("psu", "ctl")
    assert wiring.own_subject(settings) == Subject("psu", "ctl")


def test_with_namespace_subjects_each_namespace_uses_its_own_service_account() -> None:
    settings = load_settings(["--token-subject", "namespace", "--namespace-service-account", "sa"])
    subject_for = wiring.subject_for(settings)
    assert subject_for("team-a") == Subject("team-a", "sa")
    assert subject_for("team-b") == Subject("team-b", "sa")


def test_the_controller_refuses_to_start_without_an_identity_policy() -> None:
    with pytest.raises(wiring.ConfigurationError) as caught:
        wiring.load_policy(load_settings([]))
    message = str(caught.value)
    for choice in ("PSU_POLICY_FILE", "PSU_TOKEN_SUBJECT", "PSU_ALLOW_ANY_IDENTITY=true"):
        assert choice in message


@pytest.mark.parametrize(
    "argv",
    [["--allow-any-identity"], ["--token-subject", "namespace"]],
    ids=["explicit", "namespace"],
)
def test_any_identity_is_allowed_only_when_chosen_or_confined_by_the_token_service(
    argv: list[str],
) -> None:
    assert wiring.load_policy(load_settings(argv)) == ALLOW_ALL


def test_a_policy_file_is_the_policy_whatever_else_is_set(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n  - identities: ['org/*']\n    namespaces: [team-a]\n")
    policy = wiring.load_policy(load_settings(["--policy-file", str(path), "--allow-any-identity"]))
    assert policy.allows(
        provider="chainguard", identity="org/x", namespace="team-a", namespace_labels=None
    )
    assert not policy.allows(
        provider="chainguard", identity="org/x", namespace="team-b", namespace_labels=None
    )
    assert not policy.allows(
        provider="chainguard", identity="other/x", namespace="team-a", namespace_labels=None
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read the policy file"),
        ("rules: [", "cannot read the policy file"),
        ("rules:\n  - namespace: [a]\n", "invalid policy file"),
        ("[]\n", None),  # an empty list of rules: valid, and denies everything
    ],
)
def test_a_policy_file_that_cannot_be_used_stops_the_controller(
    tmp_path: Path, content: str | None, expected: str | None
) -> None:
    path = tmp_path / "policy.yaml"
    if content is not None:
        path.write_text(content)
    settings = load_settings(["--policy-file", str(path)])
    if expected is None:
        policy = wiring.load_policy(settings)
        assert not policy.allows(
            provider="chainguard", identity="org/x", namespace="a", namespace_labels=None
        )
        return
    with pytest.raises(wiring.ConfigurationError) as caught:
        wiring.load_policy(settings)
    assert str(caught.value).startswith(f"{expected} {path}")


async def test_the_own_token_comes_from_the_file_without_any_api_client(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("own-token")
    settings = load_settings(["--token-path", str(path)])
    tokens = wiring.subject_tokens(settings, client=no_client)
    assert isinstance(wiring.own_tokens(settings, client=no_client), ProjectedFileTokenSource)
    assert await tokens.get(wiring.own_subject(settings)) == "own-token"


async def test_other_subjects_get_no_token_unless_namespace_subjects_are_chosen() -> None:
    tokens = wiring.subject_tokens(load_settings([]), client=no_client)
    with pytest.raises(TokenSourceError, match="only the controller's own ServiceAccount"):
        await tokens.get(Subject("team-a", "pull-secret-updater"))


def test_the_token_service_follows_the_settings() -> None:
    settings = load_settings(
        ["--issuer", "https://sts.example/", "--registry", "registry.example:5000",
         "--exchange-timeout", "3", "--min-token-lifetime", "45", "--refresh-margin", "60"]
    )  # fmt: skip
    sts = wiring.token_service(
        settings, sa_tokens=wiring.subject_tokens(settings, client=no_client)
    )
    assert (sts.issuer, sts.audience) == ("https://sts.example", "registry.example:5000")
    assert (sts.timeout, sts.min_lifetime) == (3.0, 45.0)
    assert (sts.verifier.issuer, sts.verifier.audience) == (sts.issuer, sts.audience)


def test_without_providers_the_flat_settings_are_the_chainguard_provider() -> None:
    settings = load_settings(["--issuer", "sts.example", "--registry", "registry.example"])
    (section,) = settings.sections
    assert isinstance(section, ChainguardSection)
    assert (section.issuer, section.registry) == ("https://sts.example", "registry.example")
    assert (section.sa_audience, section.token_path) == (settings.sa_audience, settings.token_path)


def test_providers_add_sections_beside_the_default_or_replace_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PSU_PROVIDERS", '[{"kind": "fake", "registry": "r.example"}]')
    kinds = [(type(s).__name__, getattr(s, "registry", None)) for s in load_settings([]).sections]
    assert kinds == [("ChainguardSection", "cgr.dev"), ("FakeSection", "r.example")]

    monkeypatch.setenv(
        "PSU_PROVIDERS", '[{"kind": "chainguard", "registry": "cgr.example"}, {"kind": "fake"}]'
    )
    settings = load_settings(["--registry", "ignored.example"])
    assert [getattr(s, "registry", None) for s in settings.sections] == [
        "cgr.example",
        "registry.fake.invalid",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('[{"kind": "nope"}]', "a provider entry's kind must be one of acr, chainguard, ecr"),
        ('[{"registry": "r.example"}]', "a provider entry's kind must be one of"),
        ('[{"kind": "fake", "lifetime": -1}]', "provider fake: lifetime: must be a number of"),
        ('[{"kind": "fake", "extra": 1}]', "provider fake: extra: Extra inputs are not permitted"),
        ('[{"kind": "chainguard", "issuer": "http://x"}]', "issuer: must be an https:// URL"),
        ('[{"kind": "fake"}, {"kind": "fake"}]', "providers: one entry per kind"),
        ('{"kind": "fake"}', "must be a list of provider sections"),
        ("[", "is not a JSON list of provider sections"),
    ],
)
def test_a_bad_provider_section_stops_the_controller_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("PSU_PROVIDERS", value)
    with pytest.raises(SettingsError) as caught:
        load_settings([])
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_each_providers_variable_adds_its_sections_whatever_else_sets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As two kustomize components and a user's own PSU_PROVIDERS leave them, in any order.
    monkeypatch.setenv("PSU_PROVIDERS_GAR", '{"kind": "gar"}')
    monkeypatch.setenv("PSU_PROVIDERS_ECR", '[{"kind": "ecr", "session_duration": 1800}]')
    monkeypatch.setenv("PSU_PROVIDERS", '[{"kind": "fake"}]')
    settings = load_settings([])
    kinds = [type(section).__name__ for section in settings.sections]
    assert kinds == ["ChainguardSection", "FakeSection", "EcrSection", "GarSection"]
    ecr = settings.sections[2]
    assert getattr(ecr, "session_duration", None) == 1800
    # The flag replaces PSU_PROVIDERS; the variables still add theirs.
    flagged = load_settings(["--providers", "[]"])
    assert [type(s).__name__ for s in flagged.sections] == [
        "ChainguardSection",
        "EcrSection",
        "GarSection",
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PSU_PROVIDERS_ECR", '{"kind": "ecr"', "PSU_PROVIDERS_ECR: is not a JSON section"),
        ("PSU_PROVIDERS_X", '"ecr"', "PSU_PROVIDERS_X: must be a list of provider sections"),
        ("PSU_PROVIDERS_ECR", '{"kind": "nope"}', "PSU_PROVIDERS_ECR: a provider entry's kind"),
        ("PSU_PROVIDERS_FAKE", '{"kind": "fake"}', "one entry per kind (counting those of"),
    ],
)
def test_a_bad_providers_variable_stops_the_controller_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("PSU_PROVIDERS", '[{"kind": "fake"}]')
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings([])
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_every_configured_provider_is_built_with_tokens_of_its_own_audience(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "fake-token"
    monkeypatch.setenv("PSU_PROVIDERS", json.dumps([{"kind": "fake", "token_path": str(token)}]))
    built = wiring.providers(load_settings([]), client=no_client)
    assert sorted(built) == ["chainguard", "fake"]
    assert built["fake"].spec.registry == "registry.fake.invalid"  # type: ignore[attr-defined]

    # With the projected-file source, a provider must say where its own token is.
    monkeypatch.setenv("PSU_PROVIDERS", '[{"kind": "fake"}]')
    with pytest.raises(ValueError, match="names no token_path"):
        wiring.providers(load_settings([]), client=no_client)
