"""A small HTTPS/1.1 transport on asyncio's streams, for the kubelet plugin's one short call.

The plugin is a new process at every pull the kubelet has no cached credential for, and makes
one to three requests. httpx2's default transport (httpcore2, with anyio, h11 and truststore)
costs more to import and set up than those requests take, so the plugin hands its clients
this transport instead: the same ``httpx2`` requests and responses and the same exceptions
(`tokens.http.send` translates them as always), over one kept-alive TLS connection per origin.

What it speaks: HTTP/1.1 over TLS only (never clear text), bodies by ``Content-Length``,
``chunked`` or up to the connection's close; at most `max_body` bytes of body and 64 KiB of
headers; no proxies (httpx2 still sends a request to an environment proxy through its own
transport). Timeouts are the request's (``connect``, ``read``, ``write``), each per operation,
as httpcore2's are. Content encodings are httpx2's business (the body is handed on as sent).

Failures, as httpx2 raises them: ``ConnectError`` (refused, unresolvable, TLS: the certificate
error stays the ``__cause__``, which is how a verification failure is told apart),
``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``, ``ReadError``, ``WriteError``,
``RemoteProtocolError`` (a malformed or oversized answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Awaitable
from typing import TypeVar

import httpx2

__all__ = ["StreamTransport", "system_ssl_context"]

T = TypeVar("T")

MAX_HEADERS = 64 * 1024
DEFAULT_MAX_BODY = 1024 * 1024
#: Where Linux distributions keep the system's CA certificates, when OpenSSL's compiled-in
#: paths hold none (as truststore and httpcore2 look for them).
CA_FILE_CANDIDATES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def system_ssl_context() -> ssl.SSLContext:
    """A client context trusting the system's CA certificates (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` as OpenSSL reads them, else OpenSSL's paths, else the distributions')."""
    context = ssl.create_default_context()
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return context
    paths = ssl.get_default_verify_paths()
    if os.path.isfile(paths.openssl_cafile) or (
        os.path.isdir(paths.openssl_capath) and os.listdir(paths.openssl_capath)
    ):
        return context
    cafile = next(filter(os.path.isfile, CA_FILE_CANDIDATES), None)
    if cafile is not None:
        context.load_verify_locations(cafile)
    return context


class StreamTransport(httpx2.AsyncBaseTransport):
    """HTTPS/1.1 with `ssl_context`, one idle connection kept per origin (module docstring)."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_body: int = DEFAULT_MAX_BODY) -> None:
        self._ssl = ssl_context
        self._max_body = max_body
        self._idle: dict[tuple[str, int], Connection] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme != "https":
            raise httpx2.UnsupportedProtocol("only https is spoken here", request=request)
        origin = (url.host, url.port or 443)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        head = _head(request)
        reused = self._idle.pop(origin, None)
        if reused is not None:
            try:
                return await self._exchange(reused, origin, request, head, body, timeouts)
            except _StaleConnection:
                pass  # closed by the server while idle: once more on a new connection
        connection = await self._connect(origin, request, timeouts.get("connect"))
        try:
            return await self._exchange(connection, origin, request, head, body, timeouts)
        except _StaleConnection:
            raise httpx2.RemoteProtocolError(
                "the server closed the connection without answering", request=request
            ) from None

    async def aclose(self) -> None:
        idle, self._idle = list(self._idle.values()), {}
        for _, writer in idle:
            await _close(writer)

    async def _connect(
        self, origin: tuple[str, int], request: httpx2.Request, seconds: float | None
    ) -> Connection:
        host, port = origin
        try:
            return await _within(
                seconds,
                asyncio.open_connection(host, port, ssl=self._ssl, server_hostname=host),
            )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port} timed out",
                                        request=request) from None  # fmt: skip
        except (OSError, ssl.SSLError) as e:
            raise httpx2.ConnectError(str(e) or type(e).__name__, request=request) from e

    async def _exchange(
        self,
        connection: Connection,
        origin: tuple[str, int],
        request: httpx2.Request,
        head: bytes,
        body: bytes,
        timeouts: dict[str, float | None],
    ) -> httpx2.Response:
        reader, writer = connection
        try:
            try:
                writer.write(head + body)
                await _within(timeouts.get("write"), writer.drain())
            except TimeoutError:
                raise httpx2.WriteTimeout(
                    "writing the request timed out", request=request
                ) from None
            except (OSError, ssl.SSLError) as e:
                raise _StaleConnection from e
            read = timeouts.get("read")
            try:
                status_line = await _within(read, reader.readuntil(b"\r\n"))
            except asyncio.IncompleteReadError as e:
                if not e.partial:
                    raise _StaleConnection from None
                raise httpx2.RemoteProtocolError(
                    "the answer ended early", request=request
                ) from None
            except (ConnectionError, ssl.SSLError) as e:
                raise _StaleConnection from e
            status, keep = _status(status_line, request)
            headers = await self._headers(reader, read, request)
            content, delimited = await self._body(reader, read, request, status, headers)
        except TimeoutError:
            await _close(writer)
            raise httpx2.ReadTimeout("reading the answer timed out", request=request) from None
        except asyncio.LimitOverrunError:
            await _close(writer)
            raise httpx2.RemoteProtocolError("a line of the answer is too long",
                                             request=request) from None  # fmt: skip
        except asyncio.IncompleteReadError:
            await _close(writer)
            raise httpx2.RemoteProtocolError("the answer ended early", request=request) from None
        except (OSError, ssl.SSLError) as e:
            await _close(writer)
            raise httpx2.ReadError(str(e) or type(e).__name__, request=request) from e
        except BaseException:
            await _close(writer)
            raise
        closing = any(
            name == b"connection" and value.lower() == b"close" for name, value in headers
        )
        if keep and delimited and not closing:
            previous = self._idle.pop(origin, None)
            if previous is not None:
                await _close(previous[1])
            self._idle[origin] = connection
        else:
            await _close(writer)
        return httpx2.Response(
            status,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _headers(
        self, reader: asyncio.StreamReader, seconds: float | None, request: httpx2.Request
    ) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        size = 0
        while True:
            line = await _within(seconds, reader.readuntil(b"\r\n"))
            size += len(line)
            if size > MAX_HEADERS:
                raise httpx2.RemoteProtocolError("the answer's headers are too long",
                                                 request=request)  # fmt: skip
            if line == b"\r\n":
                return headers
            name, colon, value = line.partition(b":")
            if not colon or not name.strip() or name != name.strip():
                raise httpx2.RemoteProtocolError("a malformed header line", request=request)
            headers.append((name.lower(), value.strip()))

    async def _body(
        self,
        reader: asyncio.StreamReader,
        seconds: float | None,
        request: httpx2.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> tuple[bytes, bool]:
        """The body, and whether its end was delimited (so the connection may be reused)."""
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b"", True
        found = dict(headers)
        coding = found.get(b"transfer-encoding", b"").lower()
        if coding:
            if coding != b"chunked":
                raise httpx2.RemoteProtocolError("an unknown transfer encoding", request=request)
            return await self._chunked(reader, seconds, request), True
        if b"content-length" in found:
            text = found[b"content-length"]
            if not text.isdigit():
                raise httpx2.RemoteProtocolError("a malformed Content-Length", request=request)
            length = int(text)
            if length > self._max_body:
                raise httpx2.RemoteProtocolError("the answer is too large", request=request)
            return await _within(seconds, reader.readexactly(length)), True
        content = await _within(seconds, reader.read(self._max_body + 1))
        while content and len(content) <= self._max_body:
            more = await _within(seconds, reader.read(self._max_body + 1 - len(content)))
            if not more:
                break
            content += more
        if len(content) > self._max_body:
            raise httpx2.RemoteProtocolError("the answer is too large", request=request)
        return content, False

    async def _chunked(
        self, reader: asyncio.StreamReader, seconds: float | None, request: httpx2.Request
    ) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await _within(seconds, reader.readuntil(b"\r\n"))
            text = line.split(b";", 1)[0].strip()
            try:
                length = int(text, 16)
            except ValueError:
                raise httpx2.RemoteProtocolError("a malformed chunk size",
                                                 request=request) from None  # fmt: skip
            if length == 0:
                while await _within(seconds, reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            size += length
            if size > self._max_body:
                raise httpx2.RemoteProtocolError("the answer is too large", request=request)
            chunks.append(await _within(seconds, reader.readexactly(length)))
            if await _within(seconds, reader.readexactly(2)) != b"\r\n":
                raise httpx2.RemoteProtocolError("a malformed chunk", request=request)


class _StaleConnection(Exception):
    """The connection failed before any byte of an answer: a kept one the server closed."""


def _head(request: httpx2.Request) -> bytes:
    target = request.url.raw_path or b"/"
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _status(line: bytes, request: httpx2.Request) -> tuple[int, bool]:
    """The status code, and whether the connection may be kept (HTTP/1.1)."""
    parts = line.rstrip(b"\r\n").split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx2.RemoteProtocolError("a malformed status line", request=request)
    return int(parts[1]), parts[0] == b"HTTP/1.1"


async def _within(seconds: float | None, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 0.5)
