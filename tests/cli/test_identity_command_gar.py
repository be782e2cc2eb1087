"""identity-command --provider gar, run in-process against an API server that is a function.

The commands go to stdout and nothing else does: pasted into bash they are the gcloud calls
that create the pool, its OIDC provider for the cluster's issuer (with the cluster's keys when
Google cannot fetch them) and the IAM bindings. What to know goes to stderr, including the
annotations, which the provider's own spec accepts.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from pull_secret_updater.cli import main
from pull_secret_updater.providers.gar.spec import (
    REGISTRIES,
    SERVICE_ACCOUNT,
    WORKLOAD_IDENTITY_PROVIDER,
    GarSpec,
)
from pull_secret_updater.tools.gcpfederation import READER_ROLE, WORKLOAD_IDENTITY_USER
from tests.cli.identity_support import EKS, JWKS, KIND, identity_command

EMAIL = "puller@my-project.iam.gserviceaccount.com"
PROJECT = ("--project", "my-project", "--project-number", "123456789012")
CONTROLLER = "system:serviceaccount:pull-secret-updater:controller"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    return identity_command(capsys, "gar", *args)


def gcloud_calls(out: str) -> list[list[str]]:
    """Each gcloud command as argv (the `cat` here-document left out)."""
    return [
        shlex.split(paragraph.replace("\\\n", " "))
        for paragraph in out.strip().split("\n\n")
        if paragraph.startswith("gcloud ")
    ]


def flags(argv: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)


def test_stdout_is_the_pool_its_provider_and_the_binding_for_the_controller(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = run(capsys, *PROJECT, "--gcp-service-account", EMAIL)

    pool, provider, binding = gcloud_calls(out)
    assert pool[:5] == ["gcloud", "iam", "workload-identity-pools", "create", "eks-pull-secrets"]
    assert flags(pool)["project"] == "my-project"
    assert provider[:6] == ["gcloud", "iam", "workload-identity-pools", "providers",
                            "create-oidc", "kubernetes"]  # fmt: skip
    assert flags(provider) == {
        "project": "my-project",
        "location": "global",
        "workload-identity-pool": "eks-pull-secrets",
        "issuer-uri": EKS,
        "allowed-audiences": "sts.googleapis.com",
        "attribute-mapping": "google.subject=assertion.sub",
        "attribute-condition": f"assertion.sub == '{CONTROLLER}'",
    }
    assert binding[:5] == ["gcloud", "iam", "service-accounts", "add-iam-policy-binding", EMAIL]
    assert flags(binding)["role"] == WORKLOAD_IDENTITY_USER
    assert flags(binding)["member"] == (
        "principal://iam.googleapis.com/projects/123456789012/locations/global/"
        f"workloadIdentityPools/eks-pull-secrets/subject/{CONTROLLER}"
    )


def test_a_private_issuer_gives_google_the_clusters_keys(
    issuer: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    issuer[0] = KIND
    out, notes = run(capsys, *PROJECT)

    assert out.startswith("cat > cluster-jwks.json <<'EOF'\n")
    provider = gcloud_calls(out)[1]
    assert flags(provider)["jwk-json-path"] == "cluster-jwks.json"
    # The here-document, run by bash, writes the keys exactly.
    script = out.strip().split("\n\n")[0]
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True)
    assert json.loads((tmp_path / "cluster-jwks.json").read_text()) == JWKS
    assert "update-oidc" in notes
    assert "Google is given the cluster's keys" in notes


def test_without_a_service_account_the_principal_reads_the_repository_directly(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, notes = run(capsys, *PROJECT, "--repository", "images", "--location", "europe-west4")

    binding = gcloud_calls(out)[-1]
    assert binding[:5] == ["gcloud", "artifacts", "repositories", "add-iam-policy-binding",
                           "images"]  # fmt: skip
    assert flags(binding)["role"] == READER_ROLE
    assert flags(binding)["location"] == "europe-west4"
    assert f"{REGISTRIES}=europe-west4-docker.pkg.dev" in notes


def test_namespace_scoped_admits_each_namespace_and_binds_each(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, notes = run(capsys, *PROJECT, "--gcp-service-account", EMAIL,
                     "--for-namespace", "team-a", "--for-namespace", "team-b")  # fmt: skip

    calls = gcloud_calls(out)
    assert flags(calls[1])["attribute-condition"] == (
        "assertion.sub in ['system:serviceaccount:team-a:pull-secret-updater', "
        "'system:serviceaccount:team-b:pull-secret-updater']"
    )
    assert [flags(c)["member"].rsplit("/subject/", 1)[1] for c in calls[2:]] == [
        "system:serviceaccount:team-a:pull-secret-updater",
        "system:serviceaccount:team-b:pull-secret-updater",
    ]
    assert "kubectl create serviceaccount pull-secret-updater -n team-b" in notes


def test_the_annotations_in_the_notes_are_what_the_provider_accepts(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, notes = run(capsys, *PROJECT, "--gcp-service-account", EMAIL, "--location", "us")

    annotations = dict(
        word.split("=", 1) for word in notes.split() if word.startswith("gar.pull-secret")
    )
    assert set(annotations) == {WORKLOAD_IDENTITY_PROVIDER, REGISTRIES, SERVICE_ACCOUNT}
    want = GarSpec().wants(annotations)
    assert want is not None
    assert (want.identity, want.registries) == (EMAIL, ("us-docker.pkg.dev",))
    assert want.scope == (
        "projects/123456789012/locations/global/workloadIdentityPools/eks-pull-secrets/"
        "providers/kubernetes"
    )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--pool", "gcp-reserved"), "not a workload identity pool ID"),
        (("--project-number", "my-project"), "not a project number"),
        (("--gcp-service-account", "someone@example.com"), "not a Google service account"),
    ],
)
def test_bad_names_are_usage_errors(
    issuer: list[str], capsys: pytest.CaptureFixture[str], args: tuple[str, ...], problem: str
) -> None:
    assert main(["identity-command", "--provider", "gar", *args]) == 2
    assert problem in capsys.readouterr().err


def test_google_flags_need_the_gar_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identity-command", "--pool", "mypool"]) == 2
    assert "go with --provider gar" in capsys.readouterr().err


def test_credential_provider_mode_admits_the_workloads_with_the_kubelets_audience(
    issuer: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, notes = run(capsys, *PROJECT, "--for-service-account", "team-a/app",
                     "--audience", "kubelet-audience")  # fmt: skip

    provider = gcloud_calls(out)[1]
    assert flags(provider)["allowed-audiences"] == "kubelet-audience"
    assert flags(provider)["attribute-condition"] == (
        "assertion.sub == 'system:serviceaccount:team-a:app'"
    )
    assert "kubectl annotate serviceaccount app -n team-a" in notes
