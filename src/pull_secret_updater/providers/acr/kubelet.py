"""The ACR provider in the kubelet plugin: the app (tenant and client ID) in the
ServiceAccount's annotations, the registry from the image."""

from __future__ import annotations

from collections.abc import Mapping

from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.acr import (
    DEFAULT_AUDIENCE,
    DEFAULT_AUTHORITY_HOST,
    NAME,
    USERNAME,
)
from pull_secret_updater.providers.acr.spec import (
    ACR_HOST,
    CLIENT_ID,
    REGISTRY,
    TENANT_ID,
    AcrSpec,
)
from pull_secret_updater.providers.kubelet import Endpoint, KubeletProvider


def _want(annotations: Mapping[str, str], registry: str, audience: str) -> Want | None:
    asked = {k: annotations[k] for k in (TENANT_ID, CLIENT_ID) if k in annotations}
    if not asked:
        return None
    return AcrSpec().wants({**asked, REGISTRY: registry})


def _arguments(
    endpoints: Mapping[str, str], registry: str | None, audience: str
) -> dict[str, object]:
    return {
        "authority_host": endpoints.get("authority", DEFAULT_AUTHORITY_HOST),
        "acr_endpoint": endpoints.get("acr"),
    }


KUBELET = KubeletProvider(
    name=NAME,
    title="Azure Container Registry",
    username=USERNAME,
    audience=DEFAULT_AUDIENCE,
    required_keys=(TENANT_ID, CLIENT_ID),
    match_images=("*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"),
    hosts=ACR_HOST,
    hosts_what="<name>.azurecr.io",
    endpoints=(
        Endpoint(key="authority", default=DEFAULT_AUTHORITY_HOST, what="Microsoft Entra ID"),
        Endpoint(
            key="acr",
            default=None,
            what="the registries' /oauth2/exchange",
        ),
    ),
    want=_want,
    exchange="pull_secret_updater.providers.acr.exchange:AcrExchange",
    arguments=_arguments,
)
