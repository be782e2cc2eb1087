"""The version matrix, as the test collection sees it.

``make test`` runs the whole suite on the newest Kubernetes version and ``COMPAT_SUBSET`` on
each older one in ``KUBERNETES_COMPAT_VERSIONS`` (``pytest --compat``): what users on an older
cluster rely on, at the cost of one stack and one node per version. A test that needs a
newer version than the one running is deselected, never skipped (``NEEDS``): under CI a skip
fails the run, and a version that cannot do something is not a failure of the test.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from devstack.kubeversions import (
    NODE_AUDIENCE_RESTRICTION,
    PLUGIN_SERVICE_ACCOUNT_TOKENS,
    KubeVersion,
)

#: Test files (or single tests, ``path::name``) run on every version of the matrix.
COMPAT_SUBSET = (
    # The quickstart: the controller's Deployment from config/, a Secret it fills, a real
    # kubelet pulling with it.
    "tests/e2e/test_quickstart.py",
    # Only verified tokens are kept and shared, against the cluster's own JWKS.
    "tests/reliability/test_token_trust.py::"
    "test_a_planted_token_is_replaced_at_once_and_never_reaches_another_namespace",
    # The ValidatingAdmissionPolicy that config/ ships (1.30+).
    "tests/deploy/test_admission_policy.py",
    # The chart, installed by helm as a user would, and the controller it configures.
    "tests/deploy/test_helm_install.py",
    "tests/reliability/test_leader_failover.py",
    # The kubelet plugin with the Pod's ServiceAccount token (1.34+).
    "tests/credentialprovider/test_kubelet_plugin.py",
    # What the controller logs about the server, and the APIs it uses are all served.
    "tests/kube/test_server_facts.py",
    "tests/kube/test_served_apis.py",
    # The stack runs the version asked for, kubelet included.
    "tests/stack/test_kubernetes_versions.py",
)

#: Tests that need a version newer than the oldest supported, with that version.
NEEDS: dict[str, KubeVersion] = {
    "tests/credentialprovider/test_kubelet_plugin.py": PLUGIN_SERVICE_ACCOUNT_TOKENS,
    # NodeRestriction confines a kubelet's token audiences from 1.33 on.
    "tests/credentialprovider/test_node_token_audience.py": NODE_AUDIENCE_RESTRICTION,
}


def _matches(nodeid: str, patterns: Iterable[str]) -> bool:
    return any(nodeid == p or nodeid.startswith(f"{p}::") for p in patterns)


def in_compat_subset(item: pytest.Item) -> bool:
    return _matches(item.nodeid, COMPAT_SUBSET)


def needed_version(item: pytest.Item) -> KubeVersion | None:
    """The version ``item`` needs, if it needs more than the oldest supported."""
    needs = [v for pattern, v in NEEDS.items() if _matches(item.nodeid, (pattern,))]
    return max(needs) if needs else None


def select(
    items: list[pytest.Item], *, version: KubeVersion, compat: bool
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, deselected): the compatibility subset if ``compat``, without what ``version``
    cannot do."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        needs = needed_version(item)
        wanted = in_compat_subset(item) if compat else True
        if wanted and (needs is None or version.at_least(needs)):
            kept.append(item)
        else:
            dropped.append(item)
    return kept, dropped
