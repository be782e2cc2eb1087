"""One token exchange, done exactly as the controller would do it, to see whether it works.

The same settings as `run` (flags and `PSU_*` variables) pick the service-account token and the
token service, so a check that passes means the controller's configuration works for that
identity. What is reported is what a person needs to fix a refusal: the claims of the
service-account token that was sent (issuer, subject, audience: what the identity must trust)
and of the registry token that came back. Never a token itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
import lightkube

from pull_secret_updater import wiring
from pull_secret_updater.core import annotations as keys
from pull_secret_updater.core.claims import InvalidToken, TokenClaims, read_claims
from pull_secret_updater.core.providers import Want
from pull_secret_updater.settings import Settings
from pull_secret_updater.tokens.errors import ExchangeError
from pull_secret_updater.tokens.provider import Subject, TokenProvider
from pull_secret_updater.tokens.satoken import SubjectTokenSource
from pull_secret_updater.tools.durations import format_expiry
from pull_secret_updater.tools.errors import USAGE, ToolError

__all__ = ["CheckOutcome", "TokenFacts", "describe_outcome", "run_check"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenFacts:
    """What a token says about itself; deliberately holds nothing of the token."""

    issuer: str | None
    subject: str | None
    audience: tuple[str, ...]
    expires_at: float

    @classmethod
    def of(cls, claims: TokenClaims) -> TokenFacts:
        return cls(
            issuer=claims.iss, subject=claims.sub, audience=claims.aud, expires_at=claims.exp
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOutcome:
    """The result of one exchange: `issued` on success, `error` on failure.

    `sent` describes the service-account token, when one was obtained and could be read.
    """

    identity: str
    registry: str
    sent: TokenFacts | None
    issued: TokenFacts | None = None
    error: ExchangeError | None = None
    #: When what was issued expires: a token's (then `issued` says more) or an opaque
    #: password's, such as ECR's, whose expiry is the exchange's answer.
    expires_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Recording:
    """Service-account tokens that remember the claims of the last token given out."""

    def __init__(self, inner: SubjectTokenSource | None) -> None:
        self.inner = inner
        self.facts: TokenFacts | None = None

    def wrapping(self, inner: SubjectTokenSource) -> SubjectTokenSource:
        """This recorder in front of `inner` (a provider's own token source)."""
        self.inner = inner
        return self

    async def get(self, subject: Subject) -> str:
        assert self.inner is not None, "no token source to record"
        token = await self.inner.get(subject)
        try:
            self.facts = TokenFacts.of(read_claims(token))
        except InvalidToken:
            self.facts = None
        return token


async def run_check(
    settings: Settings,
    *,
    identity: str | None = None,
    want: Want | None = None,
    open_client: Callable[[], lightkube.AsyncClient],
    namespace: str | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> CheckOutcome:
    """Exchange once for `identity` (the default provider's) or for `want` (any configured
    provider's), as the controller would for a Secret in `namespace` (default: the
    controller's own); `open_client` is called only for TokenRequest tokens.

    `transport` replaces the network to the token service, for tests.

    Raises ToolError for a configuration that cannot work (a bad CA bundle, say); a failed
    exchange is an outcome, not an exception.
    """
    opened: list[lightkube.AsyncClient] = []

    def client() -> lightkube.AsyncClient:
        # One client, opened on first use (only TokenRequest needs one) and closed at the end.
        if not opened:
            opened.append(open_client())
        return opened[0]

    recording = _Recording(None)
    subject = wiring.subject_for(settings)(namespace or settings.namespace)
    try:
        try:
            if want is None:
                if identity is None:
                    raise ValueError("an identity or a want is needed")
                recording.inner = wiring.subject_tokens(settings, client=client)
                sts = wiring.token_service(settings, sa_tokens=recording, transport=transport)
                want = sts.spec.want_for(identity)
                provider: TokenProvider = sts
            else:
                provider = wiring.provider_named(
                    settings,
                    want.provider,
                    client=client,
                    wrap=recording.wrapping,
                    transport=transport,
                )
        except ValueError as e:
            raise ToolError(str(e), exit_code=USAGE) from None
        identity, registry = want.identity, ", ".join(want.registries)
        try:
            try:
                issued = await provider.issue(want=want, subject=subject)
            except ExchangeError as e:
                return CheckOutcome(
                    identity=identity, registry=registry, sent=recording.facts, error=e
                )
        finally:
            await provider.aclose()
        facts: TokenFacts | None = None
        if provider.spec.verifiable:
            try:
                facts = TokenFacts.of(read_claims(issued.token))
            except InvalidToken:  # pragma: no cover - the exchange has just read these claims
                facts = None
        return CheckOutcome(
            identity=identity,
            registry=registry,
            sent=recording.facts,
            issued=facts,
            expires_at=issued.expires_at,
        )
    finally:
        for each in opened:
            await each.close()


def describe_outcome(outcome: CheckOutcome, *, now: float | None = None) -> list[str]:
    """The lines to print for an outcome (the failure itself is the caller's one error line)."""
    now = time.time() if now is None else now
    lines: list[str] = []
    expires_at = outcome.issued.expires_at if outcome.issued is not None else outcome.expires_at
    if expires_at is not None:
        what = "token" if outcome.issued is not None else "password"
        lines.append(
            f"ok: {what} for {outcome.registry} expires at {keys.format_time(expires_at)} "
            f"({format_expiry(expires_at, now=now)})"
        )
    if outcome.issued is not None:
        lines.append(f"  registry token: {_facts(outcome.issued)}")
    if outcome.sent is not None:
        sent = outcome.sent
        expiry = format_expiry(sent.expires_at, now=now)
        if sent.expires_at > now:
            expiry = f"expires {expiry}"
        lines.append(
            f"  exchanged service-account token: {_facts(sent)}, "
            f"audience {', '.join(sent.audience) or '(none)'}, {expiry}"
        )
    return lines


def _facts(facts: TokenFacts) -> str:
    return f"issuer {facts.issuer or '(none)'}, subject {facts.subject or '(none)'}"
