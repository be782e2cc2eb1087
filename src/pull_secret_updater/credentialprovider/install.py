"""What a node needs besides the plugin's executable: the kubelet's CredentialProviderConfig
entries, one per registry provider, and the RBAC that lets kubelets request ServiceAccount
tokens with their audiences.

The config (``k8s.io/kubelet/config/v1``, read from ``--image-credential-provider-config``):

- ``name`` is the executable's name in ``--image-credential-provider-bin-dir``. The kubelet
  wants the names unique and runs ``<bin-dir>/<name>``, so the one executable is installed
  under one name per provider (links to it), and ``--provider`` in ``args`` says which
  provider the entry is;
- ``matchImages`` names the registries: Chainguard's one registry (and optionally paths on it;
  the plugin refuses images of any other registry, so patterns for other hosts are refused
  here already), or the provider's hosts (``*.dkr.ecr.*.amazonaws.com``, ...);
- ``defaultCacheDuration`` is required but unused: every answer states its own duration;
- ``tokenAttributes`` asks the kubelet for a token of the Pod's ServiceAccount with the
  ``serviceAccountTokenAudience`` the identities expect (each provider's own), and for the
  provider's annotations. With ``requiredServiceAccountAnnotationKeys`` (workload identities
  only), the kubelet does not call the plugin for a ServiceAccount without them: the pull goes
  on without credentials from us. With a node fallback (Chainguard) the key is optional and
  ``requireServiceAccount`` false (the kubelet forbids required keys then), so those Pods get
  the node's identity.
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
    DEFAULT_PROVIDER,
    PROG,
    node_fallback_problem,
)
from pull_secret_updater.credentialprovider.protocol import API_VERSION
from pull_secret_updater.providers.chainguard.spec import IDENTITY
from pull_secret_updater.providers.kubelet import KubeletProvider, kubelet_provider

__all__ = [
    "AUDIENCE_VERB",
    "CONFIG_API_VERSION",
    "NODES_GROUP",
    "ProviderPlan",
    "audience_in_config",
    "credential_provider_config",
    "executable_name",
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


def executable_name(provider: str) -> str:
    """The plugin's file name for `provider`'s entry: Chainguard's is the plugin's own name."""
    return PROG if provider == DEFAULT_PROVIDER else f"{PROG}-{provider}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderPlan:
    """One provider entry. None: the provider's default (`executable_name`, its registry, its
    images, its audience). `endpoints` are ``--endpoint`` pairs; `plugin_args` are extra
    plugin flags (``--ca-bundle=...``). `issuer`, `identity_annotation` and the node fallback
    are Chainguard's."""

    provider: str = DEFAULT_PROVIDER
    name: str | None = None
    issuer: str = DEFAULT_ISSUER
    registry: str | None = None
    match_images: tuple[str, ...] = ()
    audience: str | None = None
    endpoints: tuple[tuple[str, str], ...] = ()
    identity_annotation: str = IDENTITY
    service_account_tokens: bool = True
    node_token_file: str | None = None
    node_identity: str | None = None
    plugin_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        described = kubelet_provider(self.provider)
        name = self.file_name
        if not name or any(c in name for c in "/ ") or name in (".", ".."):
            raise ValueError("the provider name must be a file name (no '/', no spaces)")
        registry = self.served_registry
        for pattern in self.images:
            host = pattern.split("/", 1)[0]
            if "://" in pattern or (registry is not None and host.lower() != registry.lower()):
                raise ValueError(
                    f"match image {pattern!r} is not on the registry {registry}: the "
                    "plugin gets tokens for that registry only (a path on it is fine)"
                )
        if not self.token_audience.strip():
            raise ValueError("the audience must not be empty")
        for key, url in self.endpoints:
            if described.endpoint(key) is None:
                raise ValueError(f"{self.provider} has no endpoint {key!r}")
            if not url.startswith("https://"):
                raise ValueError(f"the endpoint {key} must be an https:// URL")
        chainguard = self.provider == DEFAULT_PROVIDER
        if len(self.identity_annotation) > 316 or not _QUALIFIED_NAME.fullmatch(
            self.identity_annotation
        ):
            raise ValueError(f"{self.identity_annotation!r} is not an annotation key")
        if not self.issuer.startswith("https://"):
            raise ValueError("the issuer must be an https:// URL")
        if not chainguard and (
            self.issuer != DEFAULT_ISSUER
            or self.identity_annotation != IDENTITY
            or self.node_token_file is not None
            or self.node_identity is not None
            or not self.service_account_tokens
        ):
            raise ValueError(
                "the issuer, the identity annotation, the node fallback and plain mode are "
                "for the chainguard provider only"
            )
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
    def described(self) -> KubeletProvider:
        return kubelet_provider(self.provider)

    @property
    def file_name(self) -> str:
        return self.name if self.name is not None else executable_name(self.provider)

    @property
    def served_registry(self) -> str | None:
        return self.registry if self.registry is not None else self.described.registry

    @property
    def token_audience(self) -> str:
        return self.audience if self.audience is not None else self.described.audience

    @property
    def images(self) -> tuple[str, ...]:
        if self.match_images:
            return self.match_images
        registry = self.served_registry
        return (registry,) if registry is not None else self.described.match_images

    @property
    def annotation_keys(self) -> tuple[list[str], list[str]]:
        """The annotation keys the kubelet must pass: required, optional."""
        described = self.described
        required = list(described.required_keys)
        if self.identity_annotation != IDENTITY:
            required = [self.identity_annotation if k == IDENTITY else k for k in required]
        return required, list(described.optional_keys)

    @property
    def node_fallback(self) -> bool:
        return self.node_token_file is not None


def credential_provider_config(plans: Sequence[ProviderPlan]) -> dict[str, Any]:
    """A ``CredentialProviderConfig`` with one provider per plan."""
    if not plans:
        raise ValueError("at least one provider is needed")
    names = [plan.file_name for plan in plans]
    if len(set(names)) != len(names):
        raise ValueError("provider names must be unique")
    return {
        "apiVersion": CONFIG_API_VERSION,
        "kind": "CredentialProviderConfig",
        "providers": [_provider(plan) for plan in plans],
    }


def rbac_objects(
    audience: str | Sequence[str] = DEFAULT_AUDIENCE, *, name: str = PROG
) -> list[dict[str, Any]]:
    """The ClusterRole and ClusterRoleBinding that let every kubelet request tokens for
    `audience` (or each of several; under NodeRestriction, still only for Pods bound to that
    node)."""
    audiences = [audience] if isinstance(audience, str) else list(dict.fromkeys(audience))
    if not audiences or not all(a.strip() for a in audiences):
        raise ValueError("the audience must not be empty")
    if not is_dns_subdomain(name):
        raise ValueError(f"{name!r} is not a valid ClusterRole name")
    metadata = {"name": name, "labels": dict(LABELS)}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata,
        "rules": [{"apiGroups": [""], "resources": audiences, "verbs": [AUDIENCE_VERB]}],
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
    described = plan.described
    if plan.provider == DEFAULT_PROVIDER:
        args = [f"--issuer={plan.issuer}", f"--registry={plan.served_registry}"]
    else:
        args = [f"--provider={plan.provider}"]
        if plan.registry is not None:
            args.append(f"--registry={plan.registry}")
    args += [f"--endpoint={key}={url}" for key, url in plan.endpoints]
    if plan.provider != DEFAULT_PROVIDER and plan.token_audience != described.audience:
        # The plugin binds Google's tokens to the pool provider an audience names.
        args.append(f"--audience={plan.token_audience}")
    if plan.identity_annotation != IDENTITY:
        args.append(f"--identity-annotation={plan.identity_annotation}")
    if plan.node_token_file is not None:
        args += [
            f"--node-token-file={plan.node_token_file}",
            f"--node-identity={plan.node_identity}",
        ]
    args += plan.plugin_args
    provider: dict[str, Any] = {
        "name": plan.file_name,
        "apiVersion": API_VERSION,
        "matchImages": list(plan.images),
        # Required, and unused: every answer carries its own cacheDuration.
        "defaultCacheDuration": "0s",
        "args": args,
    }
    if plan.service_account_tokens:
        required, optional = plan.annotation_keys
        attributes: dict[str, Any] = {
            "serviceAccountTokenAudience": plan.token_audience,
            "cacheType": "ServiceAccount",
            "requireServiceAccount": not plan.node_fallback,
        }
        if plan.node_fallback:
            attributes["optionalServiceAccountAnnotationKeys"] = required + optional
        else:
            attributes["requiredServiceAccountAnnotationKeys"] = required
            if optional:
                attributes["optionalServiceAccountAnnotationKeys"] = optional
        provider["tokenAttributes"] = attributes
    return provider
