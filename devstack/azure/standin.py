"""``AzureStandIn``: what tests and the demo see of the local Azure (``LocalStack.azure``).

One https ``endpoint`` answers as Microsoft Entra ID (``<endpoint>/<tenant>/oauth2/v2.0/token``,
with the tenant's discovery) and as the registries' OAuth endpoints (``/oauth2/exchange``,
``/oauth2/token``); the registry ``registry_host`` (``<name>.azurecr.io:<port>``) is a
distribution registry holding the test image, whose token realm is that ``/oauth2/token``.
Apps, federated credentials and AcrPull role assignments are created through the token
service's admin API, as are faults, counters and lifetimes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from devstack.registry import Registry
from devstack.tokenservice import TokenServiceAdmin
from devstack.tokenservice.azure.directory import TENANT

#: The registry's name: ``<name>.azurecr.io``.
REGISTRY_NAME: Final = "psustandin"
#: The audience Entra expects of a federated client assertion.
AUDIENCE: Final = "api://AzureADTokenExchange"


def acr_host_name(name: str = REGISTRY_NAME) -> str:
    return f"{name}.azurecr.io"


class AzureStandIn:
    def __init__(
        self, *, endpoint: str, registry: Registry, admin: TokenServiceAdmin, issuer: str
    ) -> None:
        self.endpoint = endpoint
        self.registry = registry
        self.tenant = TENANT
        #: The cluster's service-account issuer, which federated credentials name by default.
        self.issuer = issuer
        self._admin = admin

    @property
    def registry_host(self) -> str:
        """``<name>.azurecr.io:<port>``: resolves to 127.0.0.1 only while a node runs (it adds
        the line to /etc/hosts); ``registry.address`` always does."""
        return self.registry.host

    @property
    def image(self) -> str:
        return self.registry.image

    @property
    def authority_host(self) -> str:
        """What an SDK or the provider takes as Entra's authority host."""
        return self.endpoint

    def register_cluster(self, jwks: Mapping[str, Any]) -> None:
        """The cluster's keys, given to the stand-in, which cannot reach the issuer's discovery
        (Entra must, on a real cluster: its issuer must be public)."""
        self._admin.set_azure_issuer_keys(self.issuer, jwks)

    def create_app(self, name: str, *, tenant: str | None = None) -> str:
        """An app registration (or a user-assigned managed identity: to Entra both are a client
        ID); returns its client ID."""
        return str(self._admin.create_azure_app(name, tenant=tenant)["client_id"])

    def add_federated_credential(
        self,
        client_id: str,
        *,
        subject: str,
        issuer: str | None = None,
        audience: str = AUDIENCE,
    ) -> None:
        """``az identity federated-credential create`` / ``az ad app federated-credential
        create``: the app trusts tokens of ``issuer`` (the cluster's) for ``subject``."""
        self._admin.add_azure_federated_credential(
            client_id, issuer=issuer or self.issuer, subject=subject, audience=audience
        )

    def assign_acr_pull(self, client_id: str, registry: str | None = None) -> None:
        """``az role assignment create --role AcrPull``: on the stand-in's registry by
        default."""
        self._admin.assign_acr_pull(client_id, registry or self.registry_host)

    def create_puller(self, name: str, *, subject: str, **federated: Any) -> str:
        """An app with a federated credential for ``subject`` and AcrPull on the registry."""
        client_id = self.create_app(name)
        self.add_federated_credential(client_id, subject=subject, **federated)
        self.assign_acr_pull(client_id)
        return client_id

    # -- knobs and counters

    def admin(self) -> TokenServiceAdmin:
        return self._admin

    def stats(self) -> dict[str, Any]:
        return self._admin.azure_stats()

    def reset_stats(self) -> None:
        """Zero the counters of ``stats`` (``token`` and ``exchange``, per client ID)."""
        self._admin.reset_azure_stats()

    def tokens(self, client_id: str, outcome: str = "ok") -> int:
        """Entra token requests of ``client_id`` with ``outcome`` (ok or error)."""
        return int(self.stats()["token"].get(client_id, {}).get(outcome, 0))

    def exchanges(self, client_id: str, outcome: str = "ok") -> int:
        """Registry exchanges with access tokens of ``client_id`` with ``outcome``."""
        return int(self.stats()["exchange"].get(client_id, {}).get(outcome, 0))

    def refresh_tokens(self) -> list[dict[str, Any]]:
        return self._admin.azure_refresh_tokens()

    def set_fault(
        self, mode: str, *, api: str | None = None, count: int | None = None, delay: float = 5.0
    ) -> None:
        self._admin.set_azure_fault(mode, api=api, count=count, delay=delay)

    def clear_faults(self) -> None:
        self._admin.set_azure_fault("none")

    def set_lifetimes(
        self, *, access_token: int | None = None, refresh_token: int | None = None
    ) -> None:
        """Seconds the next tokens live (0: Azure's defaults, 1 h and 3 h)."""
        self._admin.set_azure_lifetimes(access_token=access_token, refresh_token=refresh_token)

    def section(self) -> dict[str, Any]:
        """The controller's provider section for the stand-in."""
        return {"kind": "acr", "authority_host": self.endpoint, "acr_endpoint": self.endpoint}

    def env(self) -> dict[str, str]:
        """For a shell or process that uses the stand-in (the stack's ``env()`` holds it)."""
        return {
            "PSU_AZURE_ENDPOINT": self.endpoint,
            "PSU_AZURE_TENANT": self.tenant,
            "PSU_ACR_REGISTRY": self.registry_host,
            "PSU_ACR_TEST_IMAGE": self.image,
        }
