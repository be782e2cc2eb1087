"""A provider's settings section: its endpoints and how its two halves are built.

Each provider's section is a pydantic model with a `kind` naming the provider; the controller's
settings hold a list of them (a discriminated union on `kind`, assembled from `table`). A
section builds the provider's pure half (`spec`) and its exchange (`build`) from what the
controller hands every provider alike (`BuildContext`): Kubernetes tokens with the audience
the provider asks for, timeouts, a clock, a transport for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx2
from pydantic import BaseModel, ConfigDict

from pull_secret_updater.core.providers import ProviderSpec
from pull_secret_updater.tokens.provider import SubjectTokenSource, TokenProvider


class SubjectTokensFactory(Protocol):
    """Kubernetes tokens per subject with `audience`; the controller's own from `token_path`
    when it reads a projected file, else from TokenRequest, asked to live
    `expiration_seconds` (None: the API server's minimum, 10 minutes)."""

    def __call__(
        self, *, audience: str, token_path: Path | None, expiration_seconds: int | None = None
    ) -> SubjectTokenSource: ...


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What the controller hands every provider when building its exchange."""

    subject_tokens: SubjectTokensFactory
    timeout: float
    min_lifetime: float
    clock: Callable[[], float] = time.time
    transport: httpx2.AsyncBaseTransport | None = field(default=None, repr=False)


class ProviderSection(BaseModel):
    """One provider's settings. Subclasses add a `kind: Literal[...]` and their fields, each
    with a description (the settings reference is rendered from them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def spec(self) -> ProviderSpec:
        raise NotImplementedError

    def build(self, context: BuildContext) -> TokenProvider:
        raise NotImplementedError

    def summary(self) -> dict[str, object]:
        """What the start-up log line says of this provider (endpoints, never secrets)."""
        return self.model_dump(mode="json")
