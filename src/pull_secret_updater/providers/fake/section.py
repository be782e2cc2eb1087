"""The fake provider's settings section."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pull_secret_updater.providers.base import BuildContext, ProviderSection
from pull_secret_updater.providers.fake import (
    DEFAULT_AUDIENCE,
    DEFAULT_LIFETIME,
    DEFAULT_REGISTRY,
)
from pull_secret_updater.providers.fake.exchange import FakeProvider
from pull_secret_updater.providers.fake.spec import FakeSpec
from pull_secret_updater.providers.hosts import check_registry_host


class FakeSection(ProviderSection):
    """Random opaque credentials minted in-process, for testing; no registry accepts them."""

    kind: Literal["fake"] = "fake"
    registry: str = Field(default=DEFAULT_REGISTRY, description="Registry host of the entry.")
    lifetime: float = Field(default=DEFAULT_LIFETIME, description="Seconds a credential lives.")
    sa_audience: str = Field(
        default=DEFAULT_AUDIENCE, description="Audience of the Kubernetes tokens requested."
    )
    token_path: Path | None = Field(
        default=None, description="The controller's projected token (token_source file)."
    )

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        return check_registry_host(value)

    @field_validator("lifetime")
    @classmethod
    def _lifetime(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must be a number of seconds greater than 0")
        return value

    def spec(self) -> FakeSpec:
        return FakeSpec(registry=self.registry)

    def build(self, context: BuildContext) -> FakeProvider:
        return FakeProvider(
            spec=self.spec(),
            sa_tokens=context.subject_tokens(audience=self.sa_audience, token_path=self.token_path),
            lifetime=self.lifetime,
            clock=context.clock,
        )
