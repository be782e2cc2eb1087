"""The fake provider's exchange: the subject's Kubernetes token in, a random credential out."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.fake import DEFAULT_LIFETIME
from pull_secret_updater.providers.fake.spec import FakeSpec
from pull_secret_updater.tokens.provider import Subject, SubjectTokenSource, Unverifiable


class FakeProvider(Unverifiable):
    """Mints `lifetime`-second credentials; counts `issued` per identity."""

    unverifiable = "fake credentials"

    def __init__(
        self,
        *,
        spec: FakeSpec | None = None,
        sa_tokens: SubjectTokenSource | None = None,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lifetime > 0:
            raise ValueError("lifetime must be a number of seconds > 0")
        self.spec = spec or FakeSpec()
        self.lifetime = lifetime
        self._sa_tokens = sa_tokens
        self._clock = clock
        self.issued: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(registry={self.spec.registry!r})"

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        if self._sa_tokens is not None:
            await self._sa_tokens.get(subject)  # raises TokenSourceError as a real exchange would
        now = self._clock()
        self.issued[want.identity] = self.issued.get(want.identity, 0) + 1
        return Credential(
            provider=self.spec.name,
            identity=want.identity,
            registries=want.registries,
            username=self.spec.username,
            token="fake." + secrets.token_urlsafe(32),
            issued_at=now,
            expires_at=now + self.lifetime,
        )

    async def aclose(self) -> None:
        """Nothing to close."""
