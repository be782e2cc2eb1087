"""The version matrix: one setting picks the version, each difference between versions is
applied where it exists, and what a version cannot do is deselected rather than skipped."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from devstack import binaries
from devstack.kubeversions import (
    KubeVersion,
    apiserver_args,
    compat_versions,
    kubelet_config,
    newest,
    oldest,
    selected,
)
from devstack.node import Node
from devstack.stack import LocalStack
from tests import matrix

V1_30 = KubeVersion.parse("v1.30.14")
V1_33 = KubeVersion.parse("v1.33.13")
V1_34 = KubeVersion.parse("v1.34.4")
V1_37 = KubeVersion.parse("v1.37.2")


def test_versions_parse_and_order() -> None:
    assert KubeVersion.parse("1.30.14") == V1_30
    assert KubeVersion.parse("v1.30.14-eks-1") == V1_30
    assert str(KubeVersion.parse("v1.34")) == "v1.34.0"
    assert V1_30 < V1_34 < V1_37
    assert V1_34.at_least(KubeVersion(1, 34))
    assert not V1_33.at_least(KubeVersion(1, 34))
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        KubeVersion.parse("latest")


def test_the_default_is_the_newest_and_the_older_ones_run_the_subset() -> None:
    older = compat_versions()
    assert older, "the matrix has versions older than the default"
    assert all(v < newest() for v in older)
    assert oldest() == older[0]


def test_one_setting_picks_the_version_default_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_VERSION", raising=False)
    assert selected() == newest()
    monkeypatch.setenv("KUBERNETES_VERSION", "1.30.14")
    assert selected() == V1_30
    # The binaries the stack looks for are that version's.
    assert binaries.kubernetes_version() == "v1.30.14"


def test_the_api_server_advertises_loopback_and_from_1_37_reconciles_no_endpoints() -> None:
    # 1.37 refuses a loopback advertise address while it reconciles the kubernetes Service.
    assert apiserver_args(V1_34) == ["--advertise-address=127.0.0.1"]
    assert apiserver_args(V1_37) == [
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
    ]


def test_the_kubelet_config_loses_what_an_old_kubelet_does_not_know() -> None:
    config = {"failCgroupV1": False, "port": 10250}
    assert kubelet_config(V1_37, config) == config
    assert kubelet_config(V1_30, config) == {"port": 10250}
    assert config == {"failCgroupV1": False, "port": 10250}  # not changed in place


def test_only_1_33_needs_the_gate_for_the_plugins_service_account_tokens() -> None:
    gate = "KubeletServiceAccountTokenForCredentialProviders"
    assert kubelet_config(V1_33, {})["featureGates"] == {gate: True}
    assert "featureGates" not in kubelet_config(V1_34, {})
    assert "featureGates" not in kubelet_config(V1_30, {})


@dataclass
class _Item:
    nodeid: str


PLUGIN = "tests/credentialprovider/test_kubelet_plugin.py::test_pods_pull"
QUICKSTART = "tests/e2e/test_quickstart.py::test_quickstart"
UNIT = "tests/unit/test_something.py::test_it"
TRUST = (
    "tests/reliability/test_token_trust.py::"
    "test_a_planted_token_is_replaced_at_once_and_never_reaches_another_namespace"
)
OTHER_TRUST = "tests/reliability/test_token_trust.py::test_a_rotation"


def _select(version: KubeVersion, *, compat: bool) -> tuple[list[str], list[str]]:
    items = [_Item(n) for n in (PLUGIN, QUICKSTART, UNIT, TRUST, OTHER_TRUST)]
    kept, dropped = matrix.select(items, version=version, compat=compat)  # type: ignore[arg-type]
    return [i.nodeid for i in kept], [i.nodeid for i in dropped]


def test_the_compatibility_subset_keeps_what_the_version_can_do() -> None:
    assert _select(V1_34, compat=True) == ([PLUGIN, QUICKSTART, TRUST], [UNIT, OTHER_TRUST])
    assert _select(V1_30, compat=True) == ([QUICKSTART, TRUST], [PLUGIN, UNIT, OTHER_TRUST])


def test_the_whole_suite_deselects_only_what_the_version_cannot_do() -> None:
    everything = [PLUGIN, QUICKSTART, UNIT, TRUST, OTHER_TRUST]
    assert _select(V1_37, compat=False) == (everything, [])
    assert _select(V1_30, compat=False) == (everything[1:], [PLUGIN])


def test_every_test_the_matrix_names_exists() -> None:
    root = binaries.REPO
    for pattern in (*matrix.COMPAT_SUBSET, *matrix.NEEDS):
        path, _, name = pattern.partition("::")
        assert (root / path).is_file(), pattern
        if name:
            assert f"def {name}(" in (root / path).read_text(), pattern


@pytest.mark.node
def test_the_node_runs_the_selected_version(stack: LocalStack, node: Node) -> None:
    info = json.loads(stack.control_plane.kubectl("get", "node", node.name, "-o", "json"))
    versions = info["status"]["nodeInfo"]
    assert versions["kubeletVersion"] == str(selected())
    assert stack.control_plane.version == selected()
