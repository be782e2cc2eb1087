"""The Azure stand-in as the Azure SDK sees it: azure-identity's `WorkloadIdentityCredential`
with the stand-in as its authority (instance discovery off: it would ask the real
login.microsoftonline.com whether the host is an Entra instance), trusting the stack's CA;
ServiceAccounts with apps that trust them, and their tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from azure.identity import WorkloadIdentityCredential

from devstack import pki
from devstack.azure.standin import AUDIENCE
from devstack.stack import LocalStack
from tests.helpers import unique

SCOPE = "https://containerregistry.azure.net/.default"


@dataclass(frozen=True)
class Workload:
    """A ServiceAccount and an app (client ID) that trusts it, with AcrPull on the registry."""

    namespace: str
    service_account: str
    client_id: str

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def new_workload(stack: LocalStack, prefix: str = "azure", *, federated: bool = True) -> Workload:
    namespace = unique(prefix)
    stack.control_plane.kubectl("create", "namespace", namespace)
    stack.control_plane.kubectl("create", "serviceaccount", "app", "-n", namespace)
    workload = Workload(namespace, "app", stack.azure.create_app(unique("app")))
    if federated:
        stack.azure.add_federated_credential(workload.client_id, subject=workload.subject)
    stack.azure.assign_acr_pull(workload.client_id)
    return workload


def token_for(stack: LocalStack, workload: Workload, *, audience: str = AUDIENCE) -> str:
    """A real TokenRequest token of the workload's ServiceAccount."""
    return stack.control_plane.service_account_token(
        workload.namespace, workload.service_account, audience=audience, seconds=600
    )


def credential(
    stack: LocalStack,
    workload: Workload,
    token_file: Path,
    *,
    client_id: str | None = None,
    **options: Any,
) -> WorkloadIdentityCredential:
    """What a Pod with AKS's workload identity webhook gets, pointed at the stand-in."""
    return WorkloadIdentityCredential(
        tenant_id=stack.azure.tenant,
        client_id=client_id or workload.client_id,
        token_file_path=str(token_file),
        authority=stack.azure.authority_host,
        disable_instance_discovery=True,
        connection_verify=str(stack.ca_file),
        **options,
    )


def exchange(
    stack: LocalStack, access_token: str, *, service: str | None = None, tenant: str | None = None
) -> httpx2.Response:
    """The registry's ``/oauth2/exchange``, as ACR's clients (az acr login) call it."""
    return httpx2.post(
        f"{stack.azure.endpoint}/oauth2/exchange",
        data={
            "grant_type": "access_token",
            "service": service or stack.azure.registry_host.rsplit(":", 1)[0],
            "tenant": tenant or stack.azure.tenant,
            "access_token": access_token,
        },
        verify=pki.trust(stack.ca_file),
    )
