"""The controller's own service-account token: from a projected file or the TokenRequest API."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig

from pull_secret_updater.tokens import (
    ProjectedFileTokenSource,
    TokenRequestTokenSource,
    TokenSourceError,
)
from tests.tokens.fakes import NOW, SA_TOKEN, FakeClock, everything_printed

# -- projected file --------------------------------------------------------------------------


async def test_file_token_is_stripped_of_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token"
    path.write_text(SA_TOKEN + "\n")
    assert await ProjectedFileTokenSource(path=path).get() == SA_TOKEN


async def test_file_token_follows_rotation_without_caching(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token"
    source = ProjectedFileTokenSource(path=path)
    path.write_text("one")
    assert await source.get() == "one"
    path.write_text("two")
    assert await source.get() == "two"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"  \n", "is empty", id="blank"),
        pytest.param(b"two\nwords-" + SA_TOKEN.encode(), "more than one word", id="two-words"),
        pytest.param(b"\xff" + SA_TOKEN.encode(), "not ASCII", id="binary"),
    ],
)
async def test_unusable_token_file_says_why_without_its_content(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "oidc-token"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TokenSourceError) as caught:
        await ProjectedFileTokenSource(path=path).get()
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
    assert caught.value.cause == "sa_token"
    assert SA_TOKEN not in everything_printed(caught.value)


async def test_token_path_that_is_a_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TokenSourceError, match="is a directory"):
        await ProjectedFileTokenSource(path=tmp_path).get()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
async def test_unreadable_token_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token"
    path.write_text(SA_TOKEN)
    path.chmod(0)
    with pytest.raises(TokenSourceError, match="permission denied"):
        await ProjectedFileTokenSource(path=path).get()


def test_default_path_is_the_originals() -> None:
    assert ProjectedFileTokenSource().path == Path("/var/run/chainguard/oidc/oidc-token")


# -- TokenRequest ----------------------------------------------------------------------------


class FakeApiServer:
    """Answers TokenRequests with numbered tokens, or with a fixed error."""

    def __init__(self, *, lifetime: int = 600, error: tuple[int, dict[str, object]] | None = None):
        self.requests: list[httpx2.Request] = []
        self.lifetime = lifetime
        self.error = error
        self.gate: asyncio.Event | None = None

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            status, body = self.error
            return httpx2.Response(status, json=body)
        body = json.loads(request.content)
        expires = dt.datetime.fromtimestamp(NOW + self.lifetime, dt.UTC)
        body["status"] = {
            "token": f"{SA_TOKEN}-{len(self.requests)}",
            "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return httpx2.Response(201, json=body)

    def client(self) -> AsyncClient:
        config = KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://apiserver.test"}}],
                "users": [{"name": "u", "user": {"token": "admin-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
        return AsyncClient(config=config, transport=httpx2.MockTransport(self.handle))


def source(server: FakeApiServer, clock: FakeClock) -> TokenRequestTokenSource:
    return TokenRequestTokenSource(
        server.client(),
        namespace="pull-secret-updater",
        service_account="controller",
        audience="issuer.enforce.dev",
        clock=clock,
    )


async def test_token_request_asks_for_our_audience_and_lifetime() -> None:
    server = FakeApiServer()
    token = await source(server, FakeClock()).get()
    assert token == f"{SA_TOKEN}-1"
    [request] = server.requests
    assert request.method == "POST"
    assert request.url.path == (
        "/api/v1/namespaces/pull-secret-updater/serviceaccounts/controller/token"
    )
    body = json.loads(request.content)
    assert body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["kind"] == "TokenRequest"
    assert body["spec"] == {"audiences": ["issuer.enforce.dev"], "expirationSeconds": 600}


async def test_token_request_token_is_reused_for_80_percent_of_its_life() -> None:
    server, clock = FakeApiServer(lifetime=600), FakeClock()
    tokens = source(server, clock)
    first = await tokens.get()
    clock.now = NOW + 479
    assert await tokens.get() == first
    clock.now = NOW + 480
    assert await tokens.get() != first
    assert len(server.requests) == 2


async def test_concurrent_callers_share_one_token_request() -> None:
    server, clock = FakeApiServer(), FakeClock()
    server.gate = asyncio.Event()
    tokens = source(server, clock)
    waiting = [asyncio.create_task(tokens.get()) for _ in range(20)]
    await asyncio.sleep(0.01)
    server.gate.set()
    assert set(await asyncio.gather(*waiting)) == {f"{SA_TOKEN}-1"}
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "retryable"), [(403, False), (404, False), (429, True), (500, True)]
)
async def test_token_request_failure_is_a_token_source_error(status: int, retryable: bool) -> None:
    server = FakeApiServer(
        error=(
            status,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": 'serviceaccounts "controller" is forbidden',
                "reason": "Forbidden",
                "code": status,
            },
        )
    )
    tokens = source(server, FakeClock())
    with pytest.raises(TokenSourceError) as caught:
        await tokens.get()
    error = caught.value
    assert (error.status, error.retryable, error.cause) == (status, retryable, "sa_token")
    assert "pull-secret-updater/controller" in str(error)
    assert 'serviceaccounts "controller" is forbidden' in str(error)


async def test_token_request_source_repr_holds_no_token() -> None:
    tokens = source(FakeApiServer(), FakeClock())
    token = await tokens.get()
    assert token not in repr(tokens)


def test_token_request_below_the_apiservers_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="600"):
        TokenRequestTokenSource(
            FakeApiServer().client(), namespace="ns", service_account="sa", expiration_seconds=60
        )
