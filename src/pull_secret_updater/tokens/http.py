"""The HTTPS client every request to the token service goes through, and its small helpers.

One client serves the exchange and the key discovery, so both trust exactly the same
certificates: a configured CA bundle *replaces* the system trust store (an operator who pins
the token service to a private CA means exactly that CA), and there is no switch to turn
verification off. Redirects are not followed: an exchange sent elsewhere would carry the
service-account token along.
"""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2

from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.tokens import loop
from pull_secret_updater.tokens.errors import (
    ExchangeError,
    MalformedResponse,
    TransientExchangeError,
)

#: A token answer or a key set is a few kilobytes; a bigger one is a misbehaving server.
MAX_RESPONSE_BYTES = 256 * 1024

NOT_JSON = object()

#: How much of a server's explanation ends up in a message.
MAX_DETAIL = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """A token service's answer, read whole (at most MAX_RESPONSE_BYTES)."""

    status: int
    headers: httpx2.Headers
    body: bytes

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (Retry-After's delay-seconds form)."""
        # NB: an HTTP-date is rare from an API and ignored.
        text = (self.headers.get("Retry-After") or "").strip()
        if not (text.isascii() and text.isdecimal()):
            return None
        return float(text)


def reason_of(error: httpx2.HTTPError, *, known: Iterable[str] = ()) -> str:
    """Why a request failed, for a message: the error's text (its class's name if it has none),
    on one line, with the `known` secrets and anything credential-like redacted."""
    return truncate(redact(str(error) or type(error).__name__, known=known), limit=MAX_DETAIL)


async def send(
    client: httpx2.AsyncClient,
    request: httpx2.Request,
    *,
    where: str,
    deadline: float,
    secrets: Iterable[str] = (),
) -> Answer:
    """`request`'s answer; every way of not getting one raises an `ExchangeError`.

    `where` names the server in messages ("the token service at https://..."); `deadline` bounds
    the whole request; `secrets` are what the request carries, scrubbed from any message.
    """
    try:
        async with loop.within(deadline):
            response = await client.send(request, stream=True)
            try:
                body = await read_bounded(response, limit=MAX_RESPONSE_BYTES)
            finally:
                await response.aclose()
    except TimeoutError as e:
        raise TransientExchangeError(
            f"{where} did not answer within {deadline:g}s", cause="timeout"
        ) from e
    except httpx2.TimeoutException as e:
        raise TransientExchangeError(
            f"{where} timed out ({type(e).__name__})", cause="timeout"
        ) from e
    except httpx2.HTTPError as e:
        verification = verification_failure(e)
        if verification is not None:
            raise ExchangeError(
                f"the certificate of {where} could not be verified ({verification}); "
                "check the CA bundle setting (ca_bundle, PSU_CA_BUNDLE)",
                cause="tls",
                retryable=False,
            ) from e
        reason = reason_of(e, known=secrets)
        raise TransientExchangeError(
            f"could not reach {where}: {reason}", cause="connection"
        ) from e
    if body is None:
        raise MalformedResponse(
            f"{where} answered {response.status_code} with more than {MAX_RESPONSE_BYTES} bytes",
            cause="malformed",
            status=response.status_code,
        )
    return Answer(status=response.status_code, headers=response.headers, body=body)


def make_client(
    *,
    timeout: float,
    user_agent: str,
    ca_bundle: Path | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    """A client with verified TLS (against `ca_bundle` alone when given)."""
    return httpx2.AsyncClient(
        transport=transport,
        verify=ssl_context(ca_bundle) if ca_bundle is not None else True,
        timeout=httpx2.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": user_agent, "Accept": "application/json"},
    )


def checked_client(
    *,
    endpoints: Mapping[str, str | None],
    timeout: float,
    user_agent: str,
    ca_bundle: Path | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    """`make_client` for a provider configured with `endpoints` (setting name: URL, None for
    the service's own): ValueError unless each given one is https and `timeout` is a finite
    number of seconds > 0."""
    for name, url in endpoints.items():
        if url is not None and not url.startswith("https://"):
            raise ValueError(f"{name} must be an https:// URL; credentials are never sent in clear")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError("timeout must be a finite number of seconds > 0")
    return make_client(
        timeout=timeout, user_agent=user_agent, ca_bundle=ca_bundle, transport=transport
    )


def ssl_context(ca_bundle: Path) -> ssl.SSLContext:
    """A context trusting only the certificates in `ca_bundle`; ValueError if unusable."""
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except FileNotFoundError:
        problem = "the file does not exist"
    except ssl.SSLError as e:
        problem = f"it holds no usable PEM certificate ({e.reason or e.strerror})"
    except OSError as e:
        problem = e.strerror or type(e).__name__
    raise ValueError(f"cannot load the CA bundle {ca_bundle}: {problem}")


async def read_bounded(
    response: httpx2.Response, *, limit: int = MAX_RESPONSE_BYTES
) -> bytes | None:
    """The body, or None when it is longer than `limit` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def verification_failure(error: BaseException) -> str | None:
    """The reason a certificate failed verification, if that is what `error` comes from."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or "certificate verify failed"
        current = current.__cause__ or current.__context__
    return None


def load_json(body: bytes) -> object:
    """The parsed body, or `NOT_JSON`.

    NB: no exception escapes, and none is chained: JSONDecodeError.doc and
    UnicodeDecodeError.object hold the body, which may hold a token.
    """
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return NOT_JSON
