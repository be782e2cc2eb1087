"""One exchange as the controller would do it: the outcome names the tokens, never shows them."""

from __future__ import annotations

from pathlib import Path

import httpx2
import jwt
import lightkube
import pytest

from pull_secret_updater.settings import Settings
from pull_secret_updater.tools.check import CheckOutcome, TokenFacts, describe_outcome, run_check
from pull_secret_updater.tools.errors import ToolError

NOW = 1_800_000_000.0
ISSUER = "https://kubernetes.default.svc.cluster.local"
SUBJECT = "system:serviceaccount:pull-secret-updater:controller"
IDENTITY = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"


def sign(claims: dict[str, object]) -> str:
    return jwt.encode(claims, "a-signing-key-used-only-in-these-tests", algorithm="HS256")


@pytest.fixture
def sa_token(tmp_path: Path) -> tuple[Path, str]:
    token = sign({"iss": ISSUER, "sub": SUBJECT, "aud": ["issuer.enforce.dev"], "exp": 4e9})
    path = tmp_path / "oidc-token"
    path.write_text(token)
    return path, token


def settings(token_path: Path, **extra: object) -> Settings:
    return Settings(token_path=token_path, registry="registry.example", **extra)  # type: ignore[arg-type]


def no_client() -> lightkube.AsyncClient:
    raise AssertionError("a token file needs no Kubernetes client")


def answer(status: int, body: dict[str, object]) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        assert request.url.params["identity"] == IDENTITY
        assert request.url.params["aud"] == "registry.example"
        return httpx2.Response(status, json=body)

    return httpx2.MockTransport(handle)


async def test_a_successful_exchange_reports_both_tokens_claims(
    sa_token: tuple[Path, str],
) -> None:
    path, sent = sa_token
    issued = sign({"iss": "https://issuer.enforce.dev", "sub": IDENTITY, "exp": 4e9, "iat": 1})
    outcome = await run_check(
        settings(path), identity=IDENTITY, open_client=no_client,
        transport=answer(200, {"token": issued}),
    )  # fmt: skip
    assert outcome.ok
    assert outcome.issued is not None
    assert outcome.issued.subject == IDENTITY
    assert outcome.sent is not None
    assert (outcome.sent.issuer, outcome.sent.subject) == (ISSUER, SUBJECT)
    lines = describe_outcome(outcome, now=4e9 - 3599.5)
    assert lines[0] == "ok: token for registry.example expires at 2096-10-02T07:06:40Z (in 59m)"
    assert "issuer https://issuer.enforce.dev, subject " + IDENTITY in lines[1]
    assert f"issuer {ISSUER}, subject {SUBJECT}, audience issuer.enforce.dev" in lines[2]
    printed = "\n".join(lines) + repr(outcome)
    assert issued not in printed
    assert sent not in printed


async def test_a_refused_exchange_is_an_outcome_with_the_servers_reason(
    sa_token: tuple[Path, str],
) -> None:
    path, sent = sa_token
    outcome = await run_check(
        settings(path), identity=IDENTITY, open_client=no_client,
        transport=answer(404, {"code": "not_found", "message": "no such identity"}),
    )  # fmt: skip
    assert not outcome.ok
    assert outcome.error is not None
    assert "404 not_found: no such identity" in str(outcome.error)
    lines = describe_outcome(outcome, now=NOW)
    assert len(lines) == 1
    assert lines[0].startswith("  exchanged service-account token: issuer " + ISSUER)
    assert sent not in "\n".join(lines)


async def test_a_missing_token_file_is_reported_as_such(tmp_path: Path) -> None:
    outcome = await run_check(
        settings(tmp_path / "absent"), identity=IDENTITY, open_client=no_client,
        transport=answer(500, {}),
    )  # fmt: skip
    assert outcome.error is not None
    assert outcome.error.cause == "sa_token"
    assert "does not exist" in str(outcome.error)
    assert outcome.sent is None


async def test_an_unusable_ca_bundle_is_a_configuration_error(
    sa_token: tuple[Path, str], tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(ToolError) as caught:
        await run_check(settings(sa_token[0], ca_bundle=bundle), identity=IDENTITY,
                        open_client=no_client)  # fmt: skip
    assert caught.value.exit_code == 2
    assert "CA bundle" in caught.value.message


def test_an_expired_service_account_token_is_described_as_expired() -> None:
    outcome = CheckOutcome(
        identity=IDENTITY,
        registry="cgr.dev",
        sent=TokenFacts(issuer=ISSUER, subject=SUBJECT, audience=(), expires_at=NOW - 120),
    )
    (line,) = describe_outcome(outcome, now=NOW)
    assert line.endswith("audience (none), expired 2m ago")
