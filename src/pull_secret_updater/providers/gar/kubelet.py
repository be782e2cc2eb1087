"""The Google provider in the kubelet plugin: the workload identity pool provider (and the
service account to impersonate, if any) in the ServiceAccount's annotations, the registry
from the image."""

from __future__ import annotations

from collections.abc import Mapping

from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.gar import (
    DEFAULT_AUDIENCE,
    DEFAULT_IAMCREDENTIALS_ENDPOINT,
    DEFAULT_STS_ENDPOINT,
    NAME,
    USERNAME,
)
from pull_secret_updater.providers.gar.spec import (
    GOOGLE_HOST,
    REGISTRIES,
    SERVICE_ACCOUNT,
    WORKLOAD_IDENTITY_PROVIDER,
    GarSpec,
)
from pull_secret_updater.providers.kubelet import Endpoint, KubeletProvider


def _want(annotations: Mapping[str, str], registry: str, audience: str) -> Want | None:
    if WORKLOAD_IDENTITY_PROVIDER not in annotations:
        return None
    asked = {k: annotations[k] for k in (WORKLOAD_IDENTITY_PROVIDER, SERVICE_ACCOUNT)
             if k in annotations}  # fmt: skip
    return GarSpec(audience=audience).wants({**asked, REGISTRIES: registry})


def _arguments(
    endpoints: Mapping[str, str], registry: str | None, audience: str
) -> dict[str, object]:
    return {
        "audience": audience,
        "sts_endpoint": endpoints.get("sts", DEFAULT_STS_ENDPOINT),
        "iamcredentials_endpoint": endpoints.get("iamcredentials", DEFAULT_IAMCREDENTIALS_ENDPOINT),
    }


KUBELET = KubeletProvider(
    name=NAME,
    title="Google Artifact Registry",
    username=USERNAME,
    audience=DEFAULT_AUDIENCE,
    required_keys=(WORKLOAD_IDENTITY_PROVIDER,),
    optional_keys=(SERVICE_ACCOUNT,),
    match_images=("*-docker.pkg.dev", "gcr.io", "*.gcr.io"),
    hosts=GOOGLE_HOST,
    hosts_what="<location>-docker.pkg.dev, gcr.io or <region>.gcr.io",
    endpoints=(
        Endpoint(key="sts", default=DEFAULT_STS_ENDPOINT, what="Google STS"),
        Endpoint(
            key="iamcredentials",
            default=DEFAULT_IAMCREDENTIALS_ENDPOINT,
            what="IAM Credentials",
        ),
    ),
    want=_want,
    exchange="pull_secret_updater.providers.gar.exchange:GarExchange",
    arguments=_arguments,
)
