"""HTTPS/1.1 for the kubelet plugin's one short call: h11 on a blocking TLS socket.

The plugin is a new process at every pull the kubelet has no cached credential for, and makes
one to three requests, one after the other. httpx2's default transport (httpcore2, with anyio
and truststore besides h11) and asyncio's event loop cost more to import and set up than those
requests take, so the plugin runs its exchange without a loop (`tokens.loop.run`) and hands its
clients this transport: the same ``httpx2`` requests and responses and the same exceptions
(`tokens.http.send` translates them as always), over one kept-alive TLS connection per origin,
with blocking sockets inside coroutines that never suspend. NB: under an event loop it would
block the loop, so it refuses to run there (the controller uses httpx2's own transport).

The HTTP/1.1 itself is h11's (python-hyper's state machine, also what httpcore2 speaks it
with): the request's bytes, the status line and headers, framing by ``Content-Length``,
``chunked`` or the connection's close, and whether the connection may carry another request.
What is ours is the glue: the TLS connection (a socket wrapped with the given
`ssl.SSLContext`), the timeouts, the limits, keeping one idle connection per origin, and
translating failures into httpx2's exceptions.

What it speaks: HTTP/1.1 over TLS only (never clear text); at most `max_body` bytes of body and
`MAX_HEADERS` bytes of status line and headers (h11's ``max_incomplete_event_size``). Through
an ``http://`` proxy it tunnels with ``CONNECT`` (the proxy's user and password, if its URL has
them, sent as ``Proxy-Authorization: Basic``), and TLS is then spoken with the service itself,
verified as without a proxy. Which requests go through which proxy is decided as httpx2 decides
it for the controller (`environment_proxies`: ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, in
either case); other proxy schemes (``https://``, ``socks5://``) are refused with an error.
Timeouts are the request's (``connect``, ``read``, ``write``), each per operation, as
httpcore2's are, and never past the deadline of the `tokens.loop.within` block the request is
made in (the plugin's overall deadline, `tokens.http.send`'s per request): there the operation
raises `tokens.loop.DeadlineExceeded`, which that block turns into TimeoutError. Content
encodings are httpx2's business (the body is handed on as sent). A connection is kept only when
h11 says it can carry another request (its state is ``IDLE`` after ``start_next_cycle()``: not
after ``Connection: close``, HTTP/1.0 or a body read to the close), and not after an answer with
both ``Content-Length`` and ``Transfer-Encoding`` (read as chunked, as RFC 9112 section 6.3
says, but a sign of a confused intermediary). A kept connection the server closed meanwhile is
replaced once, if it failed before any byte of the answer.

Failures, as httpx2 raises them: ``ConnectError`` (refused, unresolvable, TLS: the certificate
error stays the ``__cause__``, which is how a verification failure is told apart),
``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``, ``ReadError``, ``WriteError``,
``RemoteProtocolError`` (whatever h11 finds malformed, an answer that ends early or never
starts, an oversized answer), ``LocalProtocolError`` (a request h11 will not send).
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import NoReturn

import h11
import httpx2

# NB: httpx2's own reading of the proxy variables and its own matching of a URL to them, so that
# the plugin goes through the proxies the controller's httpx2 client goes through (both are
# private to httpx2; the lock file pins its version, and tests/tokens/test_blocking.py checks
# the behaviour through a real proxy).
from httpx2._utils import URLPattern, get_environment_proxies

from pull_secret_updater.tokens import loop

__all__ = ["BlockingTransport", "environment_proxies", "system_ssl_context"]

#: The most bytes of status line and headers read before the head is complete.
MAX_HEADERS = 64 * 1024
DEFAULT_MAX_BODY = 1024 * 1024
#: The most bytes asked of the connection at once for a body.
READ_SIZE = 64 * 1024
#: Where Linux distributions keep the system's CA certificates, when OpenSSL's compiled-in
#: paths hold none (as truststore and httpcore2 look for them).
CA_FILE_CANDIDATES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)
#: A certificate's name in a directory OpenSSL looks CAs up in by subject (c_rehash,
#: update-ca-certificates): the subject's hash and a sequence number.
HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def system_ssl_context() -> ssl.SSLContext:
    """A client context trusting the system's CA certificates, as ``ssl.create_default_context``
    does (OpenSSL's file and directory, or ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``), else the
    distributions' files; but OpenSSL's directory of hashed certificates alone when it holds
    at least as many certificates as its file.

    NB: OpenSSL reads from a hashed directory the one CA a handshake needs, while a file is
    read whole when the context is made: every CA of the system parsed at every call of the
    plugin, 21-24 ms of CPU here for 144 certificates, against about 1 ms for the directory.
    Debian and Ubuntu keep the same certificates in both; where the directory holds fewer (or
    none), or the environment names either, the file is read as OpenSSL would.
    """
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    hashed = _hashed(paths.openssl_capath)
    if hashed and hashed >= _certificates(paths.openssl_cafile):
        return ssl.create_default_context(capath=paths.openssl_capath)
    if hashed or os.path.isfile(paths.openssl_cafile):
        return ssl.create_default_context()
    cafile = next(filter(os.path.isfile, CA_FILE_CANDIDATES), None)
    return ssl.create_default_context(cafile=cafile)


def _hashed(directory: str) -> int:
    """How many certificates `directory` holds under their subject hashes."""
    try:
        with os.scandir(directory) as entries:
            return sum(1 for entry in entries if HASHED_NAME.fullmatch(entry.name))
    except OSError:
        return 0


def _certificates(path: str) -> int:
    """How many PEM certificates the file at `path` holds (0 when there is none)."""
    try:
        with open(path, "rb") as file:
            return file.read().count(b"-----BEGIN CERTIFICATE-----")
    except OSError:
        return 0


def environment_proxies() -> dict[str, str | None]:
    """The proxies the environment names, as httpx2 reads them for a client it makes itself (the
    controller's): URL patterns (``https://``, ``all://*.example.com``) to a proxy's URL, or to
    None for the hosts of ``NO_PROXY``."""
    return get_environment_proxies()


class BlockingTransport(httpx2.AsyncBaseTransport):
    """HTTPS/1.1 with `ssl_context`, one idle connection kept per origin (module docstring);
    through the proxy `proxies` names for a URL (as `environment_proxies` returns them, matched
    as httpx2 matches its mounts), if any."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_body: int = DEFAULT_MAX_BODY,
        proxies: Mapping[str, str | None] | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._max_body = max_body
        self._idle: dict[tuple[str, int], _Connection] = {}
        # NB: only https is spoken here, so an http:// route (HTTP_PROXY) never applies: it is
        # left out, and so is what might be wrong with it.
        self._routes = sorted(
            ((URLPattern(key), _route(key, url)) for key, url in (proxies or {}).items()
             if not key.startswith("http://")),
            key=lambda route: route[0],
        )  # fmt: skip

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if loop.running():
            raise RuntimeError(
                "BlockingTransport blocks its thread: it is for coroutines run without an event "
                "loop (tokens.loop.run)"
            )
        url = request.url
        if url.scheme != "https":
            raise httpx2.UnsupportedProtocol("only https is spoken here", request=request)
        # NB: the host's ASCII form (IDNA's A-labels) for the address, the tunnel and the
        # certificate's name alike, so that they cannot disagree on a name.
        origin = (url.raw_host.decode("ascii"), url.port or 443)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        kept = self._idle.pop(origin, None)
        if kept is not None and kept.open():
            try:
                return self._exchange(kept, origin, request, body, timeouts, kept=True)
            except _StaleConnection:
                pass  # closed by the server while idle: once more on a new connection
        elif kept is not None:
            kept.close()
        connection = self._connect(origin, request, timeouts.get("connect"))
        return self._exchange(connection, origin, request, body, timeouts, kept=False)

    def _proxy(self, request: httpx2.Request) -> httpx2.Proxy | None:
        """The proxy for the request's URL: the first route whose pattern matches it, most
        specific first (as httpx2 orders its mounts)."""
        for pattern, proxy in self._routes:
            if pattern.matches(request.url):
                if isinstance(proxy, str):
                    raise httpx2.ProxyError(proxy, request=request)
                return proxy
        return None

    async def aclose(self) -> None:
        idle, self._idle = list(self._idle.values()), {}
        for connection in idle:
            connection.close()

    def _connect(
        self, origin: tuple[str, int], request: httpx2.Request, seconds: float | None
    ) -> _Connection:
        """A TLS connection to `origin`, directly or tunnelled through its proxy: with `seconds`
        (the connect timeout) one budget for the TCP connection (all the addresses tried in
        turn), the tunnel and the handshake, and never past the deadline. NB: the name is
        resolved by the system's resolver, unbounded (as it was in asyncio's executor): a
        resolver that hangs is the kubelet's timeout's business."""
        host, port = origin
        ends = None if seconds is None else time.monotonic() + seconds
        proxy = self._proxy(request)
        if proxy is None:
            raw = _open(host, port, ends, request)
        else:
            where = f"the proxy at {proxy.url.host}:{proxy.url.port or 80}"
            raw = _open(proxy.url.host, proxy.url.port or 80, ends, request, proxy=where)
            try:
                _tunnel(raw, proxy, origin, ends, request, where=where)
            except BaseException:
                raw.close()
                raise
        late = f"connecting to {host}:{port} timed out"
        try:
            block = _budget(raw, ends, late, request)
            tls = self._ssl.wrap_socket(raw, server_hostname=host)
        except OSError as e:  # ssl.SSLError included
            raw.close()
            if _our_timeout(e):
                _timed_out(block, httpx2.ConnectTimeout, late, request)
            raise httpx2.ConnectError(str(e) or type(e).__name__, request=request) from e
        except BaseException:
            raw.close()
            raise
        return _Connection(tls)

    def _exchange(
        self,
        connection: _Connection,
        origin: tuple[str, int],
        request: httpx2.Request,
        body: bytes,
        timeouts: dict[str, float | None],
        *,
        kept: bool,
    ) -> httpx2.Response:
        """`request`'s answer on `connection`; `_StaleConnection` if `kept` and it failed
        before any byte of an answer (the caller tries a new one)."""
        try:
            self._send(connection, request, body, timeouts.get("write"), kept=kept)
            head, content = self._receive(connection, request, timeouts.get("read"), kept=kept)
        except BaseException:
            connection.close()
            raise
        state = connection.state
        if state.our_state is h11.DONE and state.their_state is h11.DONE:
            state.start_next_cycle()
        names = {name for name, _ in head.headers}
        framed_twice = b"content-length" in names and b"transfer-encoding" in names
        if state.our_state is h11.IDLE and not framed_twice and connection.open():
            previous = self._idle.pop(origin, None)
            if previous is not None:
                previous.close()
            self._idle[origin] = connection
        else:
            connection.close()
        return httpx2.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            content=content,
            request=request,
            extensions={
                "http_version": b"HTTP/" + head.http_version,
                "reason_phrase": head.reason,
            },
        )

    def _send(
        self,
        connection: _Connection,
        request: httpx2.Request,
        body: bytes,
        seconds: float | None,
        *,
        kept: bool,
    ) -> None:
        state = connection.state
        try:
            events: list[h11.Event] = [
                h11.Request(
                    method=request.method,
                    target=request.url.raw_path or b"/",
                    headers=request.headers.raw,
                )
            ]
            if body:
                events.append(h11.Data(data=body))
            events.append(h11.EndOfMessage())
            data = b"".join(state.send(event) or b"" for event in events)
        except h11.LocalProtocolError as e:
            raise httpx2.LocalProtocolError(str(e), request=request) from e
        wait, block = loop.limit(seconds)
        try:
            connection.socket.settimeout(wait)
            connection.socket.sendall(data)
        except OSError as e:  # ssl.SSLError included
            if _our_timeout(e):
                _timed_out(block, httpx2.WriteTimeout, "writing the request timed out", request)
            if kept:
                raise _StaleConnection from e
            raise httpx2.WriteError(str(e) or type(e).__name__, request=request) from e

    def _receive(
        self,
        connection: _Connection,
        request: httpx2.Request,
        seconds: float | None,
        *,
        kept: bool,
    ) -> tuple[h11.Response, bytes]:
        """The answer's head and body, read with h11 within the limits."""
        state = connection.state
        head: h11.Response | None = None
        chunks: list[bytes] = []
        received = size = 0
        ended = False
        while True:
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as e:
                if ended:
                    raise httpx2.RemoteProtocolError(f"the answer ended early ({e})",
                                                     request=request) from e  # fmt: skip
                if head is None and received > MAX_HEADERS:
                    raise httpx2.RemoteProtocolError(f"the answer's headers are too long ({e})",
                                                     request=request) from e  # fmt: skip
                raise httpx2.RemoteProtocolError(f"a malformed answer ({e})",
                                                 request=request) from e  # fmt: skip
            if event is h11.NEED_DATA:
                # Until the head is complete, no more than h11 may hold of it: h11's limit is
                # on what it holds unparsed, and one large read could hold a whole long head.
                wanted = READ_SIZE if head is not None else max(1, MAX_HEADERS - received)
                wait, block = loop.limit(seconds)
                try:
                    connection.socket.settimeout(wait)
                    data = connection.socket.recv(wanted)
                except OSError as e:  # ssl.SSLError included
                    if _our_timeout(e):
                        _timed_out(block, httpx2.ReadTimeout, "reading the answer timed out",
                                   request)  # fmt: skip
                    if kept and not received:
                        raise _StaleConnection from e
                    raise httpx2.ReadError(str(e) or type(e).__name__, request=request) from e
                if not data and not received:
                    if kept:
                        raise _StaleConnection
                    raise httpx2.RemoteProtocolError(
                        "the server closed the connection without answering", request=request
                    )
                received += len(data)
                ended = not data
                state.receive_data(data)  # b"": the server closed its side
            elif isinstance(event, h11.Response):
                head = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > self._max_body:
                    raise httpx2.RemoteProtocolError("the answer is too large", request=request)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body:
                    raise httpx2.RemoteProtocolError("the answer is too large", request=request)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None  # h11 ends no message it did not start
                return head, b"".join(chunks)
            elif not isinstance(event, h11.InformationalResponse):  # 1xx: the answer follows
                raise httpx2.RemoteProtocolError(f"an unexpected {type(event).__name__}",
                                                 request=request)  # fmt: skip


def _route(key: str, url: str | None) -> httpx2.Proxy | str | None:
    """The proxy `url` names for the requests of pattern `key` (None: none), or why it cannot be
    used: a message that quotes nothing of the URL, which may hold a password."""
    if url is None:
        return None
    try:
        proxy = httpx2.Proxy(url)
    except (ValueError, httpx2.InvalidURL):
        variable = "ALL_PROXY" if key.startswith("all://") else "HTTPS_PROXY"
        return (
            f"the proxy {variable} names is not a valid URL (a user or password in it must be "
            "percent-encoded)"
        )
    if proxy.url.scheme != "http":
        return f"a proxy at {proxy.url.scheme}:// is not supported here, only at http://"
    return proxy


def _open(
    host: str, port: int, ends: float | None, request: httpx2.Request, *, proxy: str | None = None
) -> socket.socket:
    """A TCP connection to `host`:`port` (the proxy `proxy` describes, when given, and names in
    errors), its addresses tried in turn until `ends` (the connect budget) or the deadline."""
    late = f"connecting to {proxy or f'{host}:{port}'} timed out"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise httpx2.ConnectError(str(e) or type(e).__name__, request=request) from e
    failure: OSError | None = None
    for family, kind, protocol, _, address in addresses:
        raw = socket.socket(family, kind, protocol)
        try:
            block = _budget(raw, ends, late, request)
            raw.connect(address)
        except OSError as e:
            raw.close()
            if _our_timeout(e):  # the budget or the deadline is spent
                _timed_out(block, httpx2.ConnectTimeout, late, request)
            failure = e  # refused, unreachable: the next address
            continue
        except BaseException:
            raw.close()
            raise
        return raw
    reason = str(failure) if failure is not None else f"{host} has no address"
    if proxy is not None:
        reason = f"{proxy}: {reason}"
    raise httpx2.ConnectError(reason, request=request) from failure


def _tunnel(
    raw: socket.socket,
    proxy: httpx2.Proxy,
    origin: tuple[str, int],
    ends: float | None,
    request: httpx2.Request,
    *,
    where: str,
) -> None:
    """Ask the proxy on `raw` for a tunnel to `origin` (HTTP ``CONNECT``, RFC 9110 section 9.3.6)
    within the connect budget; return once it answered 2xx, the socket then being the tunnel."""
    host, port = origin
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    authority = target.encode("ascii")
    headers: list[tuple[bytes, bytes]] = [(b"Host", authority)]
    if proxy.raw_auth is not None:
        credentials = b":".join(proxy.raw_auth)
        headers.append((b"Proxy-Authorization", b"Basic " + base64.b64encode(credentials)))
    headers += proxy.headers.raw
    state = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
    data = state.send(h11.Request(method="CONNECT", target=authority, headers=headers)) or b""
    data += state.send(h11.EndOfMessage()) or b""
    late = f"asking {where} for a tunnel to {target} timed out"
    try:
        block = _budget(raw, ends, late, request)
        raw.sendall(data)
        while True:
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as e:
                raise httpx2.ProxyError(f"{where} answered CONNECT malformed ({e})",
                                        request=request) from e  # fmt: skip
            if event is h11.NEED_DATA:
                block = _budget(raw, ends, late, request)
                chunk = raw.recv(MAX_HEADERS)
                if not chunk:
                    raise httpx2.ProxyError(f"{where} closed the connection instead of a tunnel to "
                                            f"{target}", request=request)  # fmt: skip
                state.receive_data(chunk)
            elif isinstance(event, h11.Response):
                if not 200 <= event.status_code < 300:
                    reason = event.reason.decode("ascii", "replace")[:100]
                    raise httpx2.ProxyError(
                        f"{where} refused a tunnel to {target}: {event.status_code} {reason}",
                        request=request,
                    )
            elif event is h11.PAUSED:  # the 2xx was the last of HTTP on this connection
                extra, _ = state.trailing_data
                if extra:  # nothing may come before the service's TLS
                    raise httpx2.ProxyError(f"{where} sent more than its answer to CONNECT",
                                            request=request)  # fmt: skip
                return
            elif not isinstance(event, h11.InformationalResponse):
                raise httpx2.ProxyError(f"{where} answered CONNECT with a "
                                        f"{type(event).__name__}", request=request)  # fmt: skip
    except OSError as e:
        if _our_timeout(e):
            _timed_out(block, httpx2.ConnectTimeout, late, request)
        raise httpx2.ProxyError(f"{where}: {e or type(e).__name__}", request=request) from e


class _Connection:
    """A TLS connection and h11's state of the HTTP/1.1 on it."""

    __slots__ = ("socket", "state")

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.socket = tls
        self.state = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)

    def open(self) -> bool:
        """Neither side has closed it, as far as can be seen: an idle connection has nothing
        to read, unless the server closed it (or sent what nobody asked for)."""
        if self.socket.fileno() < 0:
            return False
        try:
            readable, _, _ = select.select([self.socket], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable and not self.socket.pending()

    def close(self) -> None:
        self.socket.close()


class _StaleConnection(Exception):
    """A kept connection failed before any byte of an answer: the server closed it idle."""


def _our_timeout(error: OSError) -> bool:
    """Whether `error` is a socket's own timeout (the wait it was given ran out), not the
    system's ETIMEDOUT (a connection that failed)."""
    return isinstance(error, TimeoutError) and error.errno is None


def _budget(
    raw: socket.socket, ends: float | None, message: str, request: httpx2.Request
) -> loop.Deadline | None:
    """`raw`'s timeout set for the next step of a connect: what is left of its budget (ending
    at `ends`), or less when the deadline comes sooner (see `loop.limit`); returns that
    deadline's block when it bounds the wait. ConnectTimeout (`message`) once the budget is
    spent."""
    if ends is None:
        wait, block = loop.limit(None)
    else:
        left = ends - time.monotonic()
        if left <= 0:
            raise httpx2.ConnectTimeout(message, request=request)
        wait, block = loop.limit(left)
    raw.settimeout(wait)
    return block


def _timed_out(
    block: loop.Deadline | None,
    kind: Callable[..., httpx2.TimeoutException],
    message: str,
    request: httpx2.Request,
) -> NoReturn:
    """The operation's own timeout as httpx2's `kind`, or, when a `within` deadline bounded
    the wait (its time left was shorter than the operation's timeout, and has run out),
    `loop.DeadlineExceeded` for that deadline's block."""
    if block is not None:
        raise loop.DeadlineExceeded(block)
    raise kind(message, request=request) from None
