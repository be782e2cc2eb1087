"""What the API server is, and which of the APIs the install relies on it serves.

Read once at start from the discovery endpoints, which every authenticated user may read
(`system:discovery`): the controller needs no permission for it. It logs the server's
version, and warns when something the install relies on for its safety is missing, rather
than letting its absence pass in silence: the ValidatingAdmissionPolicy that confines the
controller's own writes needs `admissionregistration.k8s.io/v1` (Kubernetes 1.30+).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import lightkube

from pull_secret_updater.kube.client import http_client
from pull_secret_updater.kube.errors import KubeError, translated

__all__ = ["ADMISSION_POLICIES", "ServerFacts", "read_server_facts"]

#: The group version and resource of the admission policy the install ships.
ADMISSION_POLICIES = ("admissionregistration.k8s.io/v1", "validatingadmissionpolicies")

#: A version or discovery document is a few kilobytes; a far larger one is not one.
MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFacts:
    """The server's `gitVersion` (None if it would not say) and whether it serves
    ValidatingAdmissionPolicies."""

    version: str | None
    admission_policies: bool


async def read_server_facts(client: lightkube.AsyncClient) -> ServerFacts:
    """The facts; never raises for an answer it cannot use (a fact it cannot read is None
    or False), only `KubeError` subclasses for a server it cannot reach at all."""
    version_doc = await _get(client, "/version")
    version = version_doc.get("gitVersion") if version_doc else None
    group, resource = ADMISSION_POLICIES
    resources = await _get(client, f"/apis/{group}")
    listed = resources.get("resources") if resources is not None else None
    served = isinstance(listed, list) and any(
        isinstance(item, dict) and item.get("name") == resource for item in listed
    )
    return ServerFacts(
        version=version if isinstance(version, str) and version.isprintable() else None,
        admission_policies=served,
    )


async def _get(client: lightkube.AsyncClient, path: str) -> dict[str, object] | None:
    http = http_client(client)
    with translated(f"GET {path}"):
        response = await http.get(path.lstrip("/"), headers={"Accept": "application/json"})
    if response.status_code == 404:
        return None  # the group is not served at all
    if response.status_code != 200 or len(response.content) > MAX_BYTES:
        raise KubeError(f"GET {path} answered {response.status_code}")
    try:
        document = json.loads(response.content)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
