"""``GcpStandIn``: what tests and the demo see of the local Google (``LocalStack.gcp``).

One https ``endpoint`` answers STS (``/v1/token``) and IAM Credentials
(``/v1/projects/-/serviceAccounts/<email>:generateAccessToken``) as Google does (the token
service's Google front); the Artifact Registry of ``location`` is a distribution registry at
``registry_host`` (``<location>-docker.pkg.dev:<port>``) holding the test image. Pools'
providers, service accounts and IAM bindings are created through the admin API, as an admin
would with gcloud; faults, counters and lifetimes too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from devstack.registry import Registry
from devstack.tokenservice import TokenServiceAdmin

PROJECT_NUMBER: Final = "123456789012"
PROJECT: Final = "psu-stand-in"
LOCATION: Final = "us"
POOL: Final = "cluster-pool"
WORKLOAD_IDENTITY_USER: Final = "roles/iam.workloadIdentityUser"


def gar_host_name(location: str = LOCATION) -> str:
    return f"{location}-docker.pkg.dev"


class GcpStandIn:
    def __init__(
        self,
        *,
        endpoint: str,
        registry: Registry,
        ca_file: Path,
        admin: TokenServiceAdmin,
        issuer: str,
        project_number: str = PROJECT_NUMBER,
        project: str = PROJECT,
    ) -> None:
        self.endpoint = endpoint
        self.registry = registry
        self.ca_file = ca_file
        #: The cluster's service-account issuer, the default of ``create_pool_provider``.
        self.issuer = issuer
        self.project_number = project_number
        self.project = project
        self._admin = admin
        self._jwks: Mapping[str, Any] | None = None

    @property
    def registry_host(self) -> str:
        """``us-docker.pkg.dev:<port>``: resolves to 127.0.0.1 only while a node runs (it adds
        the line to /etc/hosts); ``registry.address`` always does."""
        return self.registry.host

    @property
    def image(self) -> str:
        return self.registry.image

    # -- IAM, as an admin with gcloud would

    def provider_name(self, provider: str, *, pool: str = POOL) -> str:
        return (
            f"projects/{self.project_number}/locations/global/workloadIdentityPools/{pool}/"
            f"providers/{provider}"
        )

    def provider_audience(self, name: str) -> str:
        """The token audience Google expects by default: the provider's full name."""
        return f"https://iam.googleapis.com/{name}"

    def principal(self, subject: str, *, pool: str = POOL) -> str:
        return (
            f"principal://iam.googleapis.com/projects/{self.project_number}/locations/global/"
            f"workloadIdentityPools/{pool}/subject/{subject}"
        )

    def register_cluster(self, jwks: Mapping[str, Any]) -> None:
        """The cluster's keys, given to each provider created from now on (gcloud's
        ``--jwk-json-path``: Google cannot reach a private issuer's discovery)."""
        self._jwks = dict(jwks)

    def create_pool_provider(
        self,
        provider: str,
        *,
        pool: str = POOL,
        issuer: str | None = None,
        allowed_audiences: Sequence[str] = (),
        allowed_subjects: Sequence[str] | None = None,
        jwks: Mapping[str, Any] | None = None,
    ) -> str:
        """An OIDC provider of ``pool`` for ``issuer`` (the cluster's, with its keys, by
        default), mapping ``google.subject=assertion.sub``, with the attribute condition
        ``assertion.sub in allowed_subjects`` (None: none); returns its resource name."""
        name = self.provider_name(provider, pool=pool)
        keys = jwks if jwks is not None else self._jwks
        self._admin.call(
            "POST",
            "/admin/gcp/providers",
            {
                "name": name,
                "issuer": issuer or self.issuer,
                "jwks": dict(keys) if keys is not None else None,
                "allowed_audiences": list(allowed_audiences),
                "allowed_subjects": None if allowed_subjects is None else list(allowed_subjects),
            },
        )
        return name

    def allow_subject(self, provider_name: str, subject: str) -> None:
        """One more ``assertion.sub`` the provider's attribute condition accepts."""
        self._admin.call(
            "POST", "/admin/gcp/providers/subjects", {"name": provider_name, "subject": subject}
        )

    def create_service_account(self, name: str) -> str:
        """``<name>@<project>.iam.gserviceaccount.com``; returns the email."""
        email = f"{name}@{self.project}.iam.gserviceaccount.com"
        self._admin.call("POST", "/admin/gcp/service-accounts", {"email": email})
        return email

    def bind(self, email: str, member: str, role: str = WORKLOAD_IDENTITY_USER) -> None:
        """An IAM binding on the service account (``member``: ``principal://...`` or
        ``principalSet://.../*``)."""
        self._admin.call(
            "POST", "/admin/gcp/bindings", {"email": email, "member": member, "role": role}
        )

    # -- the front's knobs and counters

    def stats(self) -> dict[str, Any]:
        """``token_exchange`` (per provider) and ``generate_access_token`` (per service
        account): ``{"ok": n, "error": n}``."""
        stats: dict[str, Any] = self._admin.call("GET", "/admin/gcp/stats")
        return stats

    def reset_stats(self) -> None:
        """Zero the counters of ``stats``."""
        self._admin.call("POST", "/admin/gcp/stats/reset")

    def exchanges(self, provider_name: str, outcome: str = "ok") -> int:
        return int(self.stats()["token_exchange"].get(provider_name, {}).get(outcome, 0))

    def generations(self, email: str, outcome: str = "ok") -> int:
        return int(self.stats()["generate_access_token"].get(email, {}).get(outcome, 0))

    def tokens(self) -> list[dict[str, Any]]:
        """Every access token issued: ``token``, ``principal``, ``provider``,
        ``service_account`` (None: federated), ``expires_at``."""
        items: list[dict[str, Any]] = self._admin.call("GET", "/admin/gcp/tokens")["items"]
        return items

    def set_fault(
        self, mode: str, *, api: str | None = None, count: int | None = None, delay: float = 5.0
    ) -> None:
        """``throttle``, ``unavailable``, ``server_error`` or ``slow`` for the next ``count``
        calls (None: until cleared) to ``api`` (``sts``, ``iamcredentials``; None: both)."""
        self._admin.call(
            "POST", "/admin/gcp/faults", {"mode": mode, "api": api, "count": count, "delay": delay}
        )

    def clear_faults(self) -> None:
        self.set_fault("none")

    def set_lifetimes(
        self, *, federated: int | None = None, access_token: int | None = None
    ) -> None:
        """Caps below Google's hour on the tokens issued from now on (None: no cap)."""
        self._admin.call(
            "POST",
            "/admin/gcp/config",
            {"federated_lifetime_cap": federated, "access_token_lifetime_cap": access_token},
        )

    def env(self) -> dict[str, str]:
        """For a shell or process that uses the stand-in (the stack's ``env()`` holds it)."""
        return {
            "PSU_GCP_ENDPOINT": self.endpoint,
            "PSU_GAR_REGISTRY": self.registry_host,
            "PSU_GAR_TEST_IMAGE": self.image,
        }
