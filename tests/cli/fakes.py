"""A lightkube client whose API server is a function: HTTP-level fakes for the helpers."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import lightkube
from lightkube import KubeConfig

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


def status_reply(code: int, reason: str, message: str) -> httpx2.Response:
    return httpx2.Response(
        code,
        json={"kind": "Status", "status": "Failure", "code": code, "reason": reason,
              "message": message},
    )  # fmt: skip
