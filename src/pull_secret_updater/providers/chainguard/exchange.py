"""Chainguard's security token service: a service-account token in, a registry token out.

The request is the original controller's: ``POST {issuer}/sts/exchange?aud=<registry>&
identity=<uid>`` with ``Authorization: Bearer <service-account token>`` and no body.
Chainguard's SDK sends the same fields as a JSON body (``{"aud": [...], "identity": ...}``);
the service accepts both, and the query string is what we send. The answer is JSON
``{"token": ..., "refresh_token"?, "expiry"?}``; only ``token`` is used, and only once it
verified against the service's published keys (`verification`): its lifetime then comes from
its own verified ``iat``/``exp``, and its ``sub`` must be the identity asked for. The
``expiry`` field is not trusted on its own. Nothing is exchanged while the keys cannot be
had: a token we could not verify would be of no use.

Everything that can go wrong is translated here, once, into `errors.ExchangeError` and its
subclasses. The server's explanation is kept (it says *why* an identity refused us) but
scrubbed of anything shaped like a token and cut to 200 characters first.

TLS is always verified (see `http`): a configured CA bundle *replaces* the system trust
store, for the exchange and the key discovery alike.

NB: a little over our usual module size because the translation of every answer (status,
gRPC code, Retry-After, the server's scrubbed detail) stays beside the one request it
belongs to; the verification of what comes back is already its own module.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx2

from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.providers.chainguard import (
    DEFAULT_ISSUER,
    DEFAULT_REGISTRY,
    NAME,
    USERNAME,
)
from pull_secret_updater.providers.chainguard.spec import ChainguardSpec
from pull_secret_updater.tokens.errors import (
    ExchangeError,
    MalformedResponse,
    RejectedExchangeError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.http import (
    MAX_DETAIL,
    NOT_JSON,
    load_json,
    make_client,
    send,
)
from pull_secret_updater.tokens.keyfile import KeyFile
from pull_secret_updater.tokens.provider import Subject, SubjectTokenSource
from pull_secret_updater.tokens.verification import TokenVerifier
from pull_secret_updater.version import user_agent

DEFAULT_TIMEOUT = 10.0
DEFAULT_MIN_LIFETIME = 30.0


_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: gRPC status codes, which a grpc-gateway in front of the service sends as numbers.
_GRPC_CODES = {
    1: "cancelled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    6: "already_exists",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    11: "out_of_range",
    12: "unimplemented",
    13: "internal",
    14: "unavailable",
    15: "data_loss",
    16: "unauthenticated",
}


class ChainguardSTS:
    """Exchanges service-account tokens for verified registry tokens.

    Connect and read each get `timeout` seconds, and the whole exchange twice that. A token
    expiring within `min_lifetime` seconds is refused as unusable (`MalformedResponse`).
    `clock` gives epoch seconds. `transport` replaces the network, for tests.
    `verifier` verifies the tokens against the service's keys (`TokenVerifier` on the same
    HTTPS client by default), keeping them under `key_cache` between processes if given
    (`tokens.keyfile`).
    """

    def __init__(
        self,
        *,
        sa_tokens: SubjectTokenSource,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_REGISTRY,
        ca_bundle: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        min_lifetime: float = DEFAULT_MIN_LIFETIME,
        clock: Callable[[], float] = time.time,
        transport: httpx2.AsyncBaseTransport | None = None,
        verifier: TokenVerifier | None = None,
        key_cache: Path | None = None,
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
        self._client = make_client(
            timeout=timeout, user_agent=user_agent(), ca_bundle=ca_bundle, transport=transport
        )
        self.spec = ChainguardSpec(registry=audience)
        self.verifier = verifier or TokenVerifier(
            issuer=self.issuer,
            audience=audience,
            http=self._client,
            clock=clock,
            provider=NAME,
            username=USERNAME,
            key_file=KeyFile(key_cache, issuer=self.issuer) if key_cache is not None else None,
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

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        """A verified registry token for `want.identity` (an assumable identity's UID),
        exchanged with the token of `subject`."""
        identity = want.identity
        if not identity:
            raise ValueError("identity must not be empty")
        sa_token = await self._sa_tokens.get(subject)
        # NB: nothing is exchanged while the keys cannot be had: the token could not be used.
        await self.verifier.ensure_keys()
        status, retry_after, body = await self._post(identity=identity, sa_token=sa_token)
        if 200 <= status < 300:
            return await self._accept(body, status=status, identity=identity)
        raise _status_error(status, body=body, retry_after=retry_after, sa_token=sa_token)

    async def verify(self, token: str) -> Credential:
        return await self.verifier.verify(token)

    def still_trusted(self, token: Credential) -> bool:
        return self.verifier.still_trusted(token)

    def on_withdrawn(self, listener: Callable[[], None]) -> None:
        self.verifier.on_withdrawn.append(listener)

    async def refresh_if_stale(self) -> None:
        await self.verifier.refresh_if_stale()

    async def _post(self, *, identity: str, sa_token: str) -> tuple[int, float | None, bytes]:
        request = self._client.build_request(
            "POST",
            self._url,
            params={"aud": self.audience, "identity": identity},
            headers={"Authorization": f"Bearer {sa_token}"},
        )
        answer = await send(
            self._client,
            request,
            where=f"the token service at {self.issuer}",
            deadline=2 * self.timeout,
            secrets=(sa_token,),
        )
        return answer.status, answer.retry_after, answer.body

    async def _accept(self, body: bytes, *, status: int, identity: str) -> Credential:
        document = load_json(body)
        if not isinstance(document, dict):
            what = "not JSON" if document is NOT_JSON else "not a JSON object"
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
        problem = None
        try:
            verified = await self.verifier.verify(token)
        except InvalidToken as e:
            # NB: InvalidToken's message never holds the token (core.claims promises it).
            problem = str(e)
        if problem is not None:
            raise MalformedResponse(
                f"token service answered {status} with a token that cannot be trusted: {problem}",
                cause="no_exp" if "no exp claim" in problem else "untrusted",
                status=status,
            )
        if verified.identity != identity:
            raise MalformedResponse(
                f"token service answered {status} with a token for another identity",
                cause="untrusted",
                status=status,
            )
        remaining = verified.expires_at - self._clock()
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
        return verified


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
    document = load_json(body)
    if isinstance(document, dict):
        code = _error_code(document.get("code"))
        text = document.get("message")
        text = text if isinstance(text, str) else ""
        detail = f"{code}: {text}" if code and text else code or text
    elif document is NOT_JSON:
        detail = body[: 4 * MAX_DETAIL].decode("utf-8", errors="replace")
        if detail.lstrip().startswith("<"):
            return ""  # an HTML error page from a proxy says nothing the status does not
    else:
        return ""
    return truncate(redact(detail, known=(sa_token,)), limit=MAX_DETAIL)


def _error_code(value: object) -> str | None:
    """The error code as a word: the service's own, or a gRPC code given as a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        name = _GRPC_CODES.get(value)
        return f"{name} ({value})" if name else f"code {value}" if 0 <= value < 1000 else None
    if isinstance(value, str) and _SAFE_CODE.fullmatch(value):
        return value
    return None
