"""The one interface between the controller and whatever mints registry credentials.

Each registry provider (`pull_secret_updater.providers`) implements `TokenProvider`. The rest
of the controller (the cache, the reconciler) sees only `core.credential.Credential`, whose
times come from a verified token or from the exchange's own answer, so refresh timing is the
same whoever issued it.

A token is always obtained *for an identity* (what the registry grants) *as a subject* (the
Kubernetes ServiceAccount whose token is exchanged, which the identity must trust). The
subject is the controller's own ServiceAccount, or, with namespace-scoped identities, a
ServiceAccount in the Secret's own namespace, so that an identity trusting one namespace can
never be obtained for another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import ProviderSpec, Want


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
    """The I/O half of a registry provider: mints credentials and, where it can, verifies
    them; raises `errors.ExchangeError` on failure (see `pull_secret_updater.providers`)."""

    @property
    def spec(self) -> ProviderSpec:
        """The pure half: annotations, user name, whether it verifies."""
        ...

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        """A new credential for `want`, exchanged as `subject`, already checked."""
        ...

    async def verify(self, token: str) -> Credential:
        """`token` if it verifies; raises `core.claims.InvalidToken` (also for a provider that
        cannot verify offline) or `KeysUnavailable`."""
        ...

    def still_trusted(self, token: Credential) -> bool:
        """Whether a credential trusted earlier is still: its key is still published, say."""
        ...

    def on_withdrawn(self, listener: Callable[[], None]) -> None:
        """Call `listener` when credentials trusted earlier stop being trusted (a signing key
        withdrawn), so that their Secrets are looked at again at once."""
        ...

    async def refresh_if_stale(self) -> None:
        """Periodic upkeep (refetching published keys); never raises."""
        ...

    async def aclose(self) -> None: ...


class Unverifiable:
    """The half of `TokenProvider` every provider whose credentials cannot be verified offline
    (an ECR password, a Google access token, an ACR refresh token) shares: nothing verifies,
    nothing obtained is ever withdrawn (there are no keys to rotate), nothing to refresh. A
    credential found in a Secret is then trusted only while byte-identical to one this process
    obtained (`tokens.trust`). `unverifiable` names the credentials in the refusal."""

    unverifiable: ClassVar[str]

    async def verify(self, token: str) -> Credential:
        raise InvalidToken(f"{self.unverifiable} cannot be verified offline")

    def still_trusted(self, token: Credential) -> bool:
        return True

    def on_withdrawn(self, listener: Callable[[], None]) -> None:
        """Nothing obtained is ever withdrawn."""

    async def refresh_if_stale(self) -> None:
        """Nothing to refresh."""
