"""The kubelet credential-provider plugin on the local stack: one config entry per provider,
each pointed at its stand-in, and ServiceAccounts that each provider's identity trusts.

`plans(stack)` is what a node administrator would generate with ``credential-provider config``
for these endpoints (the stand-ins' token services, registries with a port, the stack's CA);
`Workload` is one ServiceAccount annotated for every provider, with an identity in each that
trusts it, and `request` is the kubelet's request for one provider's image. The benchmark
and the tests that run the plugin (alone, or under a real kubelet) share them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from devstack import clouds
from devstack.stack import LocalStack
from pull_secret_updater.credentialprovider.install import ProviderPlan, credential_provider_config
from pull_secret_updater.credentialprovider.protocol import API_VERSION
from pull_secret_updater.providers.acr.spec import CLIENT_ID, TENANT_ID
from pull_secret_updater.providers.chainguard.spec import IDENTITY
from pull_secret_updater.providers.ecr.spec import ROLE_ARN
from pull_secret_updater.providers.gar.spec import SERVICE_ACCOUNT, WORKLOAD_IDENTITY_PROVIDER
from pull_secret_updater.providers.kubelet import KUBELET_PROVIDERS, kubelet_provider

__all__ = [
    "IDENTITY",
    "PROVIDERS",
    "ROLE_ARN",
    "Workload",
    "args_of",
    "image_of",
    "plans",
    "request",
    "service_origins",
    "trusted_workload",
]

PROVIDERS = KUBELET_PROVIDERS


def plans(
    stack: LocalStack,
    *,
    providers: tuple[str, ...] = PROVIDERS,
    key_cache: Path | None = None,
    ca_file: Path | None = None,
) -> list[ProviderPlan]:
    """One config entry per provider for the stack's stand-ins (`ca_file`: the stack's CA as
    the plugin sees it; `key_cache`: Chainguard's ``--key-cache``)."""
    ca = f"--ca-bundle={ca_file or stack.ca_file}"
    made = {
        "chainguard": lambda: ProviderPlan(
            issuer=stack.token_service.url,
            registry=stack.registry.host,
            plugin_args=(ca, *([f"--key-cache={key_cache}"] if key_cache else [])),
        ),
        "ecr": lambda: ProviderPlan(
            provider="ecr",
            match_images=(stack.aws.registry_host,),
            endpoints=(("sts", stack.aws.endpoint), ("ecr", stack.aws.endpoint)),
            plugin_args=(ca,),
        ),
        "gar": lambda: ProviderPlan(
            provider="gar",
            match_images=(stack.gcp.registry_host,),
            endpoints=(("sts", stack.gcp.endpoint), ("iamcredentials", stack.gcp.endpoint)),
            plugin_args=(ca,),
        ),
        "acr": lambda: ProviderPlan(
            provider="acr",
            match_images=(stack.azure.registry_host,),
            endpoints=(("authority", stack.azure.endpoint), ("acr", stack.azure.endpoint)),
            plugin_args=(ca,),
        ),
    }
    return [made[provider]() for provider in providers]


def service_origins(stack: LocalStack, provider: str) -> set[str]:
    """The ``host:port`` of each token service the provider's plugin calls (what a forward
    proxy is asked to tunnel to)."""
    [plan] = plans(stack, providers=(provider,))
    urls = [plan.issuer] if provider == "chainguard" else [url for _, url in plan.endpoints]
    return {f"{httpx2.URL(url).host}:{httpx2.URL(url).port or 443}" for url in urls if url}


def image_of(stack: LocalStack, provider: str) -> str:
    """The test image on the provider's registry."""
    return {
        "chainguard": stack.registry.image,
        "ecr": stack.aws.image,
        "gar": stack.gcp.image,
        "acr": stack.azure.image,
    }[provider]


@dataclass(frozen=True)
class Workload:
    """A ServiceAccount with an identity in every provider that trusts it, and its
    annotations for each (`annotations[provider]`)."""

    namespace: str
    service_account: str
    annotations: dict[str, dict[str, str]] = field(repr=False)

    @property
    def all_annotations(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for keys in self.annotations.values():
            merged.update(keys)
        return merged


def trusted_workload(
    stack: LocalStack, namespace: str, service_account: str, *, trusts: str | None = None
) -> Workload:
    """Identities in every provider that trust ServiceAccount `trusts` (default: itself) of
    `namespace`, as annotations for `service_account` (which must exist to be annotated)."""
    trusted = trusts or service_account
    subject = f"system:serviceaccount:{namespace}:{trusted}"
    # NB: one name for the identity in every cloud, within the shortest limit (a Google
    # service account's, 30) and ending in a letter or digit.
    digest = hashlib.sha256(f"{namespace}/{service_account}".encode()).hexdigest()[:10]
    name = f"{service_account[:19].rstrip('-')}-{digest}"
    made = clouds.trusting(stack, subject, name=name)
    identity = stack.create_kind_identity(name=name, namespace=namespace, service_account=trusted)
    return Workload(
        namespace=namespace,
        service_account=service_account,
        annotations={
            "chainguard": {IDENTITY: identity},
            "ecr": {ROLE_ARN: made.role_arn},
            "gar": {
                WORKLOAD_IDENTITY_PROVIDER: made.pool_provider,
                SERVICE_ACCOUNT: made.service_account,
            },
            "acr": {TENANT_ID: stack.azure.tenant, CLIENT_ID: made.client_id},
        },
    )


def request(stack: LocalStack, workload: Workload, provider: str, *, seconds: int = 3600) -> str:
    """The kubelet's request for the provider's image, with a token of the workload's
    ServiceAccount with that provider's audience."""
    token = stack.control_plane.service_account_token(
        workload.namespace,
        workload.service_account,
        audience=kubelet_provider(provider).audience,
        seconds=seconds,
    )
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "CredentialProviderRequest",
            "image": image_of(stack, provider).rsplit(":", 1)[0],
            "serviceAccountToken": token,
            "serviceAccountAnnotations": workload.annotations[provider],
        }
    )


def want_of(stack: LocalStack, workload: Workload, provider: str) -> str:
    """The identity the plugin exchanges for (as its messages name it) for the workload's
    annotations and the provider's image."""
    registry = image_of(stack, provider).split("/", 1)[0]
    described = kubelet_provider(provider)
    want = described.want(workload.annotations[provider], registry, described.audience)
    assert want is not None
    return want.identity


def args_of(plan: ProviderPlan) -> list[str]:
    """The plugin's arguments for the entry, as the kubelet passes them."""
    [entry] = credential_provider_config([plan])["providers"]
    return list(entry["args"])
