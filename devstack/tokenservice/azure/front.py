"""``AzureFront``: one HTTPS listener answering as Entra ID and as the registries' OAuth
endpoints (see ``entra`` and ``acr``). Faults act on the token and exchange calls only; the
registries' realm (``/oauth2/token``) and ``/healthz`` stay up.

Admin routes (on the admin listener, behind its bearer token):

    POST /admin/azure/apps                          ``{"name", "tenant"?}``: a new app
    GET  /admin/azure/apps
    POST /admin/azure/apps/{client_id}/federated-credentials  ``{"issuer","subject","audience"}``
    POST /admin/azure/role-assignments              ``{"client_id", "registry"}``: AcrPull
    POST /admin/azure/issuers                       ``{"issuer", "jwks"}``: an issuer's keys,
                                                    for one whose discovery is unreachable
    GET  /admin/azure/stats, POST /admin/azure/stats/reset
    GET  /admin/azure/refresh-tokens                every refresh token issued
    GET  /admin/azure/faults, POST /admin/azure/faults  (``cloud.ApiFault``)
    GET  /admin/azure/config, POST /admin/azure/config  (``directory.AzureConfig``)
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from devstack.tokenservice.azure.acr import AcrError, AcrFront, registry_of
from devstack.tokenservice.azure.directory import (
    ACR,
    APIS,
    ENTRA,
    TENANT,
    AzureConfig,
    AzureStats,
    Directory,
    FederatedCredential,
    Ledger,
)
from devstack.tokenservice.azure.entra import EntraError, EntraFront, discovery
from devstack.tokenservice.cloud import ApiFaults, parse_api_fault
from devstack.tokenservice.identities import parse_jwks
from devstack.tokenservice.oidc import IssuerKeys
from devstack.tokenservice.protocol import bad_request, not_found, optional_str
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.wire import healthz, json_object

log = logging.getLogger("devstack.tokenservice.azure")


class AzureFront:
    def __init__(self, state: ServiceState, issuer_keys: IssuerKeys) -> None:
        self.directory = Directory()
        self.ledger = Ledger()
        self.config = AzureConfig()
        self.faults = ApiFaults()
        self.stats = AzureStats()
        self._entra = EntraFront(
            directory=self.directory,
            ledger=self.ledger,
            issuer_keys=issuer_keys,
            config=lambda: self.config,
            issued=state.issued,
        )
        self._acr = AcrFront(
            state=state, directory=self.directory, ledger=self.ledger, config=lambda: self.config
        )

    def app(self) -> web.Application:
        app = web.Application()
        router = app.router
        router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.handle_discovery)
        router.add_post("/{tenant}/oauth2/v2.0/token", self.handle_token)
        router.add_post("/oauth2/exchange", self.handle_exchange)
        router.add_get("/oauth2/token", self._acr.token)
        router.add_post("/oauth2/token", self._acr.token)
        router.add_get("/healthz", healthz)
        return app

    # -- the APIs

    async def handle_discovery(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if not any(app.tenant == tenant for app in self.directory.apps.values()) and (
            tenant != TENANT
        ):
            return EntraError(400, "invalid_tenant", 90002,
                              f"Tenant '{tenant}' not found.").response()  # fmt: skip
        return web.json_response(discovery(str(request.url.origin()), tenant))

    async def handle_token(self, request: web.Request) -> web.Response:
        clients: list[str] = []
        try:
            await self._fault(ENTRA)
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            response = await self._entra.token(request.match_info["tenant"], form, clients.append)
        except EntraError as e:
            self.stats.record(ENTRA, clients[0] if clients else None, ok=False)
            log.info("Entra answered %s AADSTS%s", e.error, e.code)
            return e.response()
        self.stats.record(ENTRA, clients[0] if clients else None, ok=True)
        return response

    async def handle_exchange(self, request: web.Request) -> web.Response:
        clients: list[str] = []
        try:
            await self._fault(ACR)
            self.ledger.forget_expired()
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            response = self._acr.exchange(form, clients.append)
        except AcrError as e:
            self.stats.record(ACR, clients[0] if clients else None, ok=False)
            log.info("ACR exchange answered %s %s", e.status, e.code)
            return e.response()
        self.stats.record(ACR, clients[0] if clients else None, ok=True)
        return response

    async def _fault(self, api: str) -> None:
        fault = self.faults.take(api)
        if fault is None:
            return
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
            return
        if api == ENTRA:
            raise {
                "throttle": EntraError(429, "temporarily_unavailable", 90055,
                                       "TenantThrottlingError: There are too many incoming "
                                       "requests. This request was throttled."),
                "unavailable": EntraError(503, "temporarily_unavailable", 90033,
                                          "A transient error has occurred. Please try again."),
                "server_error": EntraError(500, "server_error", 90100,
                                           "An internal server error occurred."),
            }[fault.mode]  # fmt: skip
        raise {
            "throttle": AcrError(429, "TOOMANYREQUESTS", "too many requests"),
            "unavailable": AcrError(503, "UNAVAILABLE", "service unavailable"),
            "server_error": AcrError(500, "UNKNOWN", "internal error"),
        }[fault.mode]

    # -- admin

    def add_admin_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/admin/azure/apps", self.handle_list_apps)
        router.add_post("/admin/azure/apps", self.handle_create_app)
        router.add_post(
            "/admin/azure/apps/{client_id}/federated-credentials", self.handle_add_federated
        )
        router.add_post("/admin/azure/role-assignments", self.handle_assign)
        router.add_post("/admin/azure/issuers", self.handle_set_issuer_keys)
        router.add_get("/admin/azure/stats", self.handle_stats)
        router.add_post("/admin/azure/stats/reset", self.handle_reset_stats)
        router.add_get("/admin/azure/refresh-tokens", self.handle_refresh_tokens)
        router.add_get("/admin/azure/faults", self.handle_get_faults)
        router.add_post("/admin/azure/faults", self.handle_set_fault)
        router.add_get("/admin/azure/config", self.handle_get_config)
        router.add_post("/admin/azure/config", self.handle_set_config)

    async def handle_list_apps(self, request: web.Request) -> web.Response:
        return web.json_response({"items": [a.to_json() for a in self.directory.apps.values()]})

    async def handle_create_app(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        name = optional_str(body, "name")
        if not name:
            raise bad_request("name is required")
        app = self.directory.create_app(name=name, tenant=optional_str(body, "tenant") or TENANT)
        return web.json_response(app.to_json(), status=201)

    async def handle_add_federated(self, request: web.Request) -> web.Response:
        client_id = request.match_info["client_id"]
        if client_id not in self.directory.apps:
            raise not_found(f"no app {client_id}")
        body = await json_object(request)
        fields = {k: optional_str(body, k) for k in ("issuer", "subject", "audience")}
        if not all(fields.values()):
            raise bad_request("issuer, subject and audience are required")
        credential = FederatedCredential(
            issuer=fields["issuer"] or "",
            subject=fields["subject"] or "",
            audience=fields["audience"] or "",
        )
        app = self.directory.add_federated_credential(client_id, credential)
        return web.json_response(app.to_json(), status=201)

    async def handle_assign(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        client_id, registry = optional_str(body, "client_id"), optional_str(body, "registry")
        if not client_id or not registry:
            raise bad_request("client_id and registry are required")
        if client_id not in self.directory.apps:
            raise not_found(f"no app {client_id}")
        try:
            service = registry_of(registry)
        except AcrError as e:
            raise bad_request(e.message) from None
        self.directory.pullers.add((client_id, service))
        return web.json_response({"client_id": client_id, "registry": service}, status=201)

    async def handle_set_issuer_keys(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        issuer = optional_str(body, "issuer")
        if issuer is None or "jwks" not in body:
            raise bad_request("issuer and jwks are required")
        self.directory.issuer_keys[issuer] = parse_jwks(body["jwks"])
        return web.json_response({"issuer": issuer})

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def handle_reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.to_json())

    async def handle_refresh_tokens(self, request: web.Request) -> web.Response:
        items = [r.to_json() for r in self.ledger.refresh_tokens.all()]
        return web.json_response({"items": items})

    async def handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def handle_set_fault(self, request: web.Request) -> web.Response:
        self.faults.set(parse_api_fault(await json_object(request), APIS))
        return web.json_response(self.faults.to_json())

    async def handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.to_json())

    async def handle_set_config(self, request: web.Request) -> web.Response:
        self.config = self.config.updated(await json_object(request))
        return web.json_response(self.config.to_json())
