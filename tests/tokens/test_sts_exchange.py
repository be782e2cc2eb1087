"""What a successful exchange sends and returns, and how the server is trusted."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from devstack import pki
from devstack.procs import free_port
from pull_secret_updater.tokens import (
    ChainguardSTS,
    ExchangeError,
    IssuedToken,
    ProjectedFileTokenSource,
    TransientExchangeError,
)
from pull_secret_updater.version import user_agent
from tests.tokens.fakes import (
    NOW,
    SA_TOKEN,
    FakeClock,
    StaticTokenSource,
    everything_printed,
    make_jwt,
    registry_token,
)


async def test_request_is_the_contracts_post_with_query_and_bearer() -> None:
    seen: list[httpx2.Request] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"token": registry_token()})

    async with ChainguardSTS(
        sa_tokens=StaticTokenSource(),
        issuer="https://issuer.enforce.dev/",
        audience="cgr.dev",
        clock=FakeClock(),
        transport=httpx2.MockTransport(handler),
    ) as client:
        await client.issue(identity="0123abcd/4567ef")

    [request] = seen
    assert request.method == "POST"
    assert request.url.scheme == "https"
    assert request.url.host == "issuer.enforce.dev"
    assert request.url.path == "/sts/exchange"
    assert list(request.url.params.multi_items()) == [
        ("aud", "cgr.dev"),
        ("identity", "0123abcd/4567ef"),
    ]
    assert request.headers["Authorization"] == f"Bearer {SA_TOKEN}"
    assert request.headers["User-Agent"] == user_agent()
    assert user_agent().startswith("pull-secret-updater/")
    assert request.content == b""


async def test_issued_token_takes_its_times_from_its_own_claims() -> None:
    token = registry_token(iat=NOW - 100, lifetime=900)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        # `expiry` says something else; the token's own exp is what counts.
        return httpx2.Response(200, json={"token": token, "expiry": "2099-01-01T00:00:00Z"})

    async with ChainguardSTS(
        sa_tokens=StaticTokenSource(),
        audience="registry.example:5000",
        clock=FakeClock(),
        transport=httpx2.MockTransport(handler),
    ) as client:
        result = await client.issue(identity="id")

    assert result == IssuedToken(
        token=token, issued_at=NOW - 100, expires_at=NOW + 800, registry="registry.example:5000"
    )
    assert token not in repr(result)


async def test_a_token_without_iat_counts_as_issued_on_receipt() -> None:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"token": make_jwt({"exp": int(NOW + 600)})})

    async with ChainguardSTS(
        sa_tokens=StaticTokenSource(), clock=FakeClock(), transport=httpx2.MockTransport(handler)
    ) as client:
        result = await client.issue(identity="id")
    assert (result.issued_at, result.expires_at) == (NOW, NOW + 600)


async def test_min_lifetime_is_configurable() -> None:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"token": registry_token(lifetime=20)})

    async with ChainguardSTS(
        sa_tokens=StaticTokenSource(),
        clock=FakeClock(),
        min_lifetime=10,
        transport=httpx2.MockTransport(handler),
    ) as client:
        assert (await client.issue(identity="id")).lifetime == 20


async def test_the_projected_token_is_read_afresh_for_every_exchange(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token"
    seen: list[str] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["Authorization"])
        return httpx2.Response(200, json={"token": registry_token()})

    async with ChainguardSTS(
        sa_tokens=ProjectedFileTokenSource(path=path),
        clock=FakeClock(),
        transport=httpx2.MockTransport(handler),
    ) as client:
        path.write_text("first-token\n")
        await client.issue(identity="id")
        path.write_text("rotated-token")  # kubelet rotated it
        await client.issue(identity="id")
    assert seen == ["Bearer first-token", "Bearer rotated-token"]


def test_plain_http_is_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        ChainguardSTS(sa_tokens=StaticTokenSource(), issuer="http://issuer.enforce.dev")


def test_an_unloadable_ca_bundle_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ChainguardSTS(sa_tokens=StaticTokenSource(), ca_bundle=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match="CA bundle"):
        ChainguardSTS(sa_tokens=StaticTokenSource(), ca_bundle=junk)


async def test_a_refused_connection_is_transient() -> None:
    async with ChainguardSTS(
        sa_tokens=StaticTokenSource(), issuer=f"https://127.0.0.1:{free_port()}", timeout=2
    ) as client:
        with pytest.raises(TransientExchangeError) as caught:
            await client.issue(identity="id")
    assert caught.value.cause == "connection"
    assert SA_TOKEN not in everything_printed(caught.value)


# -- TLS against a real local server ---------------------------------------------------------


@dataclass(frozen=True)
class TLSServer:
    url: str
    ca_file: Path
    other_ca_file: Path


@pytest.fixture(scope="module")
async def tls_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TLSServer]:
    """A one-route HTTPS server whose certificate is signed by a private CA."""
    directory = tmp_path_factory.mktemp("tls")
    ca = pki.create_ca(directory, name="test CA")
    serving = pki.issue_cert(ca, directory, stem="server", common_name="sts", hosts=("127.0.0.1",))
    other_dir = directory / "other"
    other_dir.mkdir()
    other = pki.create_ca(other_dir, name="some other CA")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(serving.cert), str(serving.key))
    body = json.dumps({"token": registry_token(iat=NOW, lifetime=3600)}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # a client that refused our certificate hangs up mid-handshake
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield TLSServer(
            url=f"https://127.0.0.1:{port}", ca_file=ca.cert_file, other_ca_file=other.cert_file
        )


async def test_a_ca_bundle_makes_a_private_ca_trusted(tls_server: TLSServer) -> None:
    async with ChainguardSTS(
        sa_tokens=StaticTokenSource(),
        issuer=tls_server.url,
        ca_bundle=tls_server.ca_file,
        clock=FakeClock(),
        timeout=5,
    ) as client:
        result = await client.issue(identity="id")
    assert result.expires_at == NOW + 3600


@pytest.mark.parametrize("configured", ["other-ca", "system-store"])
async def test_an_unverifiable_certificate_fails_closed(
    tls_server: TLSServer, configured: str
) -> None:
    ca_bundle = tls_server.other_ca_file if configured == "other-ca" else None
    async with ChainguardSTS(
        sa_tokens=StaticTokenSource(), issuer=tls_server.url, ca_bundle=ca_bundle, timeout=5
    ) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.issue(identity="id")
    error = caught.value
    assert type(error) is ExchangeError
    assert (error.cause, error.retryable, error.status) == ("tls", False, None)
    assert "could not be verified" in str(error)
    assert "CA bundle" in str(error)
    assert SA_TOKEN not in everything_printed(error)
