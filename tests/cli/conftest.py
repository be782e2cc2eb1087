"""Fixtures of the helper commands' tests."""

from __future__ import annotations

import httpx2
import pytest

from pull_secret_updater.cli import identity
from pull_secret_updater.tools.kubeconfig import Cluster
from tests.cli.fakes import fake_client
from tests.cli.identity_support import EKS, JWKS


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The cluster's issuer (EKS unless a test changes it), served by a fake API server."""
    current = [EKS]

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx2.Response(200, json={"issuer": current[0]})
        if request.url.path == "/openid/v1/jwks":
            return httpx2.Response(200, json=JWKS)
        return httpx2.Response(404)

    def open_cluster(**_: object) -> Cluster:
        return Cluster(client=fake_client(handle), namespace="default", context="x", source="x")

    monkeypatch.setattr(identity, "open_cluster", open_cluster)
    return current
