"""The plugin's HTTPS/1.1 transport (h11 on asyncio's streams) against a TLS server that
answers with exactly the bytes each case needs, at once or byte by byte: bodies by length,
chunks and close, kept connections (and one the server closed meanwhile, or asked to close),
answers too large, malformed or cut short, timeouts, and a certificate nobody trusts, each
ending as httpx2 (and so `tokens.http.send`) knows it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

from devstack import pki
from pull_secret_updater.tokens.errors import ExchangeError
from pull_secret_updater.tokens.http import send
from pull_secret_updater.tokens.streams import StreamTransport

Answer = Callable[[bytes], bytes | None]


@dataclass
class Server:
    url: str
    ca_file: Path
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pki.CertPair]:
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.create_ca(directory)
    pair = pki.issue_cert(ca, directory, stem="server", common_name="localhost",
                          hosts=("127.0.0.1", "localhost"))  # fmt: skip
    return ca.cert_file, pair


async def serve(
    certs: tuple[Path, pki.CertPair],
    answer: Answer,
    *,
    close_after: bool = False,
    byte_by_byte: bool = False,
) -> AsyncIterator[Server]:
    ca_file, pair = certs
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    server_state = Server(url="", ca_file=ca_file)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
                request = head + await reader.readexactly(length)
                server_state.requests.append(request)
                reply = answer(request)
                if reply is None:
                    await asyncio.sleep(5)
                    return
                for piece in (
                    [reply[i : i + 1] for i in range(len(reply))] if byte_by_byte else [reply]
                ):
                    writer.write(piece)
                    await writer.drain()
                    if byte_by_byte:
                        await asyncio.sleep(0)
                if close_after:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    server_state.url = f"https://localhost:{port}"
    async with server:
        yield server_state


def client(server: Server, *, timeout: float = 5.0, max_body: int = 1024) -> httpx2.AsyncClient:
    transport = StreamTransport(
        ssl_context=ssl.create_default_context(cafile=str(server.ca_file)), max_body=max_body
    )
    return httpx2.AsyncClient(transport=transport, timeout=timeout)


def always(reply: bytes) -> Answer:
    return lambda request: reply


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = [b"HTTP/1.1 200 OK", b"Content-Length: " + str(len(body)).encode(), *extra]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


async def test_bodies_by_length_chunks_and_close_and_a_kept_connection(
    certs: tuple[Path, pki.CertPair],
) -> None:
    replies = iter([
        ok(b'{"a":1}', b"Content-Type: application/json"),
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
    ])  # fmt: skip
    async for server in serve(certs, lambda request: next(replies)):
        async with client(server) as http:
            first = await http.post(f"{server.url}/sts?x=1", content=b"token=t")
            second = await http.get(f"{server.url}/keys")
        assert (first.status_code, first.json()) == (200, {"a": 1})
        assert (second.status_code, second.content) == (201, b"abcde")
        assert server.connections == 1  # the second request reused the first's connection
        assert server.requests[0].startswith(b"POST /sts?x=1 HTTP/1.1\r\n")
        assert b"\r\nhost: localhost:" in server.requests[0].lower()
        assert server.requests[0].endswith(b"\r\n\r\ntoken=t")
    async for server in serve(certs, lambda request: b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
                              close_after=True):  # fmt: skip
        async with client(server) as http:
            assert (await http.get(server.url)).content == b"until the end"
            assert (await http.get(server.url)).content == b"until the end"
        assert server.connections == 2


async def test_a_kept_connection_the_server_closed_is_replaced(
    certs: tuple[Path, pki.CertPair],
) -> None:
    # Keep-alive announced, but the server closes after each answer.
    async for server in serve(certs, lambda request: ok(b"x"), close_after=True):
        async with client(server) as http:
            assert (await http.get(server.url)).content == b"x"
            await asyncio.sleep(0.1)
            assert (await http.get(server.url)).content == b"x"
        assert server.connections == 2


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (ok(b"x" * 2000), "too large"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk header"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding"),
        (b"SMTP ready\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "ended early"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", "ended early"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "ended early"),
        (b"", "without answering"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n"
            + b"x" * 2000
            + b"\r\n0\r\n\r\n",
            "too large",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * (70 * 1024) + b"\r\n\r\n", "headers are too long"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: a\r\n" * 6000 + b"\r\n", "headers are too long"),
    ],
)
async def test_a_malformed_or_oversized_answer_is_a_protocol_error(
    certs: tuple[Path, pki.CertPair], reply: bytes, error: str
) -> None:
    async for server in serve(certs, lambda request: reply, close_after=True):
        async with client(server) as http:
            with pytest.raises(httpx2.RemoteProtocolError, match=error):
                await http.get(server.url)


async def test_an_answer_byte_by_byte_and_what_keeps_a_connection(
    certs: tuple[Path, pki.CertPair],
) -> None:
    # Each answer's bytes arrive one TLS record at a time; h11 waits for what it needs.
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n")  # fmt: skip
    replies = iter([
        ok(b"first"),
        b"HTTP/1.1 100 Continue\r\n\r\n" + chunked,
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",  # HEAD: no body follows
    ])  # fmt: skip
    async for server in serve(certs, lambda request: next(replies), byte_by_byte=True):
        async with client(server) as http:
            assert (await http.get(server.url)).content == b"first"
            second = await http.get(server.url)
            assert (second.status_code, second.content) == (200, b"abc")
            head = await http.head(server.url)
            assert (head.status_code, head.content, head.headers["content-length"]) == (
                200, b"", "9")  # fmt: skip
        assert server.connections == 1
    # A head just within the limit, and a body that fills it.
    async for server in serve(certs, always(ok(b"a" * 4096, b"X-Large: " + b"h" * 60 * 1024))):
        async with client(server, max_body=4096) as http:
            assert len((await http.get(server.url)).content) == 4096
            assert len((await http.get(server.url)).content) == 4096
        assert server.connections == 1
    # Asked to close, HTTP/1.0, or framed both ways (read as chunked, RFC 9112 section 6.3,
    # but never trusted again): each answer on a new connection.
    for reply in (
        ok(b"x", b"Connection: close"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\n\r\n",
    ):
        async for server in serve(certs, always(reply)):
            async with client(server) as http:
                assert (await http.get(server.url)).content == b"x"
                assert (await http.get(server.url)).content == b"x"
            assert server.connections == 2, reply


async def test_a_silent_server_is_a_read_timeout(certs: tuple[Path, pki.CertPair]) -> None:
    async for server in serve(certs, lambda request: None):
        async with client(server, timeout=0.3) as http:
            with pytest.raises(httpx2.ReadTimeout):
                await http.get(server.url)


async def test_an_untrusted_certificate_is_told_apart_and_nothing_is_sent(
    certs: tuple[Path, pki.CertPair], tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = pki.create_ca(tmp_path / "other")
    async for server in serve(certs, lambda request: ok(b"x")):
        transport = StreamTransport(
            ssl_context=ssl.create_default_context(cafile=str(other.cert_file))
        )
        async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
            with pytest.raises(ExchangeError) as caught:
                await send(http, http.build_request("POST", server.url, content=b"secret"),
                           where="the service", deadline=5)  # fmt: skip
        assert caught.value.cause == "tls"
        assert "could not be verified" in caught.value.message
        assert server.requests == []


async def test_a_refused_connection_is_a_connect_error(certs: tuple[Path, pki.CertPair]) -> None:
    transport = StreamTransport(ssl_context=ssl.create_default_context())
    async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get("https://127.0.0.1:1/")
        with pytest.raises(httpx2.UnsupportedProtocol):
            await http.get("http://127.0.0.1:1/")
