"""The Google provider's settings section: `{"kind": "gar", ...}` in `providers`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pull_secret_updater.providers.base import BuildContext, ProviderSection
from pull_secret_updater.providers.gar import (
    DEFAULT_AUDIENCE,
    DEFAULT_IAMCREDENTIALS_ENDPOINT,
    DEFAULT_STS_ENDPOINT,
    DEFAULT_TOKEN_PATH,
    MIN_SA_TOKEN_LIFETIME,
)
from pull_secret_updater.providers.gar.exchange import GarExchange
from pull_secret_updater.providers.gar.spec import IAM_PREFIXES, GarSpec, provider_resource
from pull_secret_updater.providers.hosts import check_https_url


class GarSection(ProviderSection):
    """Google Artifact Registry / Container Registry through workload identity federation
    (STS token exchange, optionally IAM Credentials generateAccessToken)."""

    kind: Literal["gar"] = "gar"
    sa_audience: str = Field(
        default=DEFAULT_AUDIENCE,
        description="Audience of the Kubernetes tokens exchanged: one of the pool provider's "
        "allowed audiences, or its full name https://iam.googleapis.com/projects/<number>/"
        "locations/global/workloadIdentityPools/<pool>/providers/<id> (Google's default), "
        "which then binds Secrets to that provider. Default: " + DEFAULT_AUDIENCE,
    )
    token_path: Path = Field(
        default=Path(DEFAULT_TOKEN_PATH),
        description="The controller's projected token with that audience (token_source file); "
        "project it for at least an hour: a federated token lives no longer. Default: "
        + DEFAULT_TOKEN_PATH,
    )
    sts_endpoint: str = Field(
        default=DEFAULT_STS_ENDPOINT,
        description="Google STS endpoint (https). Default: " + DEFAULT_STS_ENDPOINT,
    )
    iamcredentials_endpoint: str = Field(
        default=DEFAULT_IAMCREDENTIALS_ENDPOINT,
        description="IAM Credentials endpoint (https), for service-account impersonation. "
        "Default: " + DEFAULT_IAMCREDENTIALS_ENDPOINT,
    )
    ca_bundle: Path | None = Field(
        default=None,
        description="PEM CA bundle trusted alone for STS and IAM Credentials. Default: system.",
    )

    @field_validator("sts_endpoint", "iamcredentials_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_https_url(value, example="https://sts.googleapis.com")

    @field_validator("sa_audience")
    @classmethod
    def _audience(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a non-empty audience without spaces")
        if value.startswith(IAM_PREFIXES) and provider_resource(value) is None:
            raise ValueError(
                "names no workload identity pool provider; expected https://iam.googleapis.com/"
                "projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id>"
            )
        return value

    def spec(self) -> GarSpec:
        return GarSpec(audience=self.sa_audience)

    def build(self, context: BuildContext) -> GarExchange:
        return GarExchange(
            sa_tokens=context.subject_tokens(
                audience=self.sa_audience,
                token_path=self.token_path,
                # NB: a federated token lives no longer than the Kubernetes token it came from.
                expiration_seconds=MIN_SA_TOKEN_LIFETIME,
            ),
            audience=self.sa_audience,
            sts_endpoint=self.sts_endpoint,
            iamcredentials_endpoint=self.iamcredentials_endpoint,
            ca_bundle=self.ca_bundle,
            timeout=context.timeout,
            min_lifetime=context.min_lifetime,
            clock=context.clock,
            transport=context.transport,
        )
