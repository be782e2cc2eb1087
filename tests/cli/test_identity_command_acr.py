"""identity-command --provider acr, run in-process against an API server that is a function.

The commands go to stdout and nothing else does: pasted into bash they create the managed
identity (or app registration), its federated credential for the cluster's issuer and the
ServiceAccount's subject with Entra's audience, and the AcrPull assignment on the registry.
What to know about them goes to stderr: what was recognised, the placeholders, what to
annotate, and for an issuer Entra cannot reach, a warning.
"""

from __future__ import annotations

import json
import shlex

import pytest

from pull_secret_updater.cli import main
from pull_secret_updater.providers.acr.spec import CLIENT_ID, REGISTRY, TENANT_ID
from tests.cli.identity_support import KIND, identity_command

AKS = "https://westeurope.oic.prod-aks.azure.com/72f988bf-86f1-41af-91ab-2d7cd011db47/1234abcd/"
AUDIENCE = "api://AzureADTokenExchange"


@pytest.fixture
def cluster(issuer: list[str]) -> list[str]:
    """The cluster's issuer, AKS's unless a test changes it."""
    issuer[0] = AKS
    return issuer


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[list[list[str]], str]:
    out, notes = identity_command(capsys, "acr", *args)
    commands = [shlex.split(p.replace("\\\n", " ")) for p in out.strip().split("\n\n")]
    return commands, notes


def options(argv: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else ""
            found[word[2:]] = value
    return found


def test_a_managed_identity_its_federated_credential_and_acr_pull(
    cluster: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    commands, err = run(capsys, "--resource-group", "rg-pull", "--registry-name", "contoso")
    create, federate, assign = commands
    assert create[:3] == ["az", "identity", "create"]
    assert options(create) == {"name": "aks-pull-secrets", "resource-group": "rg-pull"}
    assert federate[:4] == ["az", "identity", "federated-credential", "create"]
    assert options(federate) == {
        "name": "pull-secret-updater-controller",
        "identity-name": "aks-pull-secrets",
        "resource-group": "rg-pull",
        "issuer": AKS,
        "subject": "system:serviceaccount:pull-secret-updater:controller",
        "audience": AUDIENCE,
    }
    assert assign[:4] == ["az", "role", "assignment", "create"]
    assigned = options(assign)
    assert assigned["role"] == "AcrPull"
    assert assigned["scope"] == "$(az acr show --name contoso --query id --output tsv)"
    assert "principalId" in assigned["assignee-object-id"]
    assert "warning" not in err
    assert f"{TENANT_ID}=$(az account show --query tenantId --output tsv)" in err
    assert f"{CLIENT_ID}=" in err
    assert f"{REGISTRY}=contoso.azurecr.io" in err
    assert "management" not in " ".join(" ".join(c) for c in commands), "never ARM's scope"


def test_an_app_registration_instead(
    cluster: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    commands, err = run(capsys, "--app-registration", "--name", "pullers")
    create, principal, federate, assign = commands
    assert create[:4] == ["az", "ad", "app", "create"]
    assert options(create) == {"display-name": "pullers"}
    assert principal[:4] == ["az", "ad", "sp", "create"]
    parameters = json.loads(options(federate)["parameters"])
    assert parameters == {
        "name": "pull-secret-updater-controller",
        "issuer": AKS,
        "subject": "system:serviceaccount:pull-secret-updater:controller",
        "audiences": [AUDIENCE],
    }
    assert (
        options(assign)["scope"]
        == "$(az acr show --name '<REGISTRY_NAME>' --query id --output tsv)"
    )
    assert "replace <REGISTRY_NAME>" in err
    assert "<RESOURCE_GROUP>" not in err


def test_namespace_scoped_is_one_identity_per_namespace(
    cluster: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    commands, err = run(capsys, "--for-namespace", "team-a", "--for-namespace", "team-b")
    federations = [
        options(c) for c in commands if c[:3] == ["az", "identity", "federated-credential"]
    ]
    assert [f["subject"] for f in federations] == [
        "system:serviceaccount:team-a:pull-secret-updater",
        "system:serviceaccount:team-b:pull-secret-updater",
    ]
    assert [f["identity-name"] for f in federations] == [
        "aks-pull-secrets-team-a",
        "aks-pull-secrets-team-b",
    ]
    assert "kubectl create serviceaccount pull-secret-updater -n team-a" in err


def test_a_private_issuer_gets_a_warning_that_entra_must_fetch_its_discovery(
    cluster: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster[0] = KIND
    _, err = run(capsys)
    assert "warning: Microsoft Entra ID cannot reach this issuer" in err
    assert f"{KIND}/.well-known/openid-configuration" in err


def test_options_of_other_providers_are_refused(
    cluster: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["identity-command", "--provider", "acr", "--embed-keys"]) != 0
    assert "a federated credential cannot carry keys" in capsys.readouterr().err
    assert main(["identity-command", "--resource-group", "rg"]) != 0
    assert "go with --provider acr" in capsys.readouterr().err
