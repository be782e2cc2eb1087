"""The installs on a cluster that does not serve ValidatingAdmissionPolicy (before Kubernetes 1.30).

A second API server, of the same build, with admissionregistration.k8s.io/v1's
validatingadmissionpolicies and their bindings turned off: to kubectl and helm it looks like an
older cluster, whose discovery lists no such API. On it, ``kubectl apply -k config/`` must fail
visibly on the policy (and apply the rest), config/without-admission/ must apply cleanly, and
``helm install`` must say in its notes that the policy is missing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.cluster import ControlPlane
from devstack.stack import LocalStack
from tests.deploy.support import CONFIG, WITHOUT_ADMISSION, Helm, kustomize

pytestmark = pytest.mark.stack

OFF = ",".join(
    f"admissionregistration.k8s.io/v1/{resource}=false"
    for resource in ("validatingadmissionpolicies", "validatingadmissionpolicybindings")
)


@pytest.fixture(scope="module")
def older(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    control_plane = ControlPlane(
        tmp_path_factory.mktemp("older-cluster"),
        binaries=stack.binaries,
        ca=stack.ca,
        # The admission plugin would watch the API turned off; a cluster before 1.30 runs none.
        extra_apiserver_args=(
            f"--runtime-config={OFF}",
            "--disable-admission-plugins=ValidatingAdmissionPolicy",
        ),
    )
    try:
        control_plane.start()
        yield control_plane
    finally:
        control_plane.stop()


def apply(stack: LocalStack, older: ControlPlane, path: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl apply -k`` on the older cluster, failed or not."""
    return subprocess.run(
        [str(stack.binaries.kubectl), f"--kubeconfig={older.admin.kubeconfig}",
         "apply", "-k", str(path), "-o", "name"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_api_server_serves_no_admission_policy(older: ControlPlane) -> None:
    resources = older.kubectl("api-resources", "--api-group=admissionregistration.k8s.io")

    assert "ValidatingWebhookConfiguration" in resources
    assert "ValidatingAdmissionPolicy" not in resources


def test_config_fails_visibly_on_the_policy_and_applies_the_rest(
    stack: LocalStack, older: ControlPlane
) -> None:
    result = apply(stack, older, CONFIG)

    assert result.returncode != 0
    assert 'no matches for kind "ValidatingAdmissionPolicy"' in result.stderr, result.stderr
    assert 'no matches for kind "ValidatingAdmissionPolicyBinding"' in result.stderr
    assert len(result.stdout.split()) == len(kustomize(WITHOUT_ADMISSION))


def test_without_admission_applies_cleanly(stack: LocalStack, older: ControlPlane) -> None:
    result = apply(stack, older, WITHOUT_ADMISSION)

    assert result.returncode == 0, result.stderr
    applied = result.stdout.split()
    assert len(applied) == len(kustomize(WITHOUT_ADMISSION))
    assert "networkpolicy.networking.k8s.io/pull-secret-updater" in applied


def test_helm_install_warns_that_the_policy_is_missing(
    helm_binary: Helm, older: ControlPlane
) -> None:
    helm = Helm(helm_binary.binary, kubeconfig=older.admin.kubeconfig)
    older.kubectl("create", "namespace", "psu-older")

    notes = helm.notes(
        release="psu-older",
        namespace="psu-older",
        values={"secretNames": ["pull-secret", "ci-pull"]},
        dry_run=False,
    )

    warning = notes[notes.index("WARNING: the admission policy was NOT installed") :]
    assert "Kubernetes 1.30+" in warning
    assert "pull-secret, ci-pull" in warning
    assert "admissionPolicy.enabled=false" in warning
    installed = older.kubectl("get", "deployment,networkpolicy", "-n", "psu-older", "-o", "name")
    assert sorted(installed.split()) == [
        "deployment.apps/psu-older-pull-secret-updater",
        "networkpolicy.networking.k8s.io/psu-older-pull-secret-updater",
    ]
