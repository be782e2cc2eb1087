"""The printed chainctl command has the original instructions' shape and runs in a shell."""

from __future__ import annotations

import json
import shlex

import pytest

from pull_secret_updater.tools.identity import (
    IdentityPlan,
    classify_issuer,
    plan_identity,
    rotation_warning,
)

KIND = "https://kubernetes.default.svc.cluster.local"
GKE = "https://container.googleapis.com/v1/projects/p/locations/europe-west1/clusters/c"
EKS = "https://oidc.eks.us-east-1.amazonaws.com/id/ABC123"
AKS = "https://eastus.oic.prod-aks.azure.com/tenant-id/cluster-guid/"
JWKS: dict[str, object] = {
    "keys": [{"use": "sig", "kty": "RSA", "kid": "k1", "alg": "RS256", "n": "q83v", "e": "AQAB"}]
}


def plan(issuer: str, **overrides: object) -> IdentityPlan:
    arguments: dict[str, object] = {
        "issuer": issuer,
        "issuer_class": classify_issuer(issuer),
        "namespace": "pull-secret-updater",
        "service_account": "controller",
        "jwks": JWKS,
    }
    arguments.update(overrides)
    return plan_identity(**arguments)  # type: ignore[arg-type]


def words(command: str) -> list[str]:
    """The command as the shell would split it (line continuations included)."""
    return shlex.split(command.replace("\\\n", " "))


def flags(command: str) -> dict[str, str]:
    return dict(w.removeprefix("--").split("=", 1) for w in words(command) if w.startswith("--"))


def test_kind_command_matches_the_original_instructions_with_the_keys_inlined() -> None:
    command = plan(KIND).command()
    assert command.splitlines()[0] == "chainctl iam identities create kind-pull-secrets \\"
    assert all(line.endswith(" \\") for line in command.splitlines()[:-1])
    assert words(command)[:4] == ["chainctl", "iam", "identities", "create"]
    assert flags(command) == {
        "issuer-keys": json.dumps(JWKS, separators=(",", ":")),
        "identity-issuer": KIND,
        "subject": "system:serviceaccount:pull-secret-updater:controller",
        "role": "registry.pull",
    }
    assert '--issuer-keys=\'{"keys":' in command, "the JWKS is single-quoted"
    assert json.loads(flags(command)["issuer-keys"]) == JWKS


def test_gke_command_uses_a_subject_pattern_and_no_keys() -> None:
    command = plan(GKE).command()
    assert words(command)[4] == "gke-pull-secrets"
    assert flags(command) == {
        "identity-issuer": GKE,
        "subject-pattern": "system:serviceaccount:pull-secret-updater:controller",
        "role": "registry.pull",
    }


@pytest.mark.parametrize(("issuer", "name"), [(EKS, "eks-pull-secrets"), (AKS, "aks-pull-secrets")])
def test_public_clouds_get_an_exact_subject_and_no_keys(issuer: str, name: str) -> None:
    command = plan(issuer).command()
    assert words(command)[4] == name
    assert flags(command) == {
        "identity-issuer": issuer,
        "subject": "system:serviceaccount:pull-secret-updater:controller",
        "role": "registry.pull",
    }


def test_the_issuer_is_kept_exactly_trailing_slash_included() -> None:
    assert flags(plan(AKS).command())["identity-issuer"].endswith("/cluster-guid/")


def test_a_public_issuer_gets_keys_only_when_asked() -> None:
    issuer = "https://oidc.example.com"
    assert "issuer-keys" not in flags(plan(issuer).command())
    embedded = flags(plan(issuer, embed_keys=True).command())
    assert json.loads(embedded["issuer-keys"]) == JWKS
    assert words(plan(issuer).command())[4] == "cluster-pull-secrets"


def test_name_namespace_and_service_account_can_be_chosen() -> None:
    command = plan(KIND, name="my identity", namespace="tools", service_account="puller").command()
    assert words(command)[4] == "my identity"
    assert flags(command)["subject"] == "system:serviceaccount:tools:puller"


def test_a_gke_pattern_matches_only_that_service_account() -> None:
    command = plan(GKE, service_account="ci.puller").command()
    assert (
        flags(command)["subject-pattern"] == r"system:serviceaccount:pull-secret-updater:ci\.puller"
    )


def test_keys_that_need_shell_quoting_survive_it() -> None:
    jwks: dict[str, object] = {"keys": [{"kid": "it's $HOME `x`", "kty": "RSA"}]}
    command = plan(KIND, jwks=jwks).command()
    assert json.loads(flags(command)["issuer-keys"]) == jwks


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"namespace": "Bad_NS"}, "not a valid namespace name"),
        ({"service_account": "-x"}, "not a valid ServiceAccount name"),
        ({"name": " "}, "must not be empty"),
        ({"jwks": None}, "keys (JWKS) are needed"),
        ({"jwks": {"keys": []}}, "has no keys"),
    ],
)
def test_bad_input_is_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(KIND, **overrides)


def test_only_an_identity_with_keys_gets_the_rotation_warning() -> None:
    warning = rotation_warning(plan(KIND))
    assert warning is not None
    assert "rotates" in warning
    assert "create a new identity with the new keys" in warning
    assert "pull-secret-updater.chainguard.dev/identity" in warning
    assert rotation_warning(plan(GKE)) is None


def test_a_workload_identity_trusts_one_service_account_with_the_kubelets_audience() -> None:
    command = plan(KIND, namespace="team-a", service_account="app", audience="sts.example",
                   name="kind-team-a-app").command()  # fmt: skip
    assert words(command)[4] == "kind-team-a-app"
    assert flags(command) == {
        "issuer-keys": json.dumps(JWKS, separators=(",", ":")),
        "identity-issuer": KIND,
        "subject": "system:serviceaccount:team-a:app",
        "audience": "sts.example",
        "role": "registry.pull",
    }


def test_without_an_audience_none_is_printed() -> None:
    assert "--audience" not in plan(KIND).command()


def test_the_workload_identitys_default_name_names_the_service_account() -> None:
    assert classify_issuer(KIND).workload_name("team-a", "app") == "kind-team-a-app"
    assert classify_issuer(EKS).workload_name("team-a", "app") == "eks-team-a-app"
