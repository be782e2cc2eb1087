"""The Google side of Artifact Registry pulls for a cluster: a workload identity pool, its
OIDC provider for the cluster's issuer, and the IAM binding that lets a ServiceAccount pull.

Google STS accepts a Kubernetes ServiceAccount token when a workload identity pool has an OIDC
provider for the token's issuer, the token's audience is among the provider's allowed
audiences, and the provider's attribute condition holds. The principal is then
``principal://iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/
<pool>/subject/<sub>`` (attribute mapping ``google.subject=assertion.sub``). gcloud commands
set that up; this module plans them and renders them as a user would type them:

1. ``gcloud iam workload-identity-pools create <pool>``, once per project.
2. ``gcloud iam workload-identity-pools providers create-oidc <provider>`` with the issuer,
   the allowed audience, the mapping and a condition admitting exactly the ServiceAccounts
   planned. Unlike AWS, Google can carry the keys (``--jwk-json-path``): a cluster whose
   issuer Google cannot reach (KinD, kubeadm, k3s) gets its current keys written to a file
   first, and must update the provider when it rotates them.
3. Either ``gcloud iam service-accounts add-iam-policy-binding`` giving each principal
   ``roles/iam.workloadIdentityUser`` on a Google service account to impersonate, or
   ``gcloud artifacts repositories add-iam-policy-binding`` giving it
   ``roles/artifactregistry.reader`` on a repository directly.

Pure: no I/O. The caller fetches the issuer (`discovery`) and prints the result.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pull_secret_updater.providers.gar import DEFAULT_AUDIENCE
from pull_secret_updater.tools.identity import (
    IssuerClass,
    check_target,
    compact_jwks,
    service_account_subject,
)

__all__ = [
    "JWKS_FILE",
    "PROJECT_ID_PLACEHOLDER",
    "PROJECT_NUMBER_PLACEHOLDER",
    "READER_ROLE",
    "WORKLOAD_IDENTITY_USER",
    "GcpPlan",
    "check_pool_id",
    "plan_gcp",
]

PROJECT_ID_PLACEHOLDER = "<PROJECT_ID>"
PROJECT_NUMBER_PLACEHOLDER = "<PROJECT_NUMBER>"
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
READER_ROLE = "roles/artifactregistry.reader"
#: Where the commands write the cluster's keys for ``--jwk-json-path``.
JWKS_FILE = "cluster-jwks.json"

# Pool and provider IDs: 4 to 32 lower-case letters, digits and hyphens, not starting gcp-.
_POOL_ID = re.compile(r"(?!gcp-)[a-z0-9-]{4,32}")
_EMAIL = re.compile(r"[a-z0-9][a-z0-9-]{0,62}@(?:[a-z0-9-]+\.)*gserviceaccount\.com")
_CONTINUATION = " \\\n    "


def check_pool_id(value: str, *, what: str = "pool") -> str:
    """`value` if Google accepts it as a pool's or provider's ID; raises ValueError."""
    if not _POOL_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a workload identity {what} ID: 4 to 32 lower-case letters, "
            "digits and hyphens, not starting with gcp-"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class GcpPlan:
    issuer: str
    project: str
    project_number: str
    pool: str
    provider: str
    audience: str
    subjects: tuple[str, ...]
    #: The cluster's keys, compact JSON, when Google must be given them.
    jwks: str | None
    #: The Google service account to impersonate; None: a direct binding on `repository`.
    service_account: str | None
    repository: str
    location: str

    @property
    def provider_name(self) -> str:
        """The provider's resource name, as a Secret's workload-identity-provider names it."""
        return (
            f"projects/{self.project_number}/locations/global/workloadIdentityPools/"
            f"{self.pool}/providers/{self.provider}"
        )

    def principal(self, subject: str) -> str:
        return (
            f"principal://iam.googleapis.com/projects/{self.project_number}/locations/global/"
            f"workloadIdentityPools/{self.pool}/subject/{subject}"
        )

    @property
    def condition(self) -> str:
        if len(self.subjects) == 1:
            return f"assertion.sub == '{self.subjects[0]}'"
        return "assertion.sub in [" + ", ".join(f"'{s}'" for s in self.subjects) + "]"

    def commands(self) -> list[str]:
        project = f"--project={shlex.quote(self.project)}"
        commands: list[str] = []
        if self.jwks is not None:
            commands.append(f"cat > {JWKS_FILE} <<'EOF'\n{self.jwks}\nEOF")
        commands.append(
            _CONTINUATION.join(
                [
                    f"gcloud iam workload-identity-pools create {self.pool}",
                    project,
                    "--location=global",
                    "--display-name=Kubernetes pull secrets",
                ]
            )
        )
        provider = [
            f"gcloud iam workload-identity-pools providers create-oidc {self.provider}",
            project,
            "--location=global",
            f"--workload-identity-pool={self.pool}",
            f"--issuer-uri={shlex.quote(self.issuer)}",
            f"--allowed-audiences={shlex.quote(self.audience)}",
            "--attribute-mapping=google.subject=assertion.sub",
            f"--attribute-condition={shlex.quote(self.condition)}",
        ]
        if self.jwks is not None:
            provider.append(f"--jwk-json-path={JWKS_FILE}")
        commands.append(_CONTINUATION.join(provider))
        for subject in self.subjects:
            member = f"--member={shlex.quote(self.principal(subject))}"
            if self.service_account is not None:
                commands.append(
                    _CONTINUATION.join(
                        [
                            "gcloud iam service-accounts add-iam-policy-binding "
                            + shlex.quote(self.service_account),
                            project,
                            f"--role={WORKLOAD_IDENTITY_USER}",
                            member,
                        ]
                    )
                )
            else:
                commands.append(
                    _CONTINUATION.join(
                        [
                            "gcloud artifacts repositories add-iam-policy-binding "
                            + shlex.quote(self.repository),
                            project,
                            f"--location={shlex.quote(self.location)}",
                            f"--role={READER_ROLE}",
                            member,
                        ]
                    )
                )
        return commands

    def script(self) -> str:
        return "\n\n".join(self.commands())


def plan_gcp(
    *,
    issuer: str,
    issuer_class: IssuerClass,
    jwks: Mapping[str, object],
    targets: Sequence[tuple[str, str]],
    pool: str,
    provider: str = "kubernetes",
    project: str | None = None,
    project_number: str | None = None,
    service_account: str | None = None,
    repository: str = "<REPOSITORY>",
    location: str = "<LOCATION>",
    audience: str = DEFAULT_AUDIENCE,
    embed_keys: bool = False,
) -> GcpPlan:
    """The pool, its provider for `issuer` admitting the `(namespace, service_account)`
    targets' tokens with `audience`, and each target's binding. The keys are given to Google
    when the issuer is not public (or `embed_keys`). Raises ValueError for a bad name."""
    check_pool_id(pool)
    check_pool_id(provider, what="provider")
    if project_number is not None and not project_number.isdigit():
        raise ValueError(f"{project_number!r} is not a project number (digits only)")
    if service_account is not None and not _EMAIL.fullmatch(service_account):
        raise ValueError(
            f"{service_account!r} is not a Google service account's email "
            "(<name>@<project>.iam.gserviceaccount.com)"
        )
    if not audience.strip() or any(c.isspace() for c in audience):
        raise ValueError("the audience must be one word")
    subjects: list[str] = []
    for namespace, name in targets:
        check_target(namespace=namespace, service_account=name)
        subjects.append(service_account_subject(namespace, name))
    keys = compact_jwks(jwks) if embed_keys or not issuer_class.public else None
    return GcpPlan(
        issuer=issuer,
        project=project or PROJECT_ID_PLACEHOLDER,
        project_number=project_number or PROJECT_NUMBER_PLACEHOLDER,
        pool=pool,
        provider=provider,
        audience=audience,
        subjects=tuple(dict.fromkeys(subjects)),
        jwks=keys,
        service_account=service_account,
        repository=repository,
        location=location,
    )
