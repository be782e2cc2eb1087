"""Fixtures for the deployment artefacts: the Helm chart and the admission policy.

helm is optional on a developer's machine (``bash hack/build-testbins.sh helm`` builds it);
without it the chart's tests are skipped with that hint (a failure under CI=true), and the
admission policy's are not.
"""

from __future__ import annotations

import pytest

from devstack.binaries import MissingBinary, find_helm
from devstack.stack import LocalStack
from tests.deploy.support import Helm


@pytest.fixture(scope="session")
def helm_binary() -> Helm:
    try:
        return Helm(find_helm())
    except MissingBinary as e:
        pytest.skip(f"helm is missing ({e})")


@pytest.fixture(scope="session")
def helm(helm_binary: Helm, stack: LocalStack) -> Helm:
    """helm pointed at the local stack as its admin."""
    return Helm(helm_binary.binary, kubeconfig=stack.kubeconfig)
