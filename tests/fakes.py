"""The fakes every kind of test shares: a clock, a Kubernetes Status reply, a token provider.

One copy each: a fake that drifts from another copy of itself would let two suites assert
different things about the same behaviour.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2

from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.chainguard.spec import ChainguardSpec
from pull_secret_updater.tokens.provider import Subject

NOW = 1_800_000_000.0
REGISTRY = "cgr.dev"

_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    500: "InternalError",
}


@dataclass
class FakeClock:
    """Epoch seconds that move only when a test moves them."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def status_reply(code: int, message: str, *, reason: str | None = None) -> httpx2.Response:
    """The API server's answer to a failed request: a `Status` object."""
    return httpx2.Response(
        code,
        json={"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
              "reason": reason or _REASONS.get(code, "Unknown"), "message": message},
    )  # fmt: skip


class FakeTokenProvider:
    """Chainguard's provider, faked: mints tokens signed (in name) with `key_id`, and trusts
    the tokens it minted while their key is in `known_keys`; anything else fails to verify.

    `issues` lists every `issue` call, successful or not. Set `issue_error` or `verify_error`
    to make the calls fail with that exception; `gate` (an unset Event) holds every `issue`
    until it is set (an exchange in flight); `skew`: how far the token service's clock runs
    behind ours (its tokens arrive that much older than they should).
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        lifetime: float = 3600.0,
        gate: asyncio.Event | None = None,
        issue_error: BaseException | None = None,
    ) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.key_id = "key-1"
        self.known_keys = {"key-1"}
        self.skew = 0.0
        self.issues: list[tuple[str, Subject]] = []
        self.verifications = 0
        self.issue_error = issue_error
        self.verify_error: BaseException | None = None
        self.gate = gate
        self.spec = ChainguardSpec(registry=REGISTRY)
        self._minted: dict[str, Credential] = {}
        self._serial = itertools.count(1)

    @property
    def calls(self) -> Counter[str]:
        """How often `issue` was called per identity."""
        return Counter(identity for identity, _ in self.issues)

    @property
    def subjects(self) -> list[Subject]:
        """Whose token each `issue` was for, in order."""
        return [subject for _, subject in self.issues]

    def mint(
        self, identity: str, *, issued_at: float | None = None, lifetime: float | None = None
    ) -> Credential:
        """A token this provider issued at some earlier time (before a restart, say)."""
        issued_at = self.clock.now if issued_at is None else issued_at
        token = verified(
            identity=identity,
            iat=issued_at,
            lifetime=self.lifetime if lifetime is None else lifetime,
            key_id=self.key_id,
            tag=str(next(self._serial)),
        )
        self._minted[token.token] = token
        return token

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        self.issues.append((want.identity, subject))
        if self.gate is not None:
            await self.gate.wait()
        if self.issue_error is not None:
            raise self.issue_error
        return self.mint(want.identity, issued_at=self.clock.now - self.skew)

    async def verify(self, token: str) -> Credential:
        self.verifications += 1
        if self.verify_error is not None:
            raise self.verify_error
        found = self._minted.get(token)
        if found is None or not self.still_trusted(found):
            raise InvalidToken("token's signature does not verify with the token service's keys")
        return found

    def still_trusted(self, token: Credential) -> bool:
        return token.key_id in self.known_keys

    def on_withdrawn(self, listener: Callable[[], None]) -> None:
        """Keys are withdrawn by editing `known_keys`; nobody is told."""

    async def refresh_if_stale(self) -> None:
        """No keys to refetch."""

    async def aclose(self) -> None:
        """Nothing to close."""


def verified(
    *,
    identity: str,
    iat: float = NOW,
    lifetime: float = 3600,
    key_id: str | None = "key-1",
    tag: str = "t",
) -> Credential:
    """A Chainguard credential as a verification would state it."""
    return Credential(
        provider="chainguard",
        token=f"token-{identity}-{tag}-{iat}",
        identity=identity,
        registries=(REGISTRY,),
        username="_token",
        issued_at=iat,
        expires_at=iat + lifetime,
        key_id=key_id,
    )
