"""Which assumable identity fits a cluster, decided from its service-account issuer alone.

An identity trusts tokens from one issuer. The token service checks a token's signature with
the issuer's keys, which it gets in one of two ways: by fetching the issuer's OIDC discovery
document from the internet (GKE, EKS and AKS publish theirs; so can any cluster whose issuer is
a public HTTPS URL), or from keys stored in the identity itself (`--issuer-keys`), which is
the only way for a cluster whose issuer nobody outside can reach (KinD, kubeadm, k3s: their
default issuer is the in-cluster name `kubernetes.default.svc.cluster.local`).

Whether a discovery document is really served publicly cannot be checked from here, so the
decision is made on the URL: a host that cannot be public (an in-cluster or local name, a name
without a dot, a private or loopback address) means keys; anything else is taken as public.
`embed_keys` in `plan_identity` overrides that for a public-looking issuer that is not.

NB: the issuer is used exactly as the cluster states it. A token's `iss` claim must equal the
identity's issuer character for character, and AKS issuers end with a '/'.

Pure: no I/O. The caller fetches the issuer and keys (`discovery`) and prints the result.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pull_secret_updater.core.names import is_dns_label, is_dns_subdomain

__all__ = [
    "ROLE",
    "IdentityPlan",
    "IssuerClass",
    "Kind",
    "check_target",
    "classify_issuer",
    "compact_jwks",
    "plan_identity",
    "rotation_warning",
    "service_account_subject",
]

#: The role the controller needs: pulling from the registry, nothing more.
ROLE = "registry.pull"

Kind = Literal["gke", "eks", "aks", "kind", "private", "public"]

_PUBLIC_KINDS: frozenset[Kind] = frozenset({"gke", "eks", "aks", "public"})
_NAME_PREFIX: Mapping[Kind, str] = {
    "gke": "gke",
    "eks": "eks",
    "aks": "aks",
    "kind": "kind",
    "private": "cluster",
    "public": "cluster",
}

_GKE_PATH = re.compile(r"/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/]+)/?")
_EKS_HOST = re.compile(r"oidc\.eks\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
_EKS_PATH = re.compile(r"/id/[A-Za-z0-9]+/?")
_AKS_SUFFIX = ".oic.prod-aks.azure.com"
_IN_CLUSTER = "kubernetes.default.svc"
# Names that resolve only inside a cluster or a site, or are reserved never to resolve.
_LOCAL_SUFFIXES = (
    ".svc",
    ".local",
    ".internal",
    ".localhost",
    ".localdomain",
    ".home.arpa",
    ".test",
    ".invalid",
    ".example",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerClass:
    """What an issuer URL says about its cluster: `kind`, a `label` and the `reason`."""

    kind: Kind
    label: str
    reason: str

    @property
    def public(self) -> bool:
        """Whether the token service can be expected to fetch the issuer's discovery itself."""
        return self.kind in _PUBLIC_KINDS

    @property
    def default_name(self) -> str:
        """The identity name used when none is given: `kind-pull-secrets`, `gke-...`."""
        return f"{_NAME_PREFIX[self.kind]}-pull-secrets"

    def workload_name(self, namespace: str, service_account: str) -> str:
        """The default name of a workload's own identity: `kind-team-a-app`."""
        return f"{_NAME_PREFIX[self.kind]}-{namespace}-{service_account}"


def classify_issuer(issuer: str) -> IssuerClass:
    """The kind of cluster behind a service-account issuer URL, and why."""
    parts = urlsplit(issuer.strip())
    host = (parts.hostname or "").rstrip(".")
    path = parts.path
    if parts.scheme != "https":
        return _private(f"the issuer {issuer} is not an https:// URL, so it is not served publicly")
    if not host:
        return _private(f"the issuer {issuer} has no host name")
    if host == _IN_CLUSTER or host.startswith(_IN_CLUSTER + "."):
        return IssuerClass(
            kind="kind",
            label="KinD-like cluster (private issuer)",
            reason=(
                f"the issuer's host {host} is the API server's in-cluster name, the default "
                "of KinD, kubeadm and k3s, which nothing outside the cluster can reach"
            ),
        )
    if host == "container.googleapis.com" and (gke := _GKE_PATH.fullmatch(path)):
        project, location, cluster = gke.groups()
        return IssuerClass(
            kind="gke",
            label="GKE cluster",
            reason=(
                f"the issuer is GKE's for project {project}, location {location}, cluster "
                f"{cluster}; Google serves its discovery publicly"
            ),
        )
    if (eks := _EKS_HOST.fullmatch(host)) and _EKS_PATH.fullmatch(path):
        return IssuerClass(
            kind="eks",
            label="EKS cluster",
            reason=(
                f"the issuer is an EKS OIDC provider in {eks.group(1)}; "
                "AWS serves its discovery publicly"
            ),
        )
    if host.endswith(_AKS_SUFFIX) and host != _AKS_SUFFIX[1:]:
        region = host.removesuffix(_AKS_SUFFIX)
        return IssuerClass(
            kind="aks",
            label="AKS cluster",
            reason=(
                f"the issuer is an AKS OIDC issuer ({region}); Azure serves its discovery publicly"
            ),
        )
    problem = _non_public_host(host)
    if problem is not None:
        return _private(f"the issuer's host {host} {problem}")
    return IssuerClass(
        kind="public",
        label="cluster with a public issuer",
        reason=(
            f"the issuer's host {host} is a public name; the token service must be able to "
            f"fetch {issuer.rstrip('/')}/.well-known/openid-configuration from the internet"
        ),
    )


def service_account_subject(namespace: str, service_account: str) -> str:
    """The `sub` claim of a ServiceAccount's tokens."""
    return f"system:serviceaccount:{namespace}:{service_account}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityPlan:
    """The identity to create; `command()` is the `chainctl` command line that creates it.

    `issuer_keys` is the issuer's JWKS as compact JSON when the identity must carry the keys;
    `audience`, when set, the audience the Kubernetes tokens must carry (for the kubelet's
    credential-provider tokens, whose audience the kubelet's config chooses).
    """

    name: str
    issuer: str
    subject: str
    subject_is_pattern: bool
    issuer_keys: str | None
    role: str = ROLE
    audience: str | None = None

    def command(self) -> str:
        """The command as a user would type it, one flag per line joined with ` \\`."""
        lines = [f"chainctl iam identities create {shlex.quote(self.name)}"]
        if self.issuer_keys is not None:
            lines.append(f"--issuer-keys={shlex.quote(self.issuer_keys)}")
        lines.append(f"--identity-issuer={shlex.quote(self.issuer)}")
        subject_flag = "--subject-pattern" if self.subject_is_pattern else "--subject"
        lines.append(f"{subject_flag}={shlex.quote(self.subject)}")
        if self.audience is not None:
            lines.append(f"--audience={shlex.quote(self.audience)}")
        lines.append(f"--role={shlex.quote(self.role)}")
        return " \\\n    ".join(lines)


def plan_identity(
    *,
    issuer: str,
    issuer_class: IssuerClass,
    namespace: str,
    service_account: str,
    name: str | None = None,
    jwks: Mapping[str, object] | None = None,
    embed_keys: bool = False,
    audience: str | None = None,
) -> IdentityPlan:
    """The identity that lets `namespace/service_account` of this cluster pull (with tokens of
    `audience`, when given).

    Keys are embedded when the issuer is not public, or when `embed_keys` asks for it; `jwks`
    is then required. GKE gets `--subject-pattern` (as the original instructions have it) with
    the subject's dots escaped, so the pattern matches that one ServiceAccount only.
    Raises ValueError for a bad name or missing keys.
    """
    check_target(namespace=namespace, service_account=service_account, name=name)
    subject = service_account_subject(namespace, service_account)
    pattern = issuer_class.kind == "gke"
    keys: str | None = None
    if embed_keys or not issuer_class.public:
        if jwks is None:
            raise ValueError("the issuer's keys (JWKS) are needed but were not given")
        keys = compact_jwks(jwks)
    return IdentityPlan(
        name=name if name is not None else issuer_class.default_name,
        issuer=issuer,
        subject=subject.replace(".", r"\.") if pattern else subject,
        subject_is_pattern=pattern,
        issuer_keys=keys,
        audience=audience,
    )


def check_target(*, namespace: str, service_account: str, name: str | None = None) -> None:
    """Raise ValueError unless the names can be those of a ServiceAccount and an identity."""
    if not is_dns_label(namespace):
        raise ValueError(f"{namespace!r} is not a valid namespace name")
    if not is_dns_subdomain(service_account):
        raise ValueError(f"{service_account!r} is not a valid ServiceAccount name")
    if name is not None and not name.strip():
        raise ValueError("the identity name must not be empty")


def compact_jwks(jwks: Mapping[str, object]) -> str:
    """The JWKS as one line of JSON; raises ValueError if it holds no keys."""
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ValueError("the issuer's JWKS has no keys")
    return json.dumps(dict(jwks), separators=(",", ":"), sort_keys=False)


def rotation_warning(plan: IdentityPlan) -> str | None:
    """What to tell the user about an identity that carries keys; None if it carries none."""
    if plan.issuer_keys is None:
        return None
    return (
        "warning: this identity trusts the cluster's current service-account signing keys, "
        "copied into the command. When the cluster rotates its signing key, tokens signed "
        "with the new key are refused and the Secrets stop being refreshed. To renew, run "
        "this command again after the rotation, create a new identity with the new keys, and "
        "update the pull-secret-updater.chainguard.dev/identity annotation of your Secrets "
        "to the new identity's UID."
    )


def _private(reason: str) -> IssuerClass:
    return IssuerClass(kind="private", label="cluster with a private issuer", reason=reason)


def _non_public_host(host: str) -> str | None:
    """Why `host` cannot be reached from the internet, or None if it may be."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if address.is_global:
            return None
        if address.is_loopback:
            return "is a loopback address"
        return "is a private or reserved address"
    if host == "localhost":
        return "is localhost"
    if "." not in host:
        return "has no dot, so it is not a public name"
    for suffix in _LOCAL_SUFFIXES:
        if host.endswith(suffix):
            return f"is a local name ({suffix}), not a public one"
    return None
