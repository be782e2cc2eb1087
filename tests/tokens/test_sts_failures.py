"""Every way an exchange can fail maps to one class and one cause, and leaks no token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path

import httpx2
import pytest

from pull_secret_updater.tokens import (
    ChainguardSTS,
    ExchangeError,
    MalformedResponse,
    ProjectedFileTokenSource,
    RejectedExchangeError,
    TokenSourceError,
    TransientExchangeError,
)
from tests.tokens.fakes import (
    NOW,
    SA_TOKEN,
    FakeClock,
    StaticTokenSource,
    everything_printed,
    make_jwt,
    registry_token,
    unsigned_jwt,
)

Handler = Callable[[httpx2.Request], Coroutine[None, None, httpx2.Response]]

#: The token a lying server hands out in the 200 cases; must never be printed.
SECRET_TOKEN_WORD = "opaque-registry-credential"


def sts(handler: Handler, *, seconds: float = 10.0) -> ChainguardSTS:
    return ChainguardSTS(
        sa_tokens=StaticTokenSource(),
        issuer="https://issuer.test",
        audience="cgr.dev",
        clock=FakeClock(),
        timeout=seconds,
        transport=httpx2.MockTransport(handler),
    )


def answer(status: int, body: object = None, **kwargs: object) -> Handler:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, bytes):
            return httpx2.Response(status, content=body, **kwargs)  # type: ignore[arg-type]
        return httpx2.Response(status, json=body, **kwargs)  # type: ignore[arg-type]

    return handler


def raising(error: type[httpx2.TransportError], text: str) -> Handler:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        raise error(text, request=request)

    return handler


async def exchange_error(handler: Handler, *, seconds: float = 10.0) -> ExchangeError:
    async with sts(handler, seconds=seconds) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.issue(identity="org/identity")
    return caught.value


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


CASES = [
    pytest.param(
        raising(httpx2.ConnectError, "[Errno 111] Connection refused"),
        TransientExchangeError, "connection", None, id="connection-refused",
    ),
    pytest.param(
        raising(httpx2.ReadError, "[Errno 104] Connection reset by peer"),
        TransientExchangeError, "connection", None, id="connection-reset",
    ),
    pytest.param(
        raising(httpx2.RemoteProtocolError, "Server disconnected without sending a response."),
        TransientExchangeError, "connection", None, id="server-disconnected",
    ),
    pytest.param(
        raising(httpx2.ConnectTimeout, "timed out"),
        TransientExchangeError, "timeout", None, id="connect-timeout",
    ),
    pytest.param(
        raising(httpx2.ReadTimeout, "timed out"),
        TransientExchangeError, "timeout", None, id="read-timeout",
    ),
    pytest.param(
        answer(429, error_body("resource_exhausted", "slow down")),
        TransientExchangeError, "throttled", 429, id="429",
    ),
    pytest.param(
        answer(500, error_body("internal", "boom")),
        TransientExchangeError, "unavailable", 500, id="500",
    ),
    pytest.param(
        answer(502, b"<html><body>Bad Gateway</body></html>"),
        TransientExchangeError, "unavailable", 502, id="502-html",
    ),
    pytest.param(
        answer(503, error_body("unavailable", "try later")),
        TransientExchangeError, "unavailable", 503, id="503",
    ),
    pytest.param(
        answer(400, error_body("invalid_argument", "aud is required")),
        RejectedExchangeError, "rejected", 400, id="400",
    ),
    pytest.param(
        answer(401, error_body("unauthenticated", "token has expired")),
        RejectedExchangeError, "unauthorized", 401, id="401",
    ),
    pytest.param(
        answer(403, error_body("permission_denied", "subject does not match")),
        RejectedExchangeError, "rejected", 403, id="403",
    ),
    pytest.param(
        answer(404, error_body("not_found", "no such identity")),
        RejectedExchangeError, "not_found", 404, id="404",
    ),
    pytest.param(
        answer(418, b"I'm a teapot"), RejectedExchangeError, "rejected", 418, id="other-4xx",
    ),
    pytest.param(
        answer(200, b"<html>a login page</html>"),
        MalformedResponse, "malformed", 200, id="200-not-json",
    ),
    pytest.param(
        answer(200, [SECRET_TOKEN_WORD]), MalformedResponse, "malformed", 200, id="200-not-object",
    ),
    pytest.param(
        answer(200, {"refresh_token": SECRET_TOKEN_WORD}),
        MalformedResponse, "malformed", 200, id="200-without-token",
    ),
    pytest.param(
        answer(200, {"token": SECRET_TOKEN_WORD}),
        MalformedResponse, "malformed", 200, id="200-token-not-a-jwt",
    ),
    pytest.param(
        answer(200, {"token": make_jwt({"iat": int(NOW), "sub": SECRET_TOKEN_WORD})}),
        MalformedResponse, "no_exp", 200, id="200-token-without-exp",
    ),
    pytest.param(
        answer(200, {"token": unsigned_jwt({"exp": "tomorrow", "sub": SECRET_TOKEN_WORD})}),
        MalformedResponse, "malformed", 200, id="200-token-exp-not-a-number",
    ),
    pytest.param(
        answer(200, {"token": registry_token(iat=NOW - 3600, lifetime=3000,
                                             sub=SECRET_TOKEN_WORD)}),
        MalformedResponse, "expired", 200, id="200-token-already-expired",
    ),
    pytest.param(
        answer(200, {"token": registry_token(iat=NOW, lifetime=20, sub=SECRET_TOKEN_WORD)}),
        MalformedResponse, "short_lived", 200, id="200-token-below-min-lifetime",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("handler", "kind", "cause", "status"), CASES)
async def test_failure_is_classified_once_with_its_cause(
    handler: Handler, kind: type[ExchangeError], cause: str, status: int | None
) -> None:
    error = await exchange_error(handler)
    assert type(error) is kind
    assert error.cause == cause
    assert error.status == status
    assert error.retryable is (kind is not RejectedExchangeError)


@pytest.mark.parametrize(("handler", "kind", "cause", "status"), CASES)
async def test_no_failure_prints_a_token(
    handler: Handler, kind: type[ExchangeError], cause: str, status: int | None
) -> None:
    printed = everything_printed(await exchange_error(handler))
    assert SA_TOKEN not in printed
    assert SECRET_TOKEN_WORD not in printed
    assert "eyJ" not in printed


async def test_message_carries_status_and_the_servers_explanation() -> None:
    error = await exchange_error(
        answer(403, error_body("permission_denied", "subject does not match"))
    )
    assert str(error) == "token service answered 403 permission_denied: subject does not match"


async def test_servers_explanation_is_cut_to_200_characters() -> None:
    error = await exchange_error(answer(400, error_body("invalid_argument", "x" * 5000)))
    detail = str(error).removeprefix("token service answered 400 ")
    assert len(detail) == 200
    assert detail.endswith("...")


async def test_jwts_echoed_by_the_server_are_scrubbed() -> None:
    echoed = f"bad token {SA_TOKEN}; also {registry_token()} and Authorization: Bearer abc.def"
    error = await exchange_error(answer(401, error_body("unauthenticated", echoed)))
    printed = everything_printed(error)
    assert "eyJ" not in printed
    assert "abc.def" not in printed
    assert "[redacted]" in str(error)


async def test_an_unsafe_error_code_is_dropped_and_the_message_kept_on_one_line() -> None:
    error = await exchange_error(answer(403, {"code": "evil\ncode", "message": "line\nbreak"}))
    assert str(error) == "token service answered 403 line break"


async def test_retry_after_seconds_are_kept_for_throttling() -> None:
    error = await exchange_error(answer(429, error_body("x", "y"), headers={"Retry-After": "7"}))
    assert error.retry_after == 7.0


async def test_an_exchange_slower_than_twice_the_timeout_is_cut_short() -> None:
    async def never(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    error = await exchange_error(never, seconds=0.05)
    assert isinstance(error, TransientExchangeError)
    assert error.cause == "timeout"
    assert "within 0.1s" in str(error)


async def test_an_oversized_answer_is_malformed_without_reading_it_all() -> None:
    error = await exchange_error(answer(200, b"x" * (300 * 1024)))
    assert isinstance(error, MalformedResponse)
    assert error.cause == "malformed"


async def test_a_redirect_is_not_followed() -> None:
    error = await exchange_error(answer(302, b"", headers={"Location": "https://elsewhere/"}))
    assert isinstance(error, RejectedExchangeError)
    assert "issuer URL" in str(error)


async def test_a_missing_service_account_token_fails_before_any_request() -> None:
    requests: list[httpx2.Request] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return httpx2.Response(500)

    client = ChainguardSTS(
        sa_tokens=ProjectedFileTokenSource(path=Path("/nonexistent/token")),
        issuer="https://issuer.test",
        transport=httpx2.MockTransport(handler),
    )
    with pytest.raises(TokenSourceError) as caught:
        await client.issue(identity="org/identity")
    assert caught.value.cause == "sa_token"
    assert requests == []
