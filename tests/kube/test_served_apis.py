"""The project uses no Kubernetes API that the oldest version tested lacks.

Offline, against the discovery document recorded from that version's API server
(``served_apis.py``); and on the running stack, whatever its version, against its own
discovery, which on the oldest version must also still match the recording.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.kubeversions import oldest, selected
from devstack.stack import LocalStack
from tests.kube.served_apis import (
    missing_from,
    read_recorded,
    recorded_path,
    resources_used_by_the_code,
    served_resources,
)


def test_the_code_uses_the_apis_it_is_known_to_use() -> None:
    # The scan finds the resources (a scan that found nothing would pass anything).
    used = resources_used_by_the_code()
    assert {
        ("v1", "secrets"),
        ("v1", "events"),
        ("v1", "serviceaccounts/token"),
        ("coordination.k8s.io/v1", "leases"),
    } <= used


def test_the_oldest_version_tested_serves_every_api_the_project_uses() -> None:
    path = recorded_path(oldest())
    assert path.exists(), (
        f"no discovery recorded for {oldest()}: "
        f"KUBERNETES_VERSION={oldest()} uv run python -m tests.kube.served_apis"
    )
    assert missing_from(read_recorded(oldest())) == []


def test_a_missing_api_is_reported() -> None:
    served = read_recorded(oldest())
    served["coordination.k8s.io/v1"].pop("leases")
    served.pop("admissionregistration.k8s.io/v1")
    missing = missing_from(served)
    assert "coordination.k8s.io/v1 leases (used in src/)" in missing
    assert (
        "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (in config/ or the chart)"
        in missing
    )


@pytest.mark.stack
def test_the_running_api_server_serves_every_api_the_project_uses(stack: LocalStack) -> None:
    with stack.control_plane.admin.client() as client:

        def get(path: str) -> Any:
            response = client.get(path)
            response.raise_for_status()
            return response.json()

        served = served_resources(get)
    assert missing_from(served) == []
    if selected() == oldest():
        # The recording the offline test trusts is what this version really serves.
        assert read_recorded(oldest()) == served
