"""What installs the plugin: the kubelet's CredentialProviderConfig follows the kubelet's own
validation rules, the RBAC grants the audience verb to the nodes and nothing else, and the
shipped files are what the commands print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pull_secret_updater.cli import main
from pull_secret_updater.credentialprovider.install import (
    ProviderPlan,
    audience_in_config,
    credential_provider_config,
    rbac_objects,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "credential-provider"
KEY = "pull-secret-updater.chainguard.dev/identity"


def only_provider(plan: ProviderPlan) -> dict[str, Any]:
    [provider] = credential_provider_config([plan])["providers"]
    return dict(provider)


def test_workload_identities_need_the_annotation_and_share_a_credential_per_service_account() -> (
    None
):
    config = credential_provider_config([ProviderPlan()])
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1"
    assert config["kind"] == "CredentialProviderConfig"
    assert config["providers"] == [
        {
            "name": "pull-secret-updater-credential-provider",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "matchImages": ["cgr.dev"],
            "defaultCacheDuration": "0s",
            "args": ["--issuer=https://issuer.enforce.dev", "--registry=cgr.dev"],
            "tokenAttributes": {
                "serviceAccountTokenAudience": "issuer.enforce.dev",
                "cacheType": "ServiceAccount",
                "requireServiceAccount": True,
                "requiredServiceAccountAnnotationKeys": [KEY],
            },
        }
    ]


def test_a_node_fallback_makes_the_annotation_optional_as_the_kubelet_requires() -> None:
    provider = only_provider(
        ProviderPlan(node_token_file="/var/lib/psu/token", node_identity="abc/def")
    )
    attributes = provider["tokenAttributes"]
    # The kubelet refuses required keys with requireServiceAccount false.
    assert attributes["requireServiceAccount"] is False
    assert attributes["optionalServiceAccountAnnotationKeys"] == [KEY]
    assert "requiredServiceAccountAnnotationKeys" not in attributes
    assert provider["args"][-2:] == [
        "--node-token-file=/var/lib/psu/token",
        "--node-identity=abc/def",
    ]


def test_plain_mode_asks_for_no_tokens() -> None:
    provider = only_provider(
        ProviderPlan(service_account_tokens=False, node_token_file="/t", node_identity="a/b")
    )
    assert "tokenAttributes" not in provider


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"match_images": ("docker.io/library",)}, "not on the registry cgr.dev"),
        ({"match_images": ("*.cgr.dev",)}, "not on the registry"),
        ({"name": "a/b"}, "file name"),
        ({"name": ".."}, "file name"),
        ({"audience": " "}, "audience"),
        ({"identity_annotation": "not a key"}, "not an annotation key"),
        ({"issuer": "http://issuer.example"}, "https"),
        ({"node_token_file": "/t"}, "both"),
        ({"node_token_file": "/t", "node_identity": "a b"}, "node identity"),
        ({"service_account_tokens": False}, "only the node fallback"),
    ],
)
def test_configs_the_kubelet_or_the_plugin_would_refuse_are_refused(
    plan: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ProviderPlan(**plan)


def test_paths_on_the_registry_may_be_matched() -> None:
    provider = only_provider(ProviderPlan(match_images=("cgr.dev/my-org", "cgr.dev/other")))
    assert provider["matchImages"] == ["cgr.dev/my-org", "cgr.dev/other"]


def test_provider_names_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        credential_provider_config([ProviderPlan(), ProviderPlan()])


def test_the_rbac_lets_the_nodes_request_tokens_for_the_audience_only() -> None:
    role, binding = rbac_objects("issuer.example")
    assert role["kind"] == "ClusterRole"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["issuer.example"],
            "verbs": ["request-serviceaccounts-token-audience"],
        }
    ]
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
    ]


def test_the_audience_is_read_back_from_a_config() -> None:
    config = credential_provider_config([ProviderPlan(audience="sts.example")])
    assert audience_in_config(config) == "sts.example"
    with pytest.raises(ValueError, match="no provider named"):
        audience_in_config(config, name="other")
    plain = credential_provider_config(
        [ProviderPlan(service_account_tokens=False, node_token_file="/t", node_identity="a/b")]
    )
    with pytest.raises(ValueError, match="gets no ServiceAccount tokens"):
        audience_in_config(plain)


@pytest.mark.parametrize(
    ("argv", "shipped"),
    [
        (["credential-provider", "rbac"], "rbac.yaml"),
        (["credential-provider", "config"], "credential-provider-config.yaml"),
    ],
)
def test_the_shipped_files_are_what_the_commands_print(
    argv: list[str], shipped: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out == (SHIPPED / shipped).read_text()


def test_the_printed_config_is_one_yaml_document(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["credential-provider", "config", "--provider=chainguard", "--registry=127.0.0.1:5000",
            "--audience=sts.example",
            "--ca-bundle=/etc/psu/ca.pem", "--cache-margin=120"]  # fmt: skip
    assert main(argv) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    [provider] = document["providers"]
    assert provider["matchImages"] == ["127.0.0.1:5000"]
    assert provider["tokenAttributes"]["serviceAccountTokenAudience"] == "sts.example"
    assert provider["args"] == [
        "--issuer=https://issuer.enforce.dev",
        "--registry=127.0.0.1:5000",
        "--ca-bundle=/etc/psu/ca.pem",
        "--cache-margin=120",
    ]


def test_a_config_mistake_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["credential-provider", "config", "--match-image=chainguard:docker.io"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pull-secret-updater credential-provider: match image 'docker.io'")


def test_the_config_has_one_entry_per_provider_each_with_its_audience_and_annotations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["credential-provider", "config"]) == 0
    providers = {p["name"]: p for p in yaml.safe_load(capsys.readouterr().out)["providers"]}
    plugin = "pull-secret-updater-credential-provider"
    assert sorted(providers) == [plugin, f"{plugin}-acr", f"{plugin}-ecr", f"{plugin}-gar"]
    ecr, gar, acr = (providers[f"{plugin}-{name}"] for name in ("ecr", "gar", "acr"))
    assert ecr["args"] == ["--provider=ecr"]
    assert ecr["matchImages"][0] == "*.dkr.ecr.*.amazonaws.com"
    assert ecr["tokenAttributes"] == {
        "serviceAccountTokenAudience": "sts.amazonaws.com",
        "cacheType": "ServiceAccount",
        "requireServiceAccount": True,
        "requiredServiceAccountAnnotationKeys": ["ecr.pull-secret-updater.chainguard.dev/role-arn"],
    }
    assert gar["tokenAttributes"]["requiredServiceAccountAnnotationKeys"] == [
        "gar.pull-secret-updater.chainguard.dev/workload-identity-provider"
    ]
    assert gar["tokenAttributes"]["optionalServiceAccountAnnotationKeys"] == [
        "gar.pull-secret-updater.chainguard.dev/service-account"
    ]
    assert acr["tokenAttributes"]["serviceAccountTokenAudience"] == "api://AzureADTokenExchange"
    assert acr["tokenAttributes"]["requiredServiceAccountAnnotationKeys"] == [
        "acr.pull-secret-updater.chainguard.dev/tenant-id",
        "acr.pull-secret-updater.chainguard.dev/client-id",
    ]
    assert providers[plugin]["args"] == [
        "--issuer=https://issuer.enforce.dev",
        "--registry=cgr.dev",
    ]


def test_a_subset_of_providers_with_options_of_each(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["credential-provider", "config", "--provider=ecr", "--provider=gar",
            "--match-image=ecr:111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            "--endpoint=ecr:sts=https://sts.example", "--audience=gar:aud.example",
            "--ca-bundle=/etc/psu/ca.pem"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rbac --audience=sts.amazonaws.com --audience=aud.example" in out
    ecr, gar = yaml.safe_load(out)["providers"]
    assert ecr["matchImages"] == ["111122223333.dkr.ecr.eu-west-1.amazonaws.com"]
    assert ecr["args"] == ["--provider=ecr", "--endpoint=sts=https://sts.example",
                           "--ca-bundle=/etc/psu/ca.pem"]  # fmt: skip
    assert gar["args"] == [
        "--provider=gar",
        "--audience=aud.example",
        "--ca-bundle=/etc/psu/ca.pem",
    ]
    assert gar["tokenAttributes"]["serviceAccountTokenAudience"] == "aud.example"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--audience=x"], "say which provider"),
        (["--provider=ecr", "--audience=gar:x"], "gar is not chosen"),
        (["--provider=ecr", "--endpoint=issuer=https://x"], "ecr has no endpoint 'issuer'"),
        (["--provider=ecr", "--endpoint=sts=http://x"], "https"),
        (["--provider=ecr", "--issuer=https://x"], "chainguard provider only"),
    ],
)
def test_a_provider_option_must_say_whose_and_fit_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["credential-provider", "config", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_plugin_accepts_the_args_the_generator_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pull_secret_updater.credentialprovider.options import parse_options

    assert main(["credential-provider", "config", "--key-cache=/var/cache/psu"]) == 0
    [chainguard] = yaml.safe_load(capsys.readouterr().out)["providers"]
    assert parse_options(chainguard["args"]).key_cache == Path("/var/cache/psu")
    assert main(["credential-provider", "config"]) == 0
    for provider in yaml.safe_load(capsys.readouterr().out)["providers"]:
        options = parse_options(provider["args"])
        assert options.audience == provider["tokenAttributes"]["serviceAccountTokenAudience"]
