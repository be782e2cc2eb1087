"""The ACR provider's settings section: `{"kind": "acr", ...}` in `providers`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pull_secret_updater.providers.acr import (
    DEFAULT_AUDIENCE,
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_TOKEN_PATH,
)
from pull_secret_updater.providers.acr.exchange import AcrExchange
from pull_secret_updater.providers.acr.spec import AcrSpec
from pull_secret_updater.providers.base import BuildContext, ProviderSection
from pull_secret_updater.providers.hosts import check_https_url


class AcrSection(ProviderSection):
    """Azure Container Registry through Entra ID workload identity federation and the
    registry's /oauth2/exchange."""

    kind: Literal["acr"] = "acr"
    sa_audience: str = Field(
        default=DEFAULT_AUDIENCE,
        description="Audience of the Kubernetes tokens exchanged: the audience of the "
        "federated identity credentials. Default: " + DEFAULT_AUDIENCE,
    )
    token_path: Path = Field(
        default=Path(DEFAULT_TOKEN_PATH),
        description="The controller's projected token with that audience (token_source file). "
        "Default: " + DEFAULT_TOKEN_PATH,
    )
    authority_host: str = Field(
        default=DEFAULT_AUTHORITY_HOST,
        description="Microsoft Entra ID's host (https); sovereign clouds have their own, e.g. "
        "https://login.microsoftonline.us. Default: " + DEFAULT_AUTHORITY_HOST,
    )
    acr_endpoint: str | None = Field(
        default=None,
        description="Base URL (https) of every registry's /oauth2/exchange, e.g. a proxy. "
        "Default: the registry's own, https://<registry>.",
    )
    ca_bundle: Path | None = Field(
        default=None,
        description="PEM CA bundle trusted alone for Entra ID and the registries. Default: system.",
    )

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, value: str) -> str:
        return check_https_url(value, example=DEFAULT_AUTHORITY_HOST)

    @field_validator("acr_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_https_url(value, example="https://myregistry.azurecr.io")

    def spec(self) -> AcrSpec:
        return AcrSpec()

    def build(self, context: BuildContext) -> AcrExchange:
        return AcrExchange(
            sa_tokens=context.subject_tokens(audience=self.sa_audience, token_path=self.token_path),
            authority_host=self.authority_host,
            acr_endpoint=self.acr_endpoint,
            ca_bundle=self.ca_bundle,
            timeout=context.timeout,
            min_lifetime=context.min_lifetime,
            clock=context.clock,
            transport=context.transport,
        )
