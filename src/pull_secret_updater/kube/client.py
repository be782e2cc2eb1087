"""The one place a lightkube client is built, and the one place its internals are touched.

Configuration is found the way kubectl and client-go find it, with an explicit file first so
tests and the CLI can point anywhere: an explicit kubeconfig, else the in-cluster
ServiceAccount (whose token file is re-read when the kubelet rotates it), else `$KUBECONFIG`
or `~/.kube/config`.

lightkube 1.0.1 has no public way to set a User-Agent, nor to send a watch request with
`allowWatchBookmarks` or to see where one watch connection ends (its `watch()` silently
reconnects). Both need the httpx2 client lightkube keeps inside; `http_client()` is the
single accessor, checked so that a lightkube upgrade that moves it fails loudly at start.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import lightkube
from lightkube import KubeConfig

from pull_secret_updater import version

__all__ = ["DEFAULT_FIELD_MANAGER", "http_client", "make_client"]

DEFAULT_FIELD_MANAGER = "pull-secret-updater"


def make_client(
    *,
    kubeconfig: Path | None = None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    user_agent: str | None = None,
    timeout: float = 10.0,
) -> lightkube.AsyncClient:
    """An async client for the cluster; `timeout` bounds each request (not a watch's reads).

    `user_agent` defaults to `pull-secret-updater/<version>`, so the API server's audit log
    and metrics can tell this controller's requests apart.
    """
    client = lightkube.AsyncClient(
        config=_load_config(kubeconfig),
        field_manager=field_manager,
        timeout=httpx2.Timeout(timeout),
    )
    http_client(client).headers["User-Agent"] = user_agent or version.user_agent()
    return client


def http_client(client: lightkube.AsyncClient) -> httpx2.AsyncClient:
    """The httpx2 client inside `client`, with its base URL, TLS and credentials."""
    # NB: private attributes of lightkube 1.0.1: AsyncClient._client is the GenericAsyncClient,
    # whose _client is the httpx2.AsyncClient built from the kubeconfig.
    generic = getattr(client, "_client", None)
    http = getattr(generic, "_client", None)
    if not isinstance(http, httpx2.AsyncClient):
        raise TypeError("this lightkube version does not keep an httpx2.AsyncClient inside")
    return http


def _load_config(kubeconfig: Path | None) -> KubeConfig:
    if kubeconfig is not None:
        return KubeConfig.from_file(kubeconfig)
    try:
        return KubeConfig.from_service_account()
    except lightkube.ConfigError:
        pass
    # NB: kubectl merges every file of a KUBECONFIG path list; lightkube reads one file, so
    # take the first that exists rather than fail on the separator.
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    existing = next((p for p in paths if Path(p).expanduser().exists()), None)
    return KubeConfig.from_file(Path(existing or "~/.kube/config").expanduser())
