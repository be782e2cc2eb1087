"""config/ includes the admission policy; config/without-admission/ is the same without it.

``kubectl apply -k config/`` installs the policy with the controller, and the API server
enforces it. The test that applies deletes the policy first, so that what it finds was
installed by that apply, and leaves config/ applied and its policy enforced, as the rest of the
session expects. What the overlay for older clusters does on such a cluster is in
test_older_cluster.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devstack.controller import NAMESPACE, SERVICE_ACCOUNT
from devstack.stack import LocalStack
from tests.deploy.support import ADMISSION, CONFIG, WITHOUT_ADMISSION, Obj, find, kustomize
from tests.helpers import ClusterHelper, service_account_client, wait_until_enforced

POLICY = "pull-secret-updater-controller-writes"
ADMISSION_OBJECTS = {
    f"validatingadmissionpolicy.admissionregistration.k8s.io/{POLICY}",
    f"validatingadmissionpolicybinding.admissionregistration.k8s.io/{POLICY}",
}


def names(objects: list[Obj]) -> set[str]:
    return {f"{o['kind']}/{o['metadata']['name']}" for o in objects}


def admission_names(objects: list[Obj]) -> set[str]:
    return names([o for o in objects if o["apiVersion"].startswith("admissionregistration.")])


def installed_policy(cluster: ClusterHelper) -> set[str]:
    """The admission policy's objects the API server holds, as ``kubectl -o name`` names them."""
    return set(
        cluster.kubectl(
            "get",
            "validatingadmissionpolicy,validatingadmissionpolicybinding",
            f"--field-selector=metadata.name={POLICY}",
            "-o",
            "name",
        ).split()
    )


def apply(cluster: ClusterHelper, path: Path) -> set[str]:
    """``kubectl apply -k``; returns the names of the objects it applied."""
    return set(cluster.kubectl("apply", "-k", str(path), "-o", "name").split())


@pytest.fixture
def no_policy(stack: LocalStack, installed: str) -> Iterator[ClusterHelper]:
    """The admission policy deleted; config/ applied again, and enforced, afterwards."""
    cluster = ClusterHelper(stack)
    cluster.kubectl("delete", "-k", str(ADMISSION), "--ignore-not-found")
    assert installed_policy(cluster) == set()
    try:
        yield cluster
    finally:
        cluster.kubectl("apply", "-k", str(CONFIG))
        with service_account_client(stack, NAMESPACE, SERVICE_ACCOUNT) as as_controller:
            wait_until_enforced(cluster, as_controller, prefix="reinstalled-probe")


# -- rendered -----------------------------------------------------------------------------------


def test_config_includes_the_admission_policy() -> None:
    config, admission = kustomize(CONFIG), kustomize(ADMISSION)

    assert (
        admission_names(config)
        == names(admission)
        == {
            f"ValidatingAdmissionPolicy/{POLICY}",
            f"ValidatingAdmissionPolicyBinding/{POLICY}",
        }
    )
    for obj in admission:
        assert find(config, obj["kind"]) == obj


def check_is_without_the_policy(without: list[Obj], full: list[Obj]) -> None:
    assert admission_names(without) == set()
    assert names(without) == names(full) - admission_names(full)
    for obj in without:
        assert obj == find(full, obj["kind"], obj["metadata"]["name"])


def test_older_cluster_overlay_is_config_without_the_policy() -> None:
    check_is_without_the_policy(kustomize(WITHOUT_ADMISSION), kustomize(CONFIG))


def test_older_cluster_namespace_scoped_recipe_is_namespace_scoped_without_the_policy(
    tmp_path: Path,
) -> None:
    # The overlay config/README.md documents for namespace-scoped identities before 1.30.
    kustomization = {
        "resources": [os.path.relpath(WITHOUT_ADMISSION, tmp_path)],
        "components": [os.path.relpath(CONFIG / "components" / "namespace-scoped", tmp_path)],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))

    check_is_without_the_policy(kustomize(tmp_path), kustomize(CONFIG / "namespace-scoped"))


# -- applied --------------------------------------------------------------------------------------


@pytest.mark.stack
def test_apply_config_installs_and_enforces_the_admission_policy(
    stack: LocalStack, no_policy: ClusterHelper
) -> None:
    applied = apply(no_policy, CONFIG)

    assert applied >= ADMISSION_OBJECTS
    assert installed_policy(no_policy) == ADMISSION_OBJECTS
    binding = json.loads(
        no_policy.kubectl("get", "validatingadmissionpolicybinding", POLICY, "-o", "json")
    )
    assert binding["spec"]["policyName"] == POLICY
    assert binding["spec"]["validationActions"] == ["Deny"]
    with service_account_client(stack, NAMESPACE, SERVICE_ACCOUNT) as as_controller:
        wait_until_enforced(no_policy, as_controller, prefix="apply-k-probe")
