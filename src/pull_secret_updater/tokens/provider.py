"""The one interface between the controller and whatever mints registry tokens.

Chainguard's STS is the first provider; ECR, Artifact Registry or a self-hosted registry's
token service would each be one more module implementing `TokenProvider`. The rest of the
controller (the cache, the reconciler) sees only `IssuedToken`, whose times come from the
token's own claims, so refresh timing is the same whoever issued it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A registry token and the times it states about itself (epoch seconds).

    `issued_at` is the token's `iat`, or the time we received it when it has none.
    """

    token: str = field(repr=False)
    expires_at: float
    issued_at: float
    registry: str

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at


class TokenProvider(Protocol):
    """Mints a registry token for one identity; raises `errors.ExchangeError` on failure."""

    async def issue(self, *, identity: str) -> IssuedToken: ...
