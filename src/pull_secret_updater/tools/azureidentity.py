"""The Azure side of ACR pulls for a cluster: an identity that trusts the cluster's tokens
(federated identity credentials) and may pull from a registry (AcrPull).

Entra ID accepts a Kubernetes ServiceAccount token as a client assertion when the identity has
a federated identity credential whose issuer, subject and audience equal the token's `iss`,
`sub` and `aud`. The identity is a user-assigned managed identity (the default: no app
registration, no directory role needed) or an app registration with its service principal.
Three or four Azure CLI commands set that up; this module plans them and renders them as a
user would type them:

1. `az identity create` (or `az ad app create` and `az ad sp create`);
2. `az identity federated-credential create --issuer <issuer> --subject
   system:serviceaccount:<ns>:<sa> --audience api://AzureADTokenExchange` (or `az ad app
   federated-credential create` with the same three fields), one per ServiceAccount;
3. `az role assignment create --role AcrPull --scope <registry's resource ID>`.

NB: Entra fetches `<issuer>/.well-known/openid-configuration` and the JWKS it names itself,
over public HTTPS, when it checks a token; a federated credential cannot carry keys, so a
cluster whose issuer Entra cannot reach (KinD, kubeadm, k3s) must first publish them
(`private_issuer_warning`). AKS serves one with `--enable-oidc-issuer`.

Pure: no I/O. The caller fetches the issuer (`discovery`) and prints the result.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from pull_secret_updater.providers.acr import DEFAULT_AUDIENCE
from pull_secret_updater.tools.identity import IssuerClass, check_target, service_account_subject

__all__ = [
    "REGISTRY_PLACEHOLDER",
    "RESOURCE_GROUP_PLACEHOLDER",
    "AzurePlan",
    "Federation",
    "check_registry_name",
    "plan_azure",
    "private_issuer_warning",
]

#: Written where a value goes when none was given; the commands fail until it is set.
RESOURCE_GROUP_PLACEHOLDER = "<RESOURCE_GROUP>"
REGISTRY_PLACEHOLDER = "<REGISTRY_NAME>"
#: Where Microsoft documents a self-managed cluster's issuer for workload identity.
SELF_MANAGED_DOC = (
    "https://azure.github.io/azure-workload-identity/docs/installation/self-managed-clusters.html"
)

_REGISTRY_NAME = re.compile(r"[A-Za-z0-9]{5,50}")
# Managed identity and app names: letters, digits, - and _, 3-128 characters.
_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")
_CONTINUATION = " \\\n    "


def check_registry_name(name: str) -> str:
    """`name` if it is an ACR registry name (5-50 letters and digits); raises ValueError."""
    if not _REGISTRY_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a registry name: 5-50 letters and digits")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class Federation:
    """One ServiceAccount's tokens, trusted by the identity."""

    namespace: str
    service_account: str

    @property
    def subject(self) -> str:
        return service_account_subject(self.namespace, self.service_account)

    @property
    def credential_name(self) -> str:
        return f"{self.namespace}-{self.service_account}"[:120]


@dataclass(frozen=True, slots=True, kw_only=True)
class AzurePlan:
    """One identity, its federated credentials and its AcrPull assignment."""

    name: str
    issuer: str
    audience: str
    federations: tuple[Federation, ...]
    resource_group: str
    registry: str
    app_registration: bool = False

    def commands(self) -> list[str]:
        name, group = shlex.quote(self.name), shlex.quote(self.resource_group)
        registry = shlex.quote(self.registry)
        scope = f'"$(az acr show --name {registry} --query id --output tsv)"'
        if self.app_registration:
            app_id = f'"$(az ad app list --display-name {name} --query [0].appId --output tsv)"'
            commands = [
                f"az ad app create --display-name {name}",
                f"az ad sp create --id {app_id}",
            ]
            for federation in self.federations:
                parameters = json.dumps(
                    {"name": federation.credential_name, "issuer": self.issuer,
                     "subject": federation.subject, "audiences": [self.audience]}
                )  # fmt: skip
                commands.append(
                    _CONTINUATION.join(
                        [
                            "az ad app federated-credential create",
                            f"--id {app_id}",
                            f"--parameters {shlex.quote(parameters)}",
                        ]
                    )
                )
            assignee = [f"--assignee {app_id}"]
        else:
            commands = [f"az identity create --name {name} --resource-group {group}"]
            for federation in self.federations:
                commands.append(
                    _CONTINUATION.join(
                        [
                            "az identity federated-credential create",
                            f"--name {shlex.quote(federation.credential_name)}",
                            f"--identity-name {name}",
                            f"--resource-group {group}",
                            f"--issuer {shlex.quote(self.issuer)}",
                            f"--subject {shlex.quote(federation.subject)}",
                            f"--audience {shlex.quote(self.audience)}",
                        ]
                    )
                )
            principal = (
                f'"$(az identity show --name {name} --resource-group {group} '
                '--query principalId --output tsv)"'
            )
            assignee = [
                f"--assignee-object-id {principal}",
                "--assignee-principal-type ServicePrincipal",
            ]
        commands.append(
            _CONTINUATION.join(
                ["az role assignment create", "--role AcrPull", *assignee, f"--scope {scope}"]
            )
        )
        return commands

    def script(self) -> str:
        """The commands, one paragraph each, as they are printed."""
        return "\n\n".join(self.commands())

    def client_id_command(self) -> str:
        """What prints the client ID a Secret's client-id annotation names."""
        name = shlex.quote(self.name)
        if self.app_registration:
            return f"az ad app list --display-name {name} --query [0].appId --output tsv"
        group = shlex.quote(self.resource_group)
        return f"az identity show --name {name} --resource-group {group} --query clientId -o tsv"


def plan_azure(
    *,
    issuer: str,
    name: str,
    targets: Sequence[tuple[str, str]],
    resource_group: str | None = None,
    registry: str | None = None,
    audience: str = DEFAULT_AUDIENCE,
    app_registration: bool = False,
) -> AzurePlan:
    """One identity called `name` trusting each `(namespace, service_account)` of `targets`
    with `audience`, with AcrPull on `registry`. Raises ValueError for a bad name."""
    if not _IDENTITY_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an identity name: 3-128 letters, digits, - and _")
    if registry is not None:
        check_registry_name(registry)
    if not audience.strip() or any(c.isspace() for c in audience):
        raise ValueError("the audience must be one word")
    federations = []
    for namespace, service_account in targets:
        check_target(namespace=namespace, service_account=service_account)
        federations.append(Federation(namespace=namespace, service_account=service_account))
    if len({f.subject for f in federations}) != len(federations):
        raise ValueError("a ServiceAccount is named twice")
    return AzurePlan(
        name=name,
        issuer=issuer,
        audience=audience,
        federations=tuple(federations),
        resource_group=resource_group or RESOURCE_GROUP_PLACEHOLDER,
        registry=registry or REGISTRY_PLACEHOLDER,
        app_registration=app_registration,
    )


def private_issuer_warning(issuer: str, issuer_class: IssuerClass) -> str | None:
    """What to tell the user when Entra cannot be expected to fetch the issuer's keys; None
    for a public issuer."""
    if issuer_class.public:
        return None
    return (
        f"warning: Microsoft Entra ID cannot reach this issuer ({issuer_class.label}). Entra "
        f"must fetch {issuer.rstrip('/')}/.well-known/openid-configuration and the JWKS it "
        "names over public HTTPS to check the tokens, and a federated identity credential "
        "cannot carry the keys instead: with this issuer every exchange fails (AADSTS50166 or "
        "AADSTS700211). Use AKS with --enable-oidc-issuer, or publish the discovery document "
        "and JWKS at a public HTTPS URL (a storage account's static website), make that URL "
        "the API server's --service-account-issuer (with --service-account-jwks-uri), and run "
        f"this command again: {SELF_MANAGED_DOC}"
    )
