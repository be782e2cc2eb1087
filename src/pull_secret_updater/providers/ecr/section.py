"""The ECR provider's settings section: `{"kind": "ecr", ...}` in `providers`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from pull_secret_updater.providers.base import BuildContext, ProviderSection
from pull_secret_updater.providers.ecr import (
    DEFAULT_AUDIENCE,
    DEFAULT_SESSION_DURATION,
    DEFAULT_TOKEN_PATH,
)
from pull_secret_updater.providers.ecr.exchange import EcrExchange
from pull_secret_updater.providers.ecr.spec import EcrSpec
from pull_secret_updater.providers.hosts import check_https_url

#: An endpoint's path is signed as sent: only characters SigV4 leaves as they are.
_PATH = re.compile(r"(/[A-Za-z0-9._~-]*)*")


class EcrSection(ProviderSection):
    """Amazon ECR through STS AssumeRoleWithWebIdentity and ECR GetAuthorizationToken."""

    kind: Literal["ecr"] = "ecr"
    sa_audience: str = Field(
        default=DEFAULT_AUDIENCE,
        description="Audience of the Kubernetes tokens exchanged: a client ID of the cluster's "
        "IAM OIDC provider. Default: " + DEFAULT_AUDIENCE,
    )
    token_path: Path = Field(
        default=Path(DEFAULT_TOKEN_PATH),
        description="The controller's projected token with that audience (token_source file). "
        "Default: " + DEFAULT_TOKEN_PATH,
    )
    sts_endpoint: str | None = Field(
        default=None,
        description="STS endpoint for every region (https), e.g. a VPC endpoint. "
        "Default: the region's, https://sts.<region>.amazonaws.com.",
    )
    ecr_endpoint: str | None = Field(
        default=None,
        description="ECR API endpoint for every region (https). "
        "Default: the region's, https://api.ecr.<region>.amazonaws.com.",
    )
    ca_bundle: Path | None = Field(
        default=None, description="PEM CA bundle trusted alone for STS and ECR. Default: system."
    )
    session_duration: int = Field(
        default=DEFAULT_SESSION_DURATION,
        description="Seconds the role session lasts (900-43200); its credentials sign one "
        f"request. Default: {DEFAULT_SESSION_DURATION}.",
    )

    @field_validator("sts_endpoint", "ecr_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = check_https_url(value, example="https://sts.eu-west-1.amazonaws.com")
        path = url.removeprefix("https://").partition("/")[2]
        if path and not _PATH.fullmatch("/" + path):
            raise ValueError("the path may hold only letters, digits and / . _ ~ -")
        return url

    @field_validator("session_duration")
    @classmethod
    def _duration(cls, value: int) -> int:
        if not 900 <= value <= 43200:
            raise ValueError("must be between 900 and 43200 seconds, as AWS STS allows")
        return value

    def spec(self) -> EcrSpec:
        return EcrSpec()

    def build(self, context: BuildContext) -> EcrExchange:
        return EcrExchange(
            sa_tokens=context.subject_tokens(audience=self.sa_audience, token_path=self.token_path),
            sts_endpoint=self.sts_endpoint,
            ecr_endpoint=self.ecr_endpoint,
            ca_bundle=self.ca_bundle,
            session_duration=self.session_duration,
            timeout=context.timeout,
            min_lifetime=context.min_lifetime,
            clock=context.clock,
            transport=context.transport,
        )
