"""What the API server is, and which of the APIs the install relies on it serves.

Read once at start from the discovery endpoints, which every authenticated user may read
(`system:discovery`): the controller needs no permission for it. It logs the server's
version, and warns when something the install relies on for its safety is missing, rather
than letting its absence pass in silence: the ValidatingAdmissionPolicy that confines the
controller's own writes needs `admissionregistration.k8s.io/v1` (Kubernetes 1.30+).
`limitations` says, for one server, what the project cannot do or has not been tested on there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import lightkube

from pull_secret_updater.kube.client import http_client
from pull_secret_updater.kube.errors import KubeError, translated

__all__ = [
    "ADMISSION_POLICIES",
    "OLDEST_TESTED",
    "PLUGIN_SERVICE_ACCOUNT_TOKENS",
    "Limitation",
    "ServerFacts",
    "limitations",
    "read_server_facts",
]

#: The group version and resource of the admission policy the install ships.
ADMISSION_POLICIES = ("admissionregistration.k8s.io/v1", "validatingadmissionpolicies")

#: The oldest Kubernetes minor version the tests run on (the compatibility matrix).
OLDEST_TESTED = (1, 30)

#: The kubelet hands a credential-provider plugin the Pod's ServiceAccount token (KEP-4412)
#: from this version on (alpha behind a kubelet feature gate in 1.33).
PLUGIN_SERVICE_ACCOUNT_TOKENS = (1, 34)

_MINOR = re.compile(r"v(\d+)\.(\d+)")

#: A version or discovery document is a few kilobytes; a far larger one is not one.
MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFacts:
    """The server's `gitVersion` (None if it would not say) and whether it serves
    ValidatingAdmissionPolicies."""

    version: str | None
    admission_policies: bool

    @property
    def minor(self) -> tuple[int, int] | None:
        """(major, minor) from the version, if it has the usual shape (`v1.30.14-eks-1`)."""
        match = _MINOR.match(self.version or "")
        return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Limitation:
    """Something the project cannot use, or has not been tested on, on this server;
    `severe` when it weakens the install's safety."""

    message: str
    severe: bool


def limitations(facts: ServerFacts) -> tuple[Limitation, ...]:
    """What to tell the operator about this server at start."""
    found: list[Limitation] = []
    if not facts.admission_policies:
        found.append(
            Limitation(
                message="this API server does not serve admissionregistration.k8s.io/v1 "
                "ValidatingAdmissionPolicies (Kubernetes 1.30+): the admission policy that "
                "confines this controller's writes to its own Secrets' credentials cannot be "
                "installed here, so a compromised controller could rewrite any managed "
                "Secret's content",
                severe=True,
            )
        )
    minor = facts.minor
    if minor is not None and minor < OLDEST_TESTED:
        found.append(
            Limitation(
                message="this Kubernetes version is older than the oldest one this release is "
                f"tested on ({OLDEST_TESTED[0]}.{OLDEST_TESTED[1]})",
                severe=True,
            )
        )
    if minor is not None and minor < PLUGIN_SERVICE_ACCOUNT_TOKENS:
        found.append(
            Limitation(
                message="kubelets of this version cannot hand the credential-provider plugin "
                "the Pod's ServiceAccount token (Kubernetes "
                f"{PLUGIN_SERVICE_ACCOUNT_TOKENS[0]}.{PLUGIN_SERVICE_ACCOUNT_TOKENS[1]}+): "
                "its ServiceAccount-token mode needs kubelets of that version; this "
                "controller's Secrets are not affected",
                severe=False,
            )
        )
    return tuple(found)


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
