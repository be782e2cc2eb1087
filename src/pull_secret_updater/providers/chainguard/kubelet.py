"""The Chainguard provider in the kubelet plugin: the identity annotation of the original
flow, tokens for one registry (cgr.dev by default), verified against the STS's keys."""

from __future__ import annotations

from collections.abc import Mapping

from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.chainguard import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_REGISTRY,
    NAME,
    USERNAME,
)
from pull_secret_updater.providers.chainguard.spec import IDENTITY, ChainguardSpec
from pull_secret_updater.providers.kubelet import Endpoint, KubeletProvider


def _want(annotations: Mapping[str, str], registry: str, audience: str) -> Want | None:
    return ChainguardSpec(registry=registry).wants(annotations)


def _arguments(
    endpoints: Mapping[str, str], registry: str | None, audience: str
) -> dict[str, object]:
    return {"issuer": endpoints.get("issuer", DEFAULT_ISSUER), "audience": registry}


KUBELET = KubeletProvider(
    name=NAME,
    title="Chainguard Registry",
    username=USERNAME,
    audience=DEFAULT_AUDIENCE,
    required_keys=(IDENTITY,),
    match_images=(DEFAULT_REGISTRY,),
    registry=DEFAULT_REGISTRY,
    endpoints=(Endpoint(key="issuer", default=DEFAULT_ISSUER, what="the STS"),),
    keeps_keys=True,
    want=_want,
    exchange="pull_secret_updater.providers.chainguard.exchange:ChainguardSTS",
    arguments=_arguments,
)
