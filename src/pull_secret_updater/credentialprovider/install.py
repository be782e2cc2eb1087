"""What a node needs besides the plugin's executable: the kubelet's CredentialProviderConfig
entry, and the RBAC that lets kubelets request ServiceAccount tokens with its audience.

The config (``k8s.io/kubelet/config/v1``, read from ``--image-credential-provider-config``):

- ``name`` is the executable's name in ``--image-credential-provider-bin-dir``;
- ``matchImages`` names the registry (and optionally paths on it): the plugin refuses images
  of any other registry, so patterns for other hosts are refused here already;
- ``defaultCacheDuration`` is required but unused: every answer states its own duration;
- ``tokenAttributes`` asks the kubelet for a token of the Pod's ServiceAccount with the
  ``serviceAccountTokenAudience`` the identities expect, and for the identity annotation.
  With ``requiredServiceAccountAnnotationKeys`` (workload identities only), the kubelet does
  not call the plugin for a ServiceAccount without the annotation: the pull goes on without
  credentials from us. With a node fallback the key is optional and ``requireServiceAccount``
  false (the kubelet forbids required keys then), so those Pods get the node's identity.
  ``cacheType: ServiceAccount``: the credential depends on the ServiceAccount and its
  annotation only, not on the Pod, so Pods of one ServiceAccount share one exchange per
  cache duration (the kubelet keys its cache by namespace, name, UID and annotations);
- without ``tokenAttributes`` (plain mode, kubelets before 1.34 or with the feature off) only
  the node fallback can answer.

The RBAC: with NodeRestriction and ``ServiceAccountNodeAudienceRestriction`` (on by default
since 1.33), a kubelet may request a token for an audience that the Pod does not mount only
if it is allowed the verb ``request-serviceaccounts-token-audience`` on a resource named after
the audience. One ClusterRole per audience, bound to the group ``system:nodes``.

Pure: values in, Kubernetes objects (dicts) out; the command line renders them as YAML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pull_secret_updater.core.names import is_dns_subdomain
from pull_secret_updater.credentialprovider.options import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_REGISTRY,
    PROG,
    node_fallback_problem,
)
from pull_secret_updater.credentialprovider.protocol import API_VERSION
from pull_secret_updater.providers.chainguard.spec import IDENTITY

__all__ = [
    "AUDIENCE_VERB",
    "CONFIG_API_VERSION",
    "NODES_GROUP",
    "ProviderPlan",
    "audience_in_config",
    "credential_provider_config",
    "rbac_objects",
]

CONFIG_API_VERSION = "kubelet.config.k8s.io/v1"
NODES_GROUP = "system:nodes"
AUDIENCE_VERB = "request-serviceaccounts-token-audience"
#: Labels on the RBAC objects, as on the controller's.
LABELS = {
    "app.kubernetes.io/name": "pull-secret-updater",
    "app.kubernetes.io/component": "credential-provider",
}

_QUALIFIED_NAME = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderPlan:
    """One provider entry. `plugin_args` are extra plugin flags (``--ca-bundle=...``)."""

    name: str = PROG
    issuer: str = DEFAULT_ISSUER
    registry: str = DEFAULT_REGISTRY
    match_images: tuple[str, ...] = ()
    audience: str = DEFAULT_AUDIENCE
    identity_annotation: str = IDENTITY
    service_account_tokens: bool = True
    node_token_file: str | None = None
    node_identity: str | None = None
    plugin_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/ ") or self.name in (".", ".."):
            raise ValueError("the provider name must be a file name (no '/', no spaces)")
        for pattern in self.images:
            host = pattern.split("/", 1)[0]
            if "://" in pattern or host.lower() != self.registry.lower():
                raise ValueError(
                    f"match image {pattern!r} is not on the registry {self.registry}: the "
                    "plugin gets tokens for that registry only (a path on it is fine)"
                )
        if not self.audience.strip():
            raise ValueError("the audience must not be empty")
        if len(self.identity_annotation) > 316 or not _QUALIFIED_NAME.fullmatch(
            self.identity_annotation
        ):
            raise ValueError(f"{self.identity_annotation!r} is not an annotation key")
        if not self.issuer.startswith("https://"):
            raise ValueError("the issuer must be an https:// URL")
        problem = node_fallback_problem(
            self.node_token_file,
            self.node_identity,
            unpaired="a node fallback needs both the token file and the identity",
            identity_name="node identity",
        )
        if problem is not None:
            raise ValueError(problem)
        if not self.service_account_tokens and self.node_token_file is None:
            raise ValueError(
                "without ServiceAccount tokens (plain mode) only the node fallback can answer: "
                "give the node's token file and identity"
            )

    @property
    def images(self) -> tuple[str, ...]:
        return self.match_images or (self.registry,)

    @property
    def node_fallback(self) -> bool:
        return self.node_token_file is not None


def credential_provider_config(plans: Sequence[ProviderPlan]) -> dict[str, Any]:
    """A ``CredentialProviderConfig`` with one provider per plan."""
    if not plans:
        raise ValueError("at least one provider is needed")
    names = [plan.name for plan in plans]
    if len(set(names)) != len(names):
        raise ValueError("provider names must be unique")
    return {
        "apiVersion": CONFIG_API_VERSION,
        "kind": "CredentialProviderConfig",
        "providers": [_provider(plan) for plan in plans],
    }


def rbac_objects(audience: str = DEFAULT_AUDIENCE, *, name: str = PROG) -> list[dict[str, Any]]:
    """The ClusterRole and ClusterRoleBinding that let every kubelet request tokens for
    `audience` (under NodeRestriction, still only for Pods bound to that node)."""
    if not audience.strip():
        raise ValueError("the audience must not be empty")
    if not is_dns_subdomain(name):
        raise ValueError(f"{name!r} is not a valid ClusterRole name")
    metadata = {"name": name, "labels": dict(LABELS)}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata,
        "rules": [{"apiGroups": [""], "resources": [audience], "verbs": [AUDIENCE_VERB]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": dict(metadata, labels=dict(LABELS)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": NODES_GROUP}
        ],
    }
    return [role, binding]


def audience_in_config(document: object, *, name: str = PROG) -> str:
    """The ServiceAccount token audience a CredentialProviderConfig sets for the provider
    `name`; raises ValueError when the document has no such provider or it asks for no
    tokens."""
    providers = document.get("providers") if isinstance(document, dict) else None
    if not isinstance(providers, list):
        raise ValueError("not a CredentialProviderConfig (no providers list)")
    for provider in providers:
        if isinstance(provider, dict) and provider.get("name") == name:
            attributes = provider.get("tokenAttributes")
            audience = (
                attributes.get("serviceAccountTokenAudience")
                if isinstance(attributes, dict)
                else None
            )
            if not isinstance(audience, str) or not audience:
                raise ValueError(
                    f"the provider {name} has no tokenAttributes.serviceAccountTokenAudience: "
                    "it gets no ServiceAccount tokens"
                )
            return audience
    raise ValueError(f"the config has no provider named {name}")


def _provider(plan: ProviderPlan) -> dict[str, Any]:
    args = [f"--issuer={plan.issuer}", f"--registry={plan.registry}"]
    if plan.identity_annotation != IDENTITY:
        args.append(f"--identity-annotation={plan.identity_annotation}")
    if plan.node_token_file is not None:
        args += [
            f"--node-token-file={plan.node_token_file}",
            f"--node-identity={plan.node_identity}",
        ]
    args += plan.plugin_args
    provider: dict[str, Any] = {
        "name": plan.name,
        "apiVersion": API_VERSION,
        "matchImages": list(plan.images),
        # Required, and unused: every answer carries its own cacheDuration.
        "defaultCacheDuration": "0s",
        "args": args,
    }
    if plan.service_account_tokens:
        keys = [plan.identity_annotation]
        attributes: dict[str, Any] = {
            "serviceAccountTokenAudience": plan.audience,
            "cacheType": "ServiceAccount",
            "requireServiceAccount": not plan.node_fallback,
        }
        if plan.node_fallback:
            attributes["optionalServiceAccountAnnotationKeys"] = keys
        else:
            attributes["requiredServiceAccountAnnotationKeys"] = keys
        provider["tokenAttributes"] = attributes
    return provider
