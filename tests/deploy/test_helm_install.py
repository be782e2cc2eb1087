"""``helm install`` into the local API server, then the installed controller at work.

The release goes into a namespace of its own (config/ already owns ``pull-secret-updater`` in
this session), with cluster-scoped objects named after the release. The controller then runs
as that namespace's ``controller`` ServiceAccount, configured only by what the chart installed
(``PodRunner`` reads the Deployment back and mounts its ConfigMaps and projected token): so the
chart's RBAC, identity policy, CA bundle, Lease name and admission policy are all exercised by
a real fill.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from devstack.stack import LocalStack
from tests.deploy.support import CHART, Helm, PodRunner, value_args
from tests.helpers import (
    EXPIRES_AT,
    LAST_ERROR,
    ClusterHelper,
    denial,
    eventually,
    merge_patch,
    service_account_client,
    wait_until_enforced,
)

pytestmark = pytest.mark.stack


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    fullname: str
    identity: str
    selector_label: tuple[str, str]


@pytest.fixture(scope="module")
def release(helm: Helm, stack: LocalStack) -> Iterator[Release]:
    cluster = ClusterHelper(stack)
    namespace = cluster.namespace("psu-helm")
    suffix = namespace.rsplit("-", 1)[1]
    name = f"psu-{suffix}"
    identity = stack.create_kind_identity(name=f"helm-{suffix}", namespace=namespace)
    label = ("pull-secrets.example.com/helm", suffix)
    values = {
        "issuer": stack.token_service.url,
        "registry": stack.registry.host,
        "caBundle": stack.ca_file.read_text(),
        "policy": {
            "rules": [
                {"identities": [identity], "namespaceSelector": {"matchLabels": dict([label])}}
            ]
        },
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
        "refresh": {"exchangeTimeout": 2, "backoffBase": 0.5, "backoffCap": 4},
    }
    helm.run("install", name, str(CHART), f"--namespace={namespace}", *value_args(values))
    try:
        yield Release(
            name=name,
            namespace=namespace,
            fullname=f"{name}-pull-secret-updater",
            identity=identity,
            selector_label=label,
        )
    finally:
        helm.run("uninstall", name, f"--namespace={namespace}", "--wait", check=False)
        stack.token_admin().delete_identity(identity)


@pytest.fixture(scope="module")
def as_controller(stack: LocalStack, release: Release) -> Iterator[httpx2.Client]:
    with service_account_client(stack, release.namespace, "controller") as client:
        yield client


@pytest.fixture(scope="module")
def enforced(stack: LocalStack, release: Release, as_controller: httpx2.Client) -> None:
    """Wait until the release's admission policy denies a known-bad write by its controller."""
    wait_until_enforced(ClusterHelper(stack), as_controller, prefix="helm-probe")


@pytest.fixture(scope="module")
def pod(
    stack: LocalStack, release: Release, enforced: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodRunner]:
    runner = PodRunner(stack, release.namespace, release.fullname, tmp_path_factory.mktemp("pod"))
    try:
        yield runner.start()
    finally:
        runner.stop()
        print(f"--- {runner.pod_name} log (tail) ---\n{runner.log_tail()}")


def test_installed_objects_are_named_after_the_release(stack: LocalStack, release: Release) -> None:
    cluster = ClusterHelper(stack)
    got = cluster.kubectl(
        "get",
        "clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding",
        "-o",
        "name",
        f"--selector=app.kubernetes.io/instance={release.name}",
    ).split()
    assert sorted(got) == sorted(
        [
            f"clusterrole.rbac.authorization.k8s.io/{release.fullname}",
            f"clusterrolebinding.rbac.authorization.k8s.io/{release.fullname}",
            f"validatingadmissionpolicy.admissionregistration.k8s.io/{release.fullname}"
            "-controller-writes",
            f"validatingadmissionpolicybinding.admissionregistration.k8s.io/{release.fullname}"
            "-controller-writes",
        ]
    )
    account = cluster.kubectl(
        "-n", release.namespace, "get", "serviceaccount", "controller", "-o", "name"
    )
    assert account.strip() == "serviceaccount/controller"


def test_installed_network_policy_selects_the_release_pods_and_its_metrics_port(
    stack: LocalStack, release: Release
) -> None:
    def get(kind: str) -> dict[str, Any]:
        return dict(json.loads(ClusterHelper(stack).kubectl(
            "-n", release.namespace, "get", kind, release.fullname, "-o", "json")))  # fmt: skip

    policy, deployment = get("networkpolicy"), get("deployment")

    pod = deployment["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        pod["metadata"]["labels"].items()
    )
    (port,) = pod["spec"]["containers"][0]["ports"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]
    assert len(rule["from"]) == 1
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_installed_controller_fills_a_secret_that_pulls(
    pod: PodRunner, release: Release, cluster: ClusterHelper, tmp_path: Path
) -> None:
    namespace = cluster.namespace("helm-app", labels=dict([release.selector_label]))

    cluster.create_pull_secret(namespace, release.identity)

    cluster.wait_filled(namespace)
    assert EXPIRES_AT in cluster.annotations(namespace)
    assert cluster.pull(cluster.docker_config(namespace), tmp_path) == 0
    # It leads through the Lease the chart named and granted.
    lease = json.loads(
        cluster.kubectl("-n", release.namespace, "get", "lease", release.fullname, "-o", "json")
    )
    assert lease["spec"]["holderIdentity"].startswith(pod.pod_name)


def test_installed_policy_keeps_the_identity_out_of_other_namespaces(
    pod: PodRunner, release: Release, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("helm-other")

    cluster.create_pull_secret(namespace, release.identity)

    # Reading the namespace's labels needs the get-namespaces rule the chart added.
    error = eventually(
        lambda: cluster.annotations(namespace).get(LAST_ERROR),
        timeout=20,
        what="the policy's refusal on the Secret",
    )
    assert "policy" in error
    assert cluster.token(namespace) is None


def test_installed_admission_policy_confines_the_controller(
    pod: PodRunner, release: Release, cluster: ClusterHelper, as_controller: httpx2.Client
) -> None:
    namespace = cluster.namespace("helm-vap", labels=dict([release.selector_label]))
    cluster.create_pull_secret(namespace, release.identity)
    cluster.wait_filled(namespace)

    response = merge_patch(as_controller, namespace, {"metadata": {"labels": {"team": "x"}}})

    assert f"{release.fullname}-controller-writes" in (denial(response) or ""), response.text
