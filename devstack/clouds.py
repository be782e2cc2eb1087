"""Every cloud provider of the local stack at once: ECR, Artifact Registry and ACR.

`trusting(stack, subject, name=...)` creates, in each stand-in, an identity that trusts one
ServiceAccount (an IAM role; a workload identity pool provider and a Google service account it
may impersonate; an Entra app with a federated credential and AcrPull) and says what a pull
Secret asks of them (`Clouds.annotations`). `sections(stack, ...)` is the controller's
`providers` setting for the three stand-ins, and `AUDIENCES` the projected tokens it needs.
The demo and the tests that pull from every registry with one Secret use these.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.stack import LocalStack
from pull_secret_updater.providers import acr, ecr, gar
from pull_secret_updater.providers.acr import spec as acr_spec
from pull_secret_updater.providers.ecr import spec as ecr_spec
from pull_secret_updater.providers.gar import spec as gar_spec

#: The audiences of the controller's projected tokens: ECR's, Google's, Azure's.
AUDIENCES = (ecr.DEFAULT_AUDIENCE, gar.DEFAULT_AUDIENCE, acr.DEFAULT_AUDIENCE)


@dataclass(frozen=True)
class Clouds:
    """One identity per cloud provider, each trusting the same ServiceAccount."""

    role_arn: str
    pool_provider: str
    service_account: str
    client_id: str
    annotations: dict[str, str]

    @property
    def identities(self) -> dict[str, str]:
        """Each provider's identity, as its `filled-identity` annotation names it."""
        return {"ecr": self.role_arn, "gar": self.service_account, "acr": self.client_id}


def trusting(stack: LocalStack, subject: str, *, name: str) -> Clouds:
    """Identities in every stand-in that trust `subject` (system:serviceaccount:<ns>:<sa>)."""
    role = stack.aws.create_role(name, subjects=subject)
    provider = stack.gcp.create_pool_provider(
        name[:32], allowed_audiences=[gar.DEFAULT_AUDIENCE], allowed_subjects=[subject]
    )
    email = stack.gcp.create_service_account(name[:30])
    stack.gcp.bind(email, stack.gcp.principal(subject))
    client = stack.azure.create_puller(name, subject=subject)
    annotations = {
        ecr_spec.ROLE_ARN: role,
        ecr_spec.REGISTRIES: stack.aws.registry_host,
        gar_spec.WORKLOAD_IDENTITY_PROVIDER: provider,
        gar_spec.SERVICE_ACCOUNT: email,
        gar_spec.REGISTRIES: stack.gcp.registry_host,
        acr_spec.TENANT_ID: stack.azure.tenant,
        acr_spec.CLIENT_ID: client,
        acr_spec.REGISTRY: stack.azure.registry_host,
    }
    return Clouds(role, provider, email, client, annotations)


def sections(stack: LocalStack, *, ca_bundle: str, token_path: Callable[[str], str | None]) -> str:
    """The controller's `providers` setting (JSON) for the three stand-ins, with `ca_bundle`
    as the controller sees the stack's CA and each provider's projected token at
    `token_path(audience)` (None: the provider's default path)."""
    listed: list[dict[str, str]] = [
        {"kind": "ecr", "sts_endpoint": stack.aws.endpoint, "ecr_endpoint": stack.aws.endpoint},
        {
            "kind": "gar",
            "sts_endpoint": stack.gcp.endpoint,
            "iamcredentials_endpoint": stack.gcp.endpoint,
        },
        {str(k): str(v) for k, v in stack.azure.section().items()},
    ]
    for section, audience in zip(listed, AUDIENCES, strict=True):
        section["ca_bundle"] = ca_bundle
        path = token_path(audience)
        if path is not None:
            section["token_path"] = path
    return json.dumps(listed)


def variables(stack: LocalStack, *, ca_bundle: str) -> dict[str, str]:
    """The three stand-ins' sections as the kustomize components set them, one variable per
    provider (`PSU_PROVIDERS_ECR`, `_GAR`, `_ACR`), each token at the provider's default path
    (where the component projects it)."""
    listed = json.loads(sections(stack, ca_bundle=ca_bundle, token_path=lambda _: None))
    return {f"PSU_PROVIDERS_{section['kind'].upper()}": json.dumps(section) for section in listed}


def controller_token_path(workdir: Path, name: str) -> Callable[[str], str]:
    """Where a `ControllerProcess` named `name` writes its projected token of an audience."""
    return lambda audience: str(workdir / "controllers" / name / "tokens" / audience / "token")
