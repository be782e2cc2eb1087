"""The Chainguard provider's settings section.

The controller's flat settings (`issuer`, `registry`, `sa_audience`, `token_path`,
`ca_bundle`) are this section's fields for the default entry, as they were before there were
several providers; a `{"kind": "chainguard", ...}` entry in `providers` replaces them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pull_secret_updater.providers.base import BuildContext, ProviderSection
from pull_secret_updater.providers.chainguard import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_REGISTRY,
    DEFAULT_TOKEN_PATH,
)
from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.providers.chainguard.spec import ChainguardSpec
from pull_secret_updater.providers.hosts import check_https_url, check_registry_host


class ChainguardSection(ProviderSection):
    """Chainguard's registry through the Chainguard STS."""

    kind: Literal["chainguard"] = "chainguard"
    issuer: str = Field(
        default=DEFAULT_ISSUER,
        description="Base URL of the Chainguard STS (https). Default: " + DEFAULT_ISSUER,
    )
    registry: str = Field(
        default=DEFAULT_REGISTRY,
        description="Registry host the tokens are for. Default: " + DEFAULT_REGISTRY,
    )
    sa_audience: str = Field(
        default=DEFAULT_AUDIENCE,
        description="Audience of the Kubernetes tokens exchanged. Default: " + DEFAULT_AUDIENCE,
    )
    token_path: Path = Field(
        default=Path(DEFAULT_TOKEN_PATH),
        description="The controller's projected token with that audience (token_source file).",
    )
    ca_bundle: Path | None = Field(
        default=None, description="PEM CA bundle trusted alone for the STS. Default: system."
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return check_https_url(value, example=DEFAULT_ISSUER)

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        return check_registry_host(value)

    def spec(self) -> ChainguardSpec:
        return ChainguardSpec(registry=self.registry)

    def build(self, context: BuildContext) -> ChainguardSTS:
        return ChainguardSTS(
            sa_tokens=context.subject_tokens(audience=self.sa_audience, token_path=self.token_path),
            issuer=self.issuer,
            audience=self.registry,
            ca_bundle=self.ca_bundle,
            timeout=context.timeout,
            min_lifetime=context.min_lifetime,
            clock=context.clock,
            transport=context.transport,
        )
