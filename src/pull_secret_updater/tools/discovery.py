"""The cluster's service-account issuer and keys, read through its API server.

Every API server with service-account issuer discovery serves the OIDC discovery document
(`/.well-known/openid-configuration`, whose `issuer` is the `iss` of its tokens) and the keys
it signs them with (`/openid/v1/jwks`), to any user granted the
`system:service-account-issuer-discovery` ClusterRole. Asking the API server rather than the
issuer URL works for every cluster, including those whose issuer nobody can reach.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import lightkube

from pull_secret_updater.kube.client import http_client
from pull_secret_updater.kube.errors import Forbidden, NotFound, translated
from pull_secret_updater.tools.errors import ToolError

__all__ = ["DISCOVERY_PATH", "JWKS_PATH", "ClusterIssuer", "fetch_issuer"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"

#: Discovery documents and key sets are a few kilobytes; anything far larger is not one.
MAX_DOCUMENT_BYTES = 1024 * 1024

# NB: the API server answers 406 for the JWKS unless its own media type is acceptable.
_ACCEPT = "application/json, application/jwk-set+json"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterIssuer:
    """The issuer of the cluster's service-account tokens and its public keys (a JWKS)."""

    issuer: str
    jwks: Mapping[str, object]


async def fetch_issuer(client: lightkube.AsyncClient) -> ClusterIssuer:
    """The cluster's issuer and keys; raises ToolError or `kube.errors.KubeError`."""
    discovery = await _get_json(client, DISCOVERY_PATH)
    issuer = discovery.get("issuer")
    if not isinstance(issuer, str) or not issuer.strip():
        raise ToolError(f"the API server's {DISCOVERY_PATH} has no issuer")
    jwks = await _get_json(client, JWKS_PATH)
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ToolError(f"the API server's {JWKS_PATH} holds no keys")
    return ClusterIssuer(issuer=issuer, jwks=jwks)


async def _get_json(client: lightkube.AsyncClient, path: str) -> dict[str, object]:
    http = http_client(client)
    try:
        # NB: relative to the server URL, which may carry a path (a proxy in front of it).
        with translated(f"GET {path}"):
            response = await http.get(path.lstrip("/"), headers={"Accept": _ACCEPT})
            response.raise_for_status()
    except NotFound as e:
        raise ToolError(
            f"the API server does not serve {path} (404): service-account issuer discovery "
            "is not enabled on this cluster"
        ) from e
    except Forbidden as e:
        if e.status == 401:
            raise ToolError(
                f"the API server did not accept the kubeconfig's credentials for {path} (401)"
            ) from e
        raise ToolError(
            f"the API server refused {path} ({e.status}): the kubeconfig's user needs the "
            "ClusterRole system:service-account-issuer-discovery"
        ) from e
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise ToolError(f"the API server's {path} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(response.content)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise ToolError(f"the API server's {path} is not a JSON object")
    return document
