"""HTTP-level fakes for the helpers: a lightkube client whose API server is a function, and
the token service of `tests.tokens.fakes` put where the wiring builds its client."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import lightkube
import pytest
from lightkube import KubeConfig

from pull_secret_updater import wiring
from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.settings import Settings
from pull_secret_updater.tokens import SubjectTokenSource
from tests.tokens.fakes import FakeTokenService

Handler = Callable[[httpx2.Request], httpx2.Response]


def fake_client(handler: Handler, *, namespace: str = "team") -> lightkube.AsyncClient:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://api.example.test"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u",
                                                   "namespace": namespace}}],
            "current-context": "x",
        }
    )  # fmt: skip
    return lightkube.AsyncClient(config=config, transport=httpx2.MockTransport(handler))


def token_service_at(monkeypatch: pytest.MonkeyPatch, service: FakeTokenService) -> None:
    """Make every token service the wiring builds (for `run` and `check` alike) talk to
    `service` instead of the network."""
    build = wiring.token_service

    def token_service(
        settings: Settings,
        *,
        sa_tokens: SubjectTokenSource,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> ChainguardSTS:
        assert transport is None, "a test transport is already given; patch one or the other"
        return build(settings, sa_tokens=sa_tokens, transport=service.transport())

    monkeypatch.setattr(wiring, "token_service", token_service)
