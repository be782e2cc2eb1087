"""Chainguard's security token service: our service-account token in, a registry token out.

The request is the original controller's: ``POST {issuer}/sts/exchange?aud=<registry>&
identity=<uid>`` with ``Authorization: Bearer <service-account token>`` and no body.
Chainguard's SDK sends the same fields as a JSON body (``{"aud": [...], "identity": ...}``);
the service accepts both, and the query string is what we send. The answer is JSON
``{"token": ..., "refresh_token"?, "expiry"?}``; only ``token`` is used, and its lifetime is
read from its own ``exp``/``iat`` claims, so the ``expiry`` field is not trusted on its own.

Everything that can go wrong is translated here, once, into `errors.ExchangeError` and its
subclasses. The server's explanation is kept (it says *why* an identity refused us) but
scrubbed of anything shaped like a token and cut to 200 characters first.

TLS is always verified. A configured CA bundle *replaces* the default trust store for this
client: an operator who pins the STS to a private CA means exactly that CA. There is no
switch to turn verification off.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx2

from pull_secret_updater.core.claims import InvalidToken, read_claims
from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.tokens.errors import (
    Cause,
    ExchangeError,
    MalformedResponse,
    RejectedExchangeError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.provider import IssuedToken
from pull_secret_updater.tokens.satoken import ServiceAccountTokenSource
from pull_secret_updater.version import user_agent

DEFAULT_ISSUER = "https://issuer.enforce.dev"
DEFAULT_REGISTRY = "cgr.dev"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MIN_LIFETIME = 30.0

#: A token answer is a few kilobytes; a bigger one is a misbehaving server, not a token.
MAX_RESPONSE_BYTES = 256 * 1024

#: How much of the server's explanation ends up in a message.
MAX_DETAIL = 200

_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ChainguardSTS:
    """Exchanges the controller's service-account token for a registry token.

    Connect and read each get `timeout` seconds, and the whole exchange twice that. A token
    expiring within `min_lifetime` seconds is refused as unusable (`MalformedResponse`).
    `clock` gives epoch seconds. `transport` replaces the network, for tests.
    """

    def __init__(
        self,
        *,
        sa_tokens: ServiceAccountTokenSource,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_REGISTRY,
        ca_bundle: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        min_lifetime: float = DEFAULT_MIN_LIFETIME,
        clock: Callable[[], float] = time.time,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        if not issuer.startswith("https://"):
            raise ValueError("issuer must be an https:// URL; the exchange is never sent in clear")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a finite number of seconds > 0")
        if not (math.isfinite(min_lifetime) and min_lifetime >= 0):
            raise ValueError("min_lifetime must be a finite number of seconds >= 0")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.min_lifetime = min_lifetime
        self._sa_tokens = sa_tokens
        self._clock = clock
        self._url = f"{self.issuer}/sts/exchange"
        self._client = httpx2.AsyncClient(
            transport=transport,
            verify=_ssl_context(ca_bundle) if ca_bundle is not None else True,
            timeout=httpx2.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": user_agent(), "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self.issuer!r}, audience={self.audience!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def issue(self, *, identity: str) -> IssuedToken:
        """A registry token for `identity` (an assumable identity's UID)."""
        if not identity:
            raise ValueError("identity must not be empty")
        sa_token = await self._sa_tokens.get()
        status, retry_after, body = await self._post(identity=identity, sa_token=sa_token)
        if 200 <= status < 300:
            return self._accept(body, status=status)
        raise _status_error(status, body=body, retry_after=retry_after, sa_token=sa_token)

    async def _post(self, *, identity: str, sa_token: str) -> tuple[int, float | None, bytes]:
        where = f"the token service at {self.issuer}"
        try:
            async with asyncio.timeout(2 * self.timeout):
                async with self._client.stream(
                    "POST",
                    self._url,
                    params={"aud": self.audience, "identity": identity},
                    headers={"Authorization": f"Bearer {sa_token}"},
                ) as response:
                    body = await _read_bounded(response, limit=MAX_RESPONSE_BYTES)
                    status = response.status_code
                    retry_after = _retry_after(response.headers.get("Retry-After"))
        except TimeoutError as e:
            raise TransientExchangeError(
                f"{where} did not answer within {2 * self.timeout:g}s", cause="timeout"
            ) from e
        except httpx2.TimeoutException as e:
            raise TransientExchangeError(
                f"{where} timed out ({type(e).__name__})", cause="timeout"
            ) from e
        except httpx2.HTTPError as e:
            verification = _verification_failure(e)
            if verification is not None:
                raise ExchangeError(
                    f"the certificate of {where} could not be verified ({verification}); "
                    "check the CA bundle setting (ca_bundle, PSU_CA_BUNDLE)",
                    cause="tls",
                    retryable=False,
                ) from e
            reason = truncate(
                redact(str(e) or type(e).__name__, known=(sa_token,)), limit=MAX_DETAIL
            )
            raise TransientExchangeError(
                f"could not reach {where}: {reason}", cause="connection"
            ) from e
        if body is None:
            raise MalformedResponse(
                f"token service answered {status} with more than {MAX_RESPONSE_BYTES} bytes",
                cause="malformed",
                status=status,
            )
        return status, retry_after, body

    def _accept(self, body: bytes, *, status: int) -> IssuedToken:
        document = _load_json(body)
        if not isinstance(document, dict):
            what = "not JSON" if document is _NOT_JSON else "not a JSON object"
            raise MalformedResponse(
                f"token service answered {status} but the body is {what}",
                cause="malformed",
                status=status,
            )
        token = document.get("token")
        if not isinstance(token, str) or not token:
            raise MalformedResponse(
                f"token service answered {status} without a token", cause="malformed", status=status
            )
        try:
            claims = read_claims(token)
        except InvalidToken as e:
            # NB: InvalidToken's message never holds the token (core.claims promises it).
            cause: Cause = "no_exp" if "no exp claim" in str(e) else "malformed"
            raise MalformedResponse(
                f"token service answered {status} with an unusable token: {e}",
                cause=cause,
                status=status,
            ) from e
        now = self._clock()
        remaining = claims.exp - now
        if remaining <= 0:
            raise MalformedResponse(
                f"token service answered {status} with a token that has already expired "
                "(is a clock wrong?)",
                cause="expired",
                status=status,
            )
        if remaining < self.min_lifetime:
            raise MalformedResponse(
                f"token service answered {status} with a token that expires in less than "
                f"the minimum of {self.min_lifetime:g}s",
                cause="short_lived",
                status=status,
            )
        return IssuedToken(
            token=token,
            expires_at=claims.exp,
            issued_at=claims.iat if claims.iat is not None else now,
            registry=self.audience,
        )


def _ssl_context(ca_bundle: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except FileNotFoundError:
        problem = "the file does not exist"
    except ssl.SSLError as e:
        problem = f"it holds no usable PEM certificate ({e.reason or e.strerror})"
    except OSError as e:
        problem = e.strerror or type(e).__name__
    raise ValueError(f"cannot load the CA bundle {ca_bundle}: {problem}")


async def _read_bounded(response: httpx2.Response, *, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _verification_failure(error: BaseException) -> str | None:
    """The reason a certificate failed verification, if that is what `error` comes from."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or "certificate verify failed"
        current = current.__cause__ or current.__context__
    return None


def _retry_after(value: str | None) -> float | None:
    # NB: only the delay-seconds form; an HTTP-date is rare from an API and ignored.
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


_NOT_JSON = object()


def _load_json(body: bytes) -> object:
    # NB: no exception escapes, and none is chained: JSONDecodeError.doc and
    # UnicodeDecodeError.object hold the body, which may hold a token.
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _NOT_JSON


def _status_error(
    status: int, *, body: bytes, retry_after: float | None, sa_token: str
) -> ExchangeError:
    detail = _server_detail(body, sa_token=sa_token)
    message = f"token service answered {status}" + (f" {detail}" if detail else "")
    if status == 429:
        return TransientExchangeError(
            message, cause="throttled", status=status, retry_after=retry_after
        )
    if status == 408:
        return TransientExchangeError(message, cause="timeout", status=status)
    if status >= 500:
        return TransientExchangeError(
            message, cause="unavailable", status=status, retry_after=retry_after
        )
    if status == 401:
        return RejectedExchangeError(message, cause="unauthorized", status=status)
    if status == 404:
        return RejectedExchangeError(message, cause="not_found", status=status)
    if 300 <= status < 400:
        message += "; is the issuer URL right?"
    return RejectedExchangeError(message, cause="rejected", status=status)


def _server_detail(body: bytes, *, sa_token: str) -> str:
    """`code: message` from a `{code, message}` error body, else its text; scrubbed, short."""
    document = _load_json(body)
    if isinstance(document, dict):
        code = document.get("code")
        code = code if isinstance(code, str) and _SAFE_CODE.fullmatch(code) else None
        text = document.get("message")
        text = text if isinstance(text, str) else ""
        detail = f"{code}: {text}" if code and text else code or text
    elif document is _NOT_JSON:
        detail = body[: 4 * MAX_DETAIL].decode("utf-8", errors="replace")
        if detail.lstrip().startswith("<"):
            return ""  # an HTML error page from a proxy says nothing the status does not
    else:
        return ""
    return truncate(redact(detail, known=(sa_token,)), limit=MAX_DETAIL)
