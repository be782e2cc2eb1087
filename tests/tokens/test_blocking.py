"""The plugin's HTTPS/1.1 transport (h11 on a blocking TLS socket, run without an event loop)
against a TLS server (in a thread of its own) that answers with exactly the bytes each case
needs, at once or byte by byte: bodies by length, chunks and close, kept connections (and one
the server closed meanwhile, or asked to close), answers too large, malformed or cut short,
timeouts and deadlines, and a certificate nobody trusts, each ending as httpx2 (and so
`tokens.http.send`) knows it. Then through a proxy: a real one (tinyproxy, demanding a user and
password) tunnelling to that server, chosen from the environment as httpx2 chooses, and fake
ones that answer CONNECT wrongly or never."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import pytest

from devstack import pki
from devstack.proxy import HttpProxy
from pull_secret_updater.tokens import loop
from pull_secret_updater.tokens.blocking import (
    BlockingTransport,
    environment_proxies,
    system_ssl_context,
)
from pull_secret_updater.tokens.errors import ExchangeError, TransientExchangeError
from pull_secret_updater.tokens.http import send

T = TypeVar("T")


@dataclass(frozen=True)
class Close:
    """An answer after which the server closes the connection (b"": without answering)."""

    reply: bytes


Answer = Callable[[bytes], "bytes | Close | None"]


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


@contextlib.contextmanager
def serve(
    certs: tuple[Path, pki.CertPair],
    answer: Answer,
    *,
    close_after: bool = False,
    byte_by_byte: bool = False,
) -> Iterator[Server]:
    """A TLS server on its own event loop in a thread, while the test's client blocks."""
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
                closing = isinstance(reply, Close)
                if isinstance(reply, Close):
                    reply = reply.reply
                for piece in (
                    [reply[i : i + 1] for i in range(len(reply))] if byte_by_byte else [reply]
                ):
                    writer.write(piece)
                    await writer.drain()
                    if byte_by_byte:
                        await asyncio.sleep(0)
                if close_after or closing:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    aio = asyncio.new_event_loop()
    started = threading.Event()

    def serving() -> None:
        asyncio.set_event_loop(aio)
        server = aio.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))
        server_state.url = f"https://localhost:{server.sockets[0].getsockname()[1]}"
        started.set()
        aio.run_forever()
        server.close()
        for task in asyncio.all_tasks(aio):
            task.cancel()
        aio.run_until_complete(asyncio.sleep(0.05))
        aio.close()

    thread = threading.Thread(target=serving, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield server_state
    finally:
        aio.call_soon_threadsafe(aio.stop)
        thread.join(10)


def client(
    server: Server,
    *,
    timeout: httpx2.Timeout | float = 5.0,
    max_body: int = 1024,
    proxies: dict[str, str | None] | None = None,
) -> httpx2.AsyncClient:
    transport = BlockingTransport(
        ssl_context=ssl.create_default_context(cafile=str(server.ca_file)),
        max_body=max_body,
        proxies=proxies,
    )
    return httpx2.AsyncClient(transport=transport, timeout=timeout)


def talk(server: Server, what: Callable[[httpx2.AsyncClient], Awaitable[T]], **options: Any) -> T:
    """`what` done with a client of `server`, without an event loop (as the plugin does)."""

    async def session() -> T:
        async with client(server, **options) as http:
            return await what(http)

    return loop.run(session())


def pause(seconds: float) -> None:
    """Waits as the plugin's blocking calls do (there is no event loop to wait with)."""
    time.sleep(seconds)


def always(reply: bytes) -> Answer:
    return lambda request: reply


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = [b"HTTP/1.1 200 OK", b"Content-Length: " + str(len(body)).encode(), *extra]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def test_bodies_by_length_chunks_and_close_and_a_kept_connection(
    certs: tuple[Path, pki.CertPair],
) -> None:
    replies = iter([
        ok(b'{"a":1}', b"Content-Type: application/json"),
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
    ])  # fmt: skip
    with serve(certs, lambda request: next(replies)) as server:

        async def two(http: httpx2.AsyncClient) -> tuple[httpx2.Response, httpx2.Response]:
            first = await http.post(f"{server.url}/sts?x=1", content=b"token=t")
            return first, await http.get(f"{server.url}/keys")

        first, second = talk(server, two)
        assert (first.status_code, first.json()) == (200, {"a": 1})
        assert (second.status_code, second.content) == (201, b"abcde")
        assert server.connections == 1  # the second request reused the first's connection
        assert server.requests[0].startswith(b"POST /sts?x=1 HTTP/1.1\r\n")
        assert b"\r\nhost: localhost:" in server.requests[0].lower()
        assert server.requests[0].endswith(b"\r\n\r\ntoken=t")
    with serve(certs, lambda request: b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
               close_after=True) as server:  # fmt: skip
        assert talk(server, lambda http: twice(http, server.url)) == [b"until the end"] * 2
        assert server.connections == 2


async def twice(http: httpx2.AsyncClient, url: str) -> list[bytes]:
    return [(await http.get(url)).content, (await http.get(url)).content]


def test_a_kept_connection_the_server_closed_is_replaced(
    certs: tuple[Path, pki.CertPair],
) -> None:
    # Keep-alive announced, but the server closes after each answer.
    with serve(certs, lambda request: ok(b"x"), close_after=True) as server:

        async def with_a_pause(http: httpx2.AsyncClient) -> list[bytes]:
            first = (await http.get(server.url)).content
            pause(0.1)
            return [first, (await http.get(server.url)).content]

        assert talk(server, with_a_pause) == [b"x", b"x"]
        assert server.connections == 2
    # Closed by the server once the second request arrives on the kept connection, without a
    # byte of answer: sent once more, on a new connection.
    replies: Iterator[bytes | Close] = iter([ok(b"x"), Close(b""), ok(b"y")])
    with serve(certs, lambda request: next(replies)) as server:
        assert talk(server, lambda http: twice(http, server.url)) == [b"x", b"y"]
        assert (len(server.requests), server.connections) == (3, 2)
    # An answer begun on the kept connection and cut short: an error, never sent again.
    replies = iter([ok(b"x"), Close(b"HTTP/1.1 200 OK\r\nContent-Le")])
    with serve(certs, lambda request: next(replies)) as server:
        with pytest.raises(httpx2.RemoteProtocolError, match="ended early"):
            talk(server, lambda http: twice(http, server.url))
        assert (len(server.requests), server.connections) == (2, 1)


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
def test_a_malformed_or_oversized_answer_is_a_protocol_error(
    certs: tuple[Path, pki.CertPair], reply: bytes, error: str
) -> None:
    with (
        serve(certs, lambda request: reply, close_after=True) as server,
        pytest.raises(httpx2.RemoteProtocolError, match=error),
    ):
        talk(server, lambda http: http.get(server.url))


def test_an_answer_byte_by_byte_and_what_keeps_a_connection(
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
    with serve(certs, lambda request: next(replies), byte_by_byte=True) as server:

        async def three(http: httpx2.AsyncClient) -> list[httpx2.Response]:
            return [await http.get(server.url), await http.get(server.url),
                    await http.head(server.url)]  # fmt: skip

        first, second, head = talk(server, three)
        assert first.content == b"first"
        assert (second.status_code, second.content) == (200, b"abc")
        assert (head.status_code, head.content, head.headers["content-length"]) == (
            200, b"", "9")  # fmt: skip
        assert server.connections == 1
    # A head just within the limit, and a body that fills it.
    with serve(certs, always(ok(b"a" * 4096, b"X-Large: " + b"h" * 60 * 1024))) as server:
        bodies = talk(server, lambda http: twice(http, server.url), max_body=4096)
        assert [len(body) for body in bodies] == [4096, 4096]
        assert server.connections == 1
    # Asked to close, HTTP/1.0, or framed both ways (read as chunked, RFC 9112 section 6.3,
    # but never trusted again): each answer on a new connection.
    for reply in (
        ok(b"x", b"Connection: close"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\n\r\n",
    ):
        with serve(certs, always(reply)) as server:
            assert talk(server, lambda http: twice(http, server.url)) == [b"x", b"x"]
            assert server.connections == 2, reply


def test_a_silent_server_is_a_read_timeout(certs: tuple[Path, pki.CertPair]) -> None:
    with serve(certs, lambda request: None) as server, pytest.raises(httpx2.ReadTimeout):
        talk(server, lambda http: http.get(server.url), timeout=0.3)


def test_a_deadline_cuts_a_wait_short_and_is_told_from_the_requests_own_timeout(
    certs: tuple[Path, pki.CertPair],
) -> None:
    # tokens.http.send bounds each request (here 5 s); an outer block's deadline (the plugin's
    # overall one, here 0.3 s) cuts the read short and reaches that block as TimeoutError,
    # not as the request's own "did not answer within 5s".
    with serve(certs, lambda request: None) as server:

        async def bounded(http: httpx2.AsyncClient) -> str:
            try:
                async with loop.within(0.3):
                    await send(http, http.build_request("GET", server.url),
                               where="the service", deadline=5)  # fmt: skip
            except TimeoutError:
                return "outer deadline"
            return "answered"

        started = time.monotonic()
        assert talk(server, bounded, timeout=10) == "outer deadline"
        assert time.monotonic() - started < 4  # neither the 5 s nor the 10 s waited for
        # The request's own deadline, when it is the sooner: send's message.

        async def own(http: httpx2.AsyncClient) -> None:
            async with loop.within(30):
                await send(http, http.build_request("GET", server.url), where="the service",
                           deadline=0.3)  # fmt: skip

        with pytest.raises(TransientExchangeError, match=r"did not answer within 0\.3s"):
            talk(server, own, timeout=10)
    # The connection itself (a listener that never accepts: the handshake waits).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/"

        async def handshake() -> None:
            transport = BlockingTransport(ssl_context=ssl.create_default_context())
            async with (
                httpx2.AsyncClient(transport=transport, timeout=10) as http,
                loop.within(0.3),
            ):
                await http.get(url)

        with pytest.raises(TimeoutError):
            loop.run(handshake())


def test_an_untrusted_certificate_is_told_apart_and_nothing_is_sent(
    certs: tuple[Path, pki.CertPair], tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = pki.create_ca(tmp_path / "other")
    with serve(certs, lambda request: ok(b"x")) as server:

        async def secret() -> None:
            transport = BlockingTransport(
                ssl_context=ssl.create_default_context(cafile=str(other.cert_file))
            )
            async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
                await send(http, http.build_request("POST", server.url, content=b"secret"),
                           where="the service", deadline=5)  # fmt: skip

        with pytest.raises(ExchangeError) as caught:
            loop.run(secret())
        assert caught.value.cause == "tls"
        assert "could not be verified" in caught.value.message
        assert server.requests == []


def test_a_refused_connection_is_a_connect_error() -> None:
    async def refused(url: str) -> None:
        transport = BlockingTransport(ssl_context=ssl.create_default_context())
        async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
            await http.get(url)

    with pytest.raises(httpx2.ConnectError):
        loop.run(refused("https://127.0.0.1:1/"))
    with pytest.raises(httpx2.UnsupportedProtocol):
        loop.run(refused("http://127.0.0.1:1/"))


async def test_under_an_event_loop_it_refuses_to_block_it() -> None:
    transport = BlockingTransport(ssl_context=ssl.create_default_context())
    async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
        with pytest.raises(RuntimeError, match="without an event loop"):
            await http.get("https://127.0.0.1:1/")


def hashed_directory(ca_file: Path, directory: Path) -> Path:
    """`directory` holding `ca_file` under its subject hash, as update-ca-certificates does."""
    directory.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    (directory / f"{subject_hash}.0").write_bytes(ca_file.read_bytes())
    return directory


def verify_paths(monkeypatch: pytest.MonkeyPatch, *, capath: Path, cafile: Path) -> None:
    """OpenSSL's compiled-in locations, as `system_ssl_context` reads them, replaced."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    paths = ssl.get_default_verify_paths()
    replaced = paths._replace(openssl_capath=str(capath), openssl_cafile=str(cafile))
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: replaced)


def fetch_with(context: ssl.SSLContext, server: Server) -> bytes:
    async def get() -> bytes:
        transport = BlockingTransport(ssl_context=context)
        async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
            return (await http.get(server.url)).content

    return loop.run(get())


def two_cas(ca_file: Path, directory: Path) -> Path:
    """A file holding `ca_file`'s CA and another one."""
    directory.mkdir()
    other = pki.create_ca(directory)
    bundle = directory / "two.pem"
    bundle.write_bytes(ca_file.read_bytes() + other.cert_file.read_bytes())
    return bundle


def test_the_system_trust_store_is_read_lazily_from_its_hashed_directory(
    certs: tuple[Path, pki.CertPair], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file, _ = certs
    verify_paths(monkeypatch, capath=hashed_directory(ca_file, tmp_path / "certs"),
                 cafile=ca_file)  # fmt: skip
    context = system_ssl_context()
    assert context.cert_store_stats()["x509"] == 0  # nothing read when the context is made
    with serve(certs, always(ok(b"x"))) as server:
        assert fetch_with(context, server) == b"x"
    assert context.cert_store_stats()["x509_ca"] == 1  # the one CA the handshake needed
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    # A host name the certificate does not name is refused, though its CA is trusted.
    resolve = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *rest, **named: resolve(
        "127.0.0.1" if host == "wrong.example" else host, *rest, **named))  # fmt: skip
    with serve(certs, always(ok(b"x"))) as server:
        server.url = server.url.replace("localhost", "wrong.example")
        with pytest.raises(httpx2.ConnectError, match="mismatch"):
            fetch_with(system_ssl_context(), server)


def test_a_directory_that_holds_fewer_than_the_file_is_not_read_alone(
    certs: tuple[Path, pki.CertPair], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file, _ = certs
    bundle = two_cas(ca_file, tmp_path / "two")
    verify_paths(monkeypatch, capath=hashed_directory(ca_file, tmp_path / "certs"),
                 cafile=bundle)  # fmt: skip
    # OpenSSL's own reading, as ssl.create_default_context: its compiled-in file (not the
    # replaced name above, which only the choice reads) and the directory.
    context = system_ssl_context()
    assert (
        context.cert_store_stats()["x509_ca"]
        == ssl.create_default_context().cert_store_stats()["x509_ca"]
    )
    # No hashed names at all, and no file: the distributions' files.
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "ca.pem").write_bytes(ca_file.read_bytes())
    verify_paths(monkeypatch, capath=tmp_path / "plain", cafile=tmp_path / "none.pem")
    monkeypatch.setattr("pull_secret_updater.tokens.blocking.CA_FILE_CANDIDATES", (str(bundle),))
    assert system_ssl_context().cert_store_stats()["x509_ca"] == 2


def test_the_environment_names_the_trust_store_as_openssl_reads_it(
    certs: tuple[Path, pki.CertPair], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file, _ = certs
    bundle = two_cas(ca_file, tmp_path / "two")
    verify_paths(monkeypatch, capath=tmp_path / "nowhere", cafile=tmp_path / "none.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert system_ssl_context().cert_store_stats()["x509_ca"] == 2  # the file named, whole
    # SSL_CERT_DIR: its CAs trusted (looked up there at the handshake), with OpenSSL's file.
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed_directory(ca_file, tmp_path / "certs")))
    with serve(certs, always(ok(b"x"))) as server:
        assert fetch_with(system_ssl_context(), server) == b"x"


def test_one_connect_budget_for_every_address_and_the_deadline_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A listener that never accepts, its backlog full: further connects wait unanswered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        waiting = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
            waiting.append(filler)
        # The host has five addresses, all that listener.
        entry = (socket.AF_INET, socket.SOCK_STREAM, 6, "", address)
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [entry] * 5)
        url = f"https://many.example:{address[1]}/"

        async def connect(deadline: float | None) -> None:
            transport = BlockingTransport(ssl_context=ssl.create_default_context())
            async with (
                httpx2.AsyncClient(
                    transport=transport, timeout=httpx2.Timeout(5, connect=0.5)
                ) as http,
                loop.within(deadline),
            ):
                await http.get(url)

        try:
            started = time.monotonic()
            with pytest.raises(httpx2.ConnectTimeout):
                loop.run(connect(None))
            assert time.monotonic() - started < 2  # one 0.5 s budget, not 0.5 s per address
            with pytest.raises(TimeoutError):
                loop.run(connect(0.2))  # the deadline, sooner than the budget
        finally:
            for filler in waiting:
                filler.close()


# -- through a proxy (tinyproxy, as a node behind a forward proxy has one) ------------------------

PROXY_CREDENTIALS = ("node", "pr0xy-s3cret")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[HttpProxy]:
    with HttpProxy(tmp_path / "proxy", credentials=PROXY_CREDENTIALS) as running:
        yield running


def through(
    server: Server,
    proxies: dict[str, str | None],
    what: Callable[[httpx2.AsyncClient], Awaitable[T]],
    **options: Any,
) -> T:
    """`talk` through the `proxies`."""
    return talk(server, what, proxies=proxies, **options)


def origin_of(server: Server) -> str:
    return server.url.removeprefix("https://")


def test_through_a_proxy_a_tunnel_carries_tls_to_the_service_and_is_kept(
    certs: tuple[Path, pki.CertPair], proxy: HttpProxy
) -> None:
    with serve(certs, lambda request: ok(request.split(b" ")[1])) as server:
        answers = through(server, {"https://": proxy.url}, lambda http: twice(http, server.url))
        assert answers == [b"/", b"/"]
        # One tunnel for both requests (the connection kept), to the service's name and port.
        assert proxy.tunnels() == [origin_of(server)]
        assert server.connections == 1


def test_a_proxy_that_refuses_the_tunnel_is_a_proxy_error_without_its_password(
    certs: tuple[Path, pki.CertPair], proxy: HttpProxy
) -> None:
    wrong = proxy.url.replace(PROXY_CREDENTIALS[1], "not-the-password")
    with serve(certs, lambda request: ok(b"x")) as server:
        for url in (wrong, f"http://127.0.0.1:{proxy.port}"):

            async def get(http: httpx2.AsyncClient) -> None:
                await send(http, http.build_request("GET", server.url), where="the service",
                           deadline=5)  # fmt: skip

            with pytest.raises(TransientExchangeError) as caught:
                through(server, {"https://": url}, get)
            message = caught.value.message
            assert f"the proxy at 127.0.0.1:{proxy.port} refused a tunnel" in message
            # NB: tinyproxy answers a CONNECT without the right credentials 401, not 407.
            assert re.search(r"refused a tunnel to localhost:\d+: 40[17] ", message)
            assert "not-the-password" not in message
            assert PROXY_CREDENTIALS[1] not in message
            assert "not-the-password" not in repr(caught.value.__cause__)
        assert server.requests == []


def test_no_proxy_and_the_environment_are_read_as_httpx2_reads_them(
    certs: tuple[Path, pki.CertPair], proxy: HttpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with serve(certs, lambda request: ok(b"direct or not")) as server:
        monkeypatch.setenv("https_proxy", proxy.url)
        assert through(server, environment_proxies(), lambda http: twice(http, server.url))
        assert proxy.tunnels() == [origin_of(server)]
        monkeypatch.setenv("NO_PROXY", "example.com,localhost")
        assert through(server, environment_proxies(), lambda http: twice(http, server.url))
        assert proxy.tunnels() == [origin_of(server)]  # not through the proxy this time
        monkeypatch.delenv("NO_PROXY")
        monkeypatch.delenv("https_proxy")
        monkeypatch.setenv("HTTP_PROXY", proxy.url)  # for http:// alone: not these requests
        assert through(server, environment_proxies(), lambda http: twice(http, server.url))
        assert proxy.tunnels() == [origin_of(server)]
        assert server.connections == 3


def test_through_a_proxy_the_service_certificate_is_verified_as_without(
    certs: tuple[Path, pki.CertPair], proxy: HttpProxy, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = pki.create_ca(tmp_path / "other")
    with serve(certs, lambda request: ok(b"x")) as server:

        async def secret(http: httpx2.AsyncClient) -> None:
            await send(http, http.build_request("POST", server.url, content=b"secret"),
                       where="the service", deadline=5)  # fmt: skip

        untrusted = Server(url=server.url, ca_file=other.cert_file)
        with pytest.raises(ExchangeError) as caught:
            through(untrusted, {"https://": proxy.url}, secret)
        assert caught.value.cause == "tls"
        assert proxy.tunnels() == [origin_of(server)]
        assert server.requests == []


@contextlib.contextmanager
def fake_proxy(answer: bytes | None, heads: list[bytes] | None = None) -> Iterator[str]:
    """A proxy that reads a CONNECT (kept in `heads`) and answers `answer` (None: never), then
    waits."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def serving() -> None:
        while not stop.is_set():
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            with peer:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = peer.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                if heads is not None:
                    heads.append(head)
                if answer is not None:
                    peer.sendall(answer)
                stop.wait(3)

    thread = threading.Thread(target=serving, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


@pytest.mark.parametrize(
    ("answer", "error", "says"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01", httpx2.ProxyError, "more than its answer"),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", httpx2.ProxyError, "502"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", httpx2.ProxyError, "malformed"),
        (b"HTTP/1.1 200 OK\r\n", httpx2.ConnectTimeout, "timed out"),  # a head never ended
        (None, httpx2.ConnectTimeout, "timed out"),
    ],
)
def test_a_proxy_that_answers_wrongly_or_never_ends_the_connect_within_its_budget(
    certs: tuple[Path, pki.CertPair], answer: bytes | None, error: type[Exception], says: str
) -> None:
    with serve(certs, lambda request: ok(b"x")) as server, fake_proxy(answer) as url:
        started = time.monotonic()
        with pytest.raises(error, match=says):
            through(server, {"https://": url}, lambda http: http.get(server.url),
                    timeout=httpx2.Timeout(5, connect=0.5))  # fmt: skip
        assert time.monotonic() - started < 4  # the connect budget, not the read timeout
        assert server.requests == []


def test_a_proxy_down_or_of_a_scheme_not_spoken_is_an_error(
    certs: tuple[Path, pki.CertPair],
) -> None:
    with serve(certs, lambda request: ok(b"x")) as server:
        with pytest.raises(httpx2.ConnectError, match=r"the proxy at 127\.0\.0\.1:1"):
            through(server, {"https://": "http://127.0.0.1:1"}, lambda http: http.get(server.url))
        for url in ("https://127.0.0.1:1", "socks5://127.0.0.1:1"):
            with pytest.raises(httpx2.ProxyError, match="not supported here, only at http://"):
                through(server, {"https://": url}, lambda http: http.get(server.url))
        assert server.connections == 0


def test_a_user_and_password_are_percent_decoded_for_the_proxy_and_never_shown(
    certs: tuple[Path, pki.CertPair],
) -> None:
    password = "p@ss:w/rd%#?"
    heads: list[bytes] = []
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    with serve(certs, lambda request: ok(b"x")) as server, fake_proxy(refusal, heads) as url:
        proxy = url.replace("http://", f"http://n%C3%B6de:{quote(password, safe='')}@")

        async def get(http: httpx2.AsyncClient) -> None:
            await send(http, http.build_request("GET", server.url), where="the service",
                       deadline=5)  # fmt: skip

        with pytest.raises(TransientExchangeError) as caught:
            through(server, {"https://": proxy}, get)
        [head] = heads
        assert head.startswith(f"CONNECT {origin_of(server)} HTTP/1.1\r\n".encode())
        expected = base64.b64encode(f"n\u00f6de:{password}".encode())
        assert b"\r\nProxy-Authorization: Basic " + expected + b"\r\n" in head
        for shown in (caught.value.message, repr(caught.value), repr(caught.value.__cause__)):
            assert "p@ss" not in shown
            assert quote(password, safe="") not in shown
        assert "refused a tunnel" in caught.value.message


def test_a_proxy_url_that_is_not_one_is_an_error_that_quotes_none_of_it(
    certs: tuple[Path, pki.CertPair],
) -> None:
    broken = "http://node:s3cr#t@127.0.0.1:3128"  # the password's "#" not percent-encoded
    with serve(certs, lambda request: ok(b"direct")) as server:
        for key, variable in (("https://", "HTTPS_PROXY"), ("all://", "ALL_PROXY")):
            with pytest.raises(httpx2.ProxyError) as caught:
                through(server, {key: broken}, lambda http: http.get(server.url))
            assert str(caught.value) == (
                f"the proxy {variable} names is not a valid URL (a user or password in it must "
                "be percent-encoded)"
            )
        # HTTP_PROXY's route is for http:// alone, which is never spoken here: not even read.
        answer = through(server, {"http://": broken}, lambda http: http.get(server.url))
        assert answer.content == b"direct"


def test_a_deadline_sooner_than_the_connect_budget_ends_the_wait_for_the_tunnel(
    certs: tuple[Path, pki.CertPair],
) -> None:
    with serve(certs, lambda request: ok(b"x")) as server, fake_proxy(None) as url:

        async def get() -> None:
            transport = BlockingTransport(ssl_context=ssl.create_default_context(),
                                          proxies={"https://": url})  # fmt: skip
            async with (
                httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(5)) as http,
                loop.within(0.3),
            ):
                await http.get(server.url)

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            loop.run(get())
        assert time.monotonic() - started < 3  # the deadline, not the five-second budget


ENVIRONMENTS = [
    {"HTTPS_PROXY": "http://a.proxy:3128", "NO_PROXY": "localhost"},
    {"https_proxy": "http://a.proxy:3128", "HTTPS_PROXY": "http://b.proxy:3128"},
    {"ALL_PROXY": "http://b.proxy:8080", "HTTPS_PROXY": "http://a.proxy:3128",
     "NO_PROXY": ".amazonaws.com,10.0.0.0/8,example.com:8443"},
    {"ALL_PROXY": "http://b.proxy:8080", "NO_PROXY": "sts.googleapis.com,[::1]"},
    {"HTTPS_PROXY": "http://a.proxy:3128", "NO_PROXY": "*"},
    {"HTTP_PROXY": "http://c.proxy:3128"},
]  # fmt: skip
URLS = [
    "https://localhost/",
    "https://sts.amazonaws.com/",
    "https://amazonaws.com/",
    "https://api.ecr.eu-west-1.amazonaws.com/",
    "https://10.1.2.3:8443/",
    "https://11.1.2.3/",
    "https://example.com:8443/",
    "https://example.com/",
    "https://sts.googleapis.com/",
    "https://[::1]:8443/",
]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_proxy_chosen_for_each_url_is_the_one_httpx2s_own_client_chooses(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    proxies = environment_proxies()
    ours = BlockingTransport(ssl_context=ssl.create_default_context(), proxies=proxies)
    theirs = httpx2.AsyncClient()  # trust_env: the environment's proxies, as the controller
    for url in URLS:
        request = httpx2.Request("GET", url)
        chosen = theirs._transport_for_url(request.url)
        expected = next(
            (str(httpx2.Proxy(proxies[pattern.pattern] or "").url)
             for pattern, transport in theirs._mounts.items() if transport is chosen),
            None,
        )  # fmt: skip
        got = ours._proxy(request)
        assert (None if got is None else str(got.url)) == expected, url
