"""The token source and the STS client as the settings describe them, for `run` and `check`."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
from lightkube import AsyncClient

from pull_secret_updater.settings import Settings
from pull_secret_updater.tokens.satoken import (
    ProjectedFileTokenSource,
    ServiceAccountTokenSource,
    TokenRequestTokenSource,
)
from pull_secret_updater.tokens.sts import ChainguardSTS


def service_account_tokens(
    settings: Settings, *, client: Callable[[], AsyncClient]
) -> ServiceAccountTokenSource:
    """The projected token file, or TokenRequest (``client`` is called only then)."""
    if settings.token_source == "file":
        return ProjectedFileTokenSource(path=settings.token_path)
    return TokenRequestTokenSource(
        client(),
        namespace=settings.namespace,
        service_account=settings.service_account,
        audience=settings.sa_audience,
    )


def token_service(
    settings: Settings,
    *,
    sa_tokens: ServiceAccountTokenSource,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> ChainguardSTS:
    return ChainguardSTS(
        sa_tokens=sa_tokens,
        issuer=settings.issuer,
        audience=settings.registry,
        ca_bundle=settings.ca_bundle,
        timeout=settings.exchange_timeout,
        min_lifetime=settings.min_token_lifetime,
        transport=transport,
    )
