"""The ECR provider in the kubelet plugin: the role in the ServiceAccount's annotation, the
registry (and so the region) from the image."""

from __future__ import annotations

from collections.abc import Mapping

from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.ecr import DEFAULT_AUDIENCE, NAME, USERNAME
from pull_secret_updater.providers.ecr.spec import ECR_HOST, REGISTRIES, ROLE_ARN, EcrSpec
from pull_secret_updater.providers.kubelet import Endpoint, KubeletProvider


def _want(annotations: Mapping[str, str], registry: str, audience: str) -> Want | None:
    if ROLE_ARN not in annotations:
        return None
    return EcrSpec().wants({ROLE_ARN: annotations[ROLE_ARN], REGISTRIES: registry})


def _arguments(
    endpoints: Mapping[str, str], registry: str | None, audience: str
) -> dict[str, object]:
    return {"sts_endpoint": endpoints.get("sts"), "ecr_endpoint": endpoints.get("ecr")}


KUBELET = KubeletProvider(
    name=NAME,
    title="Amazon ECR",
    username=USERNAME,
    audience=DEFAULT_AUDIENCE,
    required_keys=(ROLE_ARN,),
    # As the official ECR plugin's documentation has them.
    match_images=(
        "*.dkr.ecr.*.amazonaws.com",
        "*.dkr-ecr.*.on.aws",
        "*.dkr.ecr.*.amazonaws.com.cn",
    ),
    hosts=ECR_HOST,
    hosts_what="<account>.dkr.ecr.<region>.amazonaws.com",
    endpoints=(
        Endpoint(key="sts", default=None, what="AWS STS"),
        Endpoint(key="ecr", default=None, what="the ECR API"),
    ),
    want=_want,
    exchange="pull_secret_updater.providers.ecr.exchange:EcrExchange",
    arguments=_arguments,
)
