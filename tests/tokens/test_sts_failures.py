"""Every way an exchange can fail maps to one class and one cause, and leaks no token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx2
import pytest

from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.tokens import (
    ExchangeError,
    KeysUnavailable,
    MalformedResponse,
    ProjectedFileTokenSource,
    RejectedExchangeError,
    Subject,
    SubjectTokens,
    TokenSourceError,
    TransientExchangeError,
)
from tests.fakes import NOW, REGISTRY, FakeClock
from tests.tokens.fakes import (
    ATTACKER_KEY,
    DISCOVERY_PATH,
    EXCHANGE_PATH,
    IDENTITY,
    ISSUER,
    KEY,
    KEYS_PATH,
    OWN,
    ROTATED_KEY,
    SA_TOKEN,
    FakeTokenService,
    Handler,
    SubjectTokenMap,
    claims,
    everything_printed,
    unsigned_jwt,
    want_of,
)

#: What a lying server hands out in the 200 cases, as a claim; must never be printed.
SECRET_WORD = "opaque-registry-credential"


class Setup:
    def __init__(self, exchange: Handler | None = None, *, seconds: float = 10.0) -> None:
        self.service = FakeTokenService(clock=FakeClock())
        self.service.exchange = exchange
        self.sa_tokens = SubjectTokenMap()
        self.sts = ChainguardSTS(
            sa_tokens=self.sa_tokens,
            issuer=ISSUER,
            audience=REGISTRY,
            clock=FakeClock(),
            timeout=seconds,
            transport=self.service.transport(),
        )

    async def error(self) -> ExchangeError:
        async with self.sts:
            with pytest.raises(ExchangeError) as caught:
                await self.sts.issue(want=want_of(IDENTITY), subject=OWN)
        return caught.value


async def exchange_error(handler: Handler, *, seconds: float = 10.0) -> ExchangeError:
    return await Setup(handler, seconds=seconds).error()


def answer(status: int, body: object = None, **kwargs: object) -> Handler:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, bytes):
            return httpx2.Response(status, content=body, **kwargs)  # type: ignore[arg-type]
        return httpx2.Response(status, json=body, **kwargs)  # type: ignore[arg-type]

    return handler


def token_answer(token: str) -> Handler:
    return answer(200, {"token": token, "refresh_token": f"refresh-{SECRET_WORD}"})


def raising(error: type[httpx2.TransportError], text: str) -> Handler:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        raise error(text, request=request)

    return handler


def error_body(code: object, message: str) -> dict[str, object]:
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
        answer(408, error_body("deadline_exceeded", "too slow")),
        TransientExchangeError, "timeout", 408, id="408",
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
        answer(503, error_body(14, "try later")),
        TransientExchangeError, "unavailable", 503, id="503-grpc-code",
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
        answer(403, error_body(7, "subject does not match")),
        RejectedExchangeError, "rejected", 403, id="403-grpc-code",
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
        answer(200, [SECRET_WORD]), MalformedResponse, "malformed", 200, id="200-not-object",
    ),
    pytest.param(
        answer(200, {"refresh_token": SECRET_WORD}),
        MalformedResponse, "malformed", 200, id="200-without-token",
    ),
    pytest.param(
        answer(200, {"token": 42}),
        MalformedResponse, "malformed", 200, id="200-token-not-a-string",
    ),
    pytest.param(
        token_answer(SECRET_WORD), MalformedResponse, "untrusted", 200, id="200-token-not-a-jwt",
    ),
    pytest.param(
        token_answer(KEY.sign(claims(exp=None, jti=SECRET_WORD))),
        MalformedResponse, "no_exp", 200, id="200-token-without-exp",
    ),
    pytest.param(
        token_answer(KEY.sign(claims(exp="tomorrow", jti=SECRET_WORD))),
        MalformedResponse, "untrusted", 200, id="200-token-exp-not-a-number",
    ),
    pytest.param(
        token_answer(ATTACKER_KEY.sign(claims(jti=SECRET_WORD))),
        MalformedResponse, "untrusted", 200, id="200-token-forged",
    ),
    pytest.param(
        token_answer(unsigned_jwt(claims(jti=SECRET_WORD), header={"alg": "none"})),
        MalformedResponse, "untrusted", 200, id="200-token-alg-none",
    ),
    pytest.param(
        token_answer(KEY.sign(claims(identity="org/someone-else", jti=SECRET_WORD))),
        MalformedResponse, "untrusted", 200, id="200-token-of-another-identity",
    ),
    pytest.param(
        token_answer(KEY.sign(claims(aud="registry.example", jti=SECRET_WORD))),
        MalformedResponse, "untrusted", 200, id="200-token-for-another-registry",
    ),
    pytest.param(
        token_answer(KEY.sign(claims(iss="https://evil.example", jti=SECRET_WORD))),
        MalformedResponse, "untrusted", 200, id="200-token-of-another-issuer",
    ),
    pytest.param(
        token_answer(KEY.sign(claims(iat=NOW - 3600, lifetime=3000, jti=SECRET_WORD))),
        MalformedResponse, "expired", 200, id="200-token-already-expired",
    ),
    pytest.param(
        token_answer(KEY.sign(claims(lifetime=20, jti=SECRET_WORD))),
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
    sent: list[bytes] = []

    async def recording(request: httpx2.Request) -> httpx2.Response:
        response = await handler(request)
        sent.append(response.content)
        return response

    printed = everything_printed(await exchange_error(recording))
    assert SA_TOKEN not in printed
    assert SECRET_WORD not in printed
    assert "eyJ" not in printed
    for body in sent:
        document = json.loads(body) if body.startswith(b"{") else {}
        for key in ("token", "refresh_token"):
            for part in str(document.get(key, "")).split("."):
                assert len(part) < 8 or part not in printed


async def test_message_carries_status_and_the_servers_explanation() -> None:
    error = await exchange_error(
        answer(403, error_body("permission_denied", "subject does not match"))
    )
    assert str(error) == "token service answered 403 permission_denied: subject does not match"


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        (7, "permission_denied (7): "),
        (16, "unauthenticated (16): "),
        (99, "code 99: "),
        (5000, ""),
        (-1, ""),
        (True, ""),
        (None, ""),
        ("evil\ncode", ""),
    ],
)
async def test_a_numeric_grpc_code_is_named_and_a_strange_one_dropped(
    code: object, shown: str
) -> None:
    error = await exchange_error(answer(403, error_body(code, "subject does not match")))
    assert str(error) == f"token service answered 403 {shown}subject does not match"


async def test_servers_explanation_is_cut_to_200_characters() -> None:
    error = await exchange_error(answer(400, error_body("invalid_argument", "x" * 5000)))
    detail = str(error).removeprefix("token service answered 400 ")
    assert len(detail) == 200
    assert detail.endswith("...")


async def test_jwts_echoed_by_the_server_are_scrubbed() -> None:
    echoed = f"bad token {SA_TOKEN}; also {KEY.sign(claims())} and Authorization: Bearer abc.def"
    error = await exchange_error(answer(401, error_body("unauthenticated", echoed)))
    printed = everything_printed(error)
    assert "eyJ" not in printed
    assert "abc.def" not in printed
    assert "[redacted]" in str(error)


async def test_the_service_account_token_echoed_verbatim_is_scrubbed() -> None:
    # Not JWT-shaped, so only the exact-match scrub can catch it.
    setup = Setup(answer(401, error_body("unauthenticated", "token plain-sa-token-value is bad")))
    setup.sa_tokens.tokens[OWN] = "plain-sa-token-value"
    error = await setup.error()
    assert "plain-sa-token-value" not in everything_printed(error)
    assert str(error) == "token service answered 401 unauthenticated: token [redacted] is bad"


async def test_an_unsafe_error_code_is_dropped_and_the_message_kept_on_one_line() -> None:
    error = await exchange_error(answer(403, {"code": "evil\ncode", "message": "line\nbreak"}))
    assert str(error) == "token service answered 403 line break"


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_are_kept(status: int) -> None:
    error = await exchange_error(answer(status, error_body("x", "y"), headers={"Retry-After": "7"}))
    assert error.retry_after == 7.0


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2037 07:28:00 GMT", "-5", "1.5", ""])
async def test_a_retry_after_that_is_not_whole_seconds_is_ignored(value: str) -> None:
    error = await exchange_error(answer(429, error_body("x", "y"), headers={"Retry-After": value}))
    assert isinstance(error, TransientExchangeError)
    assert error.retry_after is None


async def test_a_retry_after_of_digits_float_cannot_read_is_ignored() -> None:
    error = await exchange_error(
        answer(429, error_body("x", "y"), headers=[(b"Retry-After", b"\xb2")])
    )
    assert isinstance(error, TransientExchangeError)
    assert error.retry_after is None


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
    assert str(error) == (
        "the token service at https://issuer.test answered 200 with more than 262144 bytes"
    )


async def test_a_redirect_is_not_followed() -> None:
    error = await exchange_error(answer(302, b"", headers={"Location": "https://elsewhere/"}))
    assert isinstance(error, RejectedExchangeError)
    assert "issuer URL" in str(error)


async def test_a_token_for_another_identity_says_so() -> None:
    error = await exchange_error(token_answer(KEY.sign(claims(identity="org/other"))))
    assert str(error) == "token service answered 200 with a token for another identity"


async def test_an_untrusted_token_says_why_without_quoting_it() -> None:
    error = await exchange_error(token_answer(ATTACKER_KEY.sign(claims())))
    assert str(error) == (
        "token service answered 200 with a token that cannot be trusted: "
        "token's signature does not verify with the token service's keys"
    )


async def test_a_token_signed_with_a_key_the_service_does_not_publish_is_untrusted() -> None:
    error = await exchange_error(token_answer(ROTATED_KEY.sign(claims())))
    assert error.cause == "untrusted"
    assert "does not publish" in str(error)


# -- before anything is exchanged --------------------------------------------------------------


@pytest.mark.parametrize("path", [DISCOVERY_PATH, KEYS_PATH])
async def test_nothing_is_exchanged_while_the_keys_cannot_be_had(path: str) -> None:
    setup = Setup()
    setup.service.failing[path] = 503
    error = await setup.error()
    assert type(error) is KeysUnavailable
    assert (error.cause, error.retryable, error.status) == ("keys", True, None)
    assert setup.service.hits(EXCHANGE_PATH) == 0
    # The service-account token went nowhere.
    assert [r for r in setup.service.requests if "Authorization" in r.headers] == []
    assert SA_TOKEN not in everything_printed(error)


async def test_a_missing_service_account_token_fails_before_the_exchange() -> None:
    service = FakeTokenService(clock=FakeClock())
    client = ChainguardSTS(
        sa_tokens=SubjectTokens(
            own=OWN, own_source=ProjectedFileTokenSource(path=Path("/nonexistent/token"))
        ),
        issuer=ISSUER,
        transport=service.transport(),
    )
    async with client:
        with pytest.raises(TokenSourceError) as caught:
            await client.issue(want=want_of(IDENTITY), subject=OWN)
    assert caught.value.cause == "sa_token"
    assert service.hits(EXCHANGE_PATH) == 0


async def test_another_subject_without_a_token_request_client_is_refused_before_the_exchange() -> (
    None
):
    service = FakeTokenService(clock=FakeClock())
    client = ChainguardSTS(
        sa_tokens=SubjectTokens(own=OWN, own_source=ProjectedFileTokenSource()),
        issuer=ISSUER,
        transport=service.transport(),
    )
    other = Subject(namespace="team-a", service_account="pull-secret-updater")
    async with client:
        with pytest.raises(TokenSourceError) as caught:
            await client.issue(want=want_of(IDENTITY), subject=other)
    assert (caught.value.cause, caught.value.retryable) == ("sa_token", False)
    assert str(other) in str(caught.value)
    assert service.hits(EXCHANGE_PATH) == 0
