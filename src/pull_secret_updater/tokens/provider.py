"""The one interface between the controller and whatever mints registry tokens.

Chainguard's STS is the first provider; ECR, Artifact Registry or a self-hosted registry's
token service would each be one more module implementing `TokenProvider`. The rest of the
controller (the cache, the reconciler) sees only `core.claims.VerifiedToken`, whose times
come from the token's own verified claims, so refresh timing is the same whoever issued it.

A token is always obtained *for an identity* (what the registry grants) *as a subject* (the
Kubernetes ServiceAccount whose token is exchanged, which the identity must trust). The
subject is the controller's own ServiceAccount, or, with namespace-scoped identities, a
ServiceAccount in the Secret's own namespace, so that an identity trusting one namespace can
never be obtained for another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pull_secret_updater.core.claims import VerifiedToken


@dataclass(frozen=True, slots=True, order=True)
class Subject:
    """A ServiceAccount whose token is exchanged."""

    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class SubjectTokenSource(Protocol):
    """Gives the current service-account token of a subject; raises TokenSourceError."""

    async def get(self, subject: Subject) -> str: ...


class TokenProvider(Protocol):
    """Mints and verifies registry tokens; raises `errors.ExchangeError` on failure."""

    async def issue(self, *, identity: str, subject: Subject) -> VerifiedToken:
        """A new token of `identity`, exchanged as `subject`, already verified."""
        ...

    async def verify(self, token: str) -> VerifiedToken:
        """`token` if it verifies; raises `core.claims.InvalidToken` or `KeysUnavailable`."""
        ...

    def still_trusted(self, token: VerifiedToken) -> bool:
        """Whether a token verified earlier would still verify with the keys held now."""
        ...
