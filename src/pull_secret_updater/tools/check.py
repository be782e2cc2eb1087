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
from pull_secret_updater.settings import Settings
from pull_secret_updater.tokens.errors import ExchangeError
from pull_secret_updater.tokens.provider import Subject
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

    @property
    def ok(self) -> bool:
        return self.error is None


class _Recording:
    """Service-account tokens that remember the claims of the last token given out."""

    def __init__(self, inner: SubjectTokenSource) -> None:
        self._inner = inner
        self.facts: TokenFacts | None = None

    async def get(self, subject: Subject) -> str:
        token = await self._inner.get(subject)
        try:
            self.facts = TokenFacts.of(read_claims(token))
        except InvalidToken:
            self.facts = None
        return token


async def run_check(
    settings: Settings,
    *,
    identity: str,
    open_client: Callable[[], lightkube.AsyncClient],
    namespace: str | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> CheckOutcome:
    """Exchange once for `identity`, as the controller would for a Secret in `namespace`
    (default: the controller's own); `open_client` is called only for TokenRequest tokens.

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

    recording = _Recording(wiring.subject_tokens(settings, client=client))
    subject = wiring.subject_for(settings)(namespace or settings.namespace)
    try:
        try:
            sts = wiring.token_service(settings, sa_tokens=recording, transport=transport)
        except ValueError as e:
            raise ToolError(str(e), exit_code=USAGE) from None
        async with sts:
            try:
                issued = await sts.issue(want=sts.spec.want_for(identity), subject=subject)
            except ExchangeError as e:
                return CheckOutcome(
                    identity=identity, registry=settings.registry, sent=recording.facts, error=e
                )
        try:
            facts = TokenFacts.of(read_claims(issued.token))
        except InvalidToken:  # pragma: no cover - the exchange has just read these claims
            facts = TokenFacts(issuer=None, subject=None, audience=(), expires_at=issued.expires_at)
        return CheckOutcome(
            identity=identity, registry=settings.registry, sent=recording.facts, issued=facts
        )
    finally:
        for each in opened:
            await each.close()


def describe_outcome(outcome: CheckOutcome, *, now: float | None = None) -> list[str]:
    """The lines to print for an outcome (the failure itself is the caller's one error line)."""
    now = time.time() if now is None else now
    lines: list[str] = []
    if outcome.issued is not None:
        expires_at = outcome.issued.expires_at
        lines.append(
            f"ok: token for {outcome.registry} expires at {keys.format_time(expires_at)} "
            f"({format_expiry(expires_at, now=now)})"
        )
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
