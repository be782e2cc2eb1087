"""``GcpFront``: one HTTPS endpoint answering Google STS and IAM Credentials.

``POST /v1/token`` is STS; ``POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken``
is IAM Credentials (both hosts' paths are distinct, so one endpoint serves both, and a
client's ``sts_endpoint`` and ``iamcredentials_endpoint`` may both name it). Each answer,
error or not, has its API's shape. Faults act on these calls only; ``/gar/token`` (the
registry's realm) and ``/healthz`` stay up.

Admin routes (on the admin listener, behind its bearer token):

    POST /admin/gcp/providers                   ``{"name", "issuer", "jwks"?,
                                                "allowed_audiences"?, "allowed_subjects"?}``
    POST /admin/gcp/providers/subjects          ``{"name", "subject"}``: one more allowed
    POST /admin/gcp/service-accounts            ``{"email"}``
    POST /admin/gcp/bindings                    ``{"email", "member", "role"}``
    GET  /admin/gcp/stats, POST /admin/gcp/stats/reset
    GET  /admin/gcp/tokens                      every access token issued
    GET  /admin/gcp/faults, POST /admin/gcp/faults  (``cloud.ApiFault``)
    GET  /admin/gcp/config, POST /admin/gcp/config  (``ledger.GcpConfig``)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devstack.tokenservice.cloud import ApiFault, ApiFaults, parse_api_fault
from devstack.tokenservice.gcp.directory import (
    IMPERSONATING_ROLES,
    PROVIDER_NAME,
    SERVICE_ACCOUNT_EMAIL,
    Directory,
    OidcProvider,
)
from devstack.tokenservice.gcp.errors import GoogleError, api_error, api_response, oauth_response
from devstack.tokenservice.gcp.iamcredentials import GenerateAccessToken
from devstack.tokenservice.gcp.ledger import APIS, IAM, STS, GcpConfig, GcpStats, Ledger
from devstack.tokenservice.gcp.registry import GarRegistryTokens
from devstack.tokenservice.gcp.sts import TokenExchange, read_fields
from devstack.tokenservice.identities import parse_jwks
from devstack.tokenservice.oidc import IssuerKeys
from devstack.tokenservice.protocol import as_str_list, bad_request, not_found, optional_str
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.wire import bearer, healthz, json_object

log = logging.getLogger("devstack.tokenservice.gcp")

#: What each fault mode answers, per API: (status, code, message).
_FAULT_ANSWERS = {
    "throttle": {STS: (429, "rate_limit_exceeded", "Quota exceeded."),
                 IAM: (429, "RESOURCE_EXHAUSTED", "Quota exceeded.")},
    "unavailable": {STS: (503, "temporarily_unavailable", "The service is unavailable."),
                    IAM: (503, "UNAVAILABLE", "The service is currently unavailable.")},
    "server_error": {STS: (500, "server_error", "Internal error."),
                     IAM: (500, "INTERNAL", "Internal error encountered.")},
}  # fmt: skip
_GENERATE_SUFFIX = ":generateAccessToken"


class GcpFront:
    def __init__(self, state: ServiceState, issuer_keys: IssuerKeys) -> None:
        self.directory = Directory()
        self.ledger = Ledger()
        self.config = GcpConfig()
        self.faults = ApiFaults()
        self.stats = GcpStats()
        self._sts = TokenExchange(
            directory=self.directory,
            ledger=self.ledger,
            issuer_keys=issuer_keys,
            config=lambda: self.config,
            issued=state.issued,
        )
        self._iam = GenerateAccessToken(
            directory=self.directory,
            ledger=self.ledger,
            config=lambda: self.config,
            issued=state.issued,
        )
        self._registry = GarRegistryTokens(state, self.ledger)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/token", self.handle_token)
        app.router.add_post("/v1/projects/-/serviceAccounts/{target}", self.handle_generate)
        app.router.add_get("/healthz", healthz)
        self._registry.add_routes(app)
        return app

    # -- the APIs

    async def handle_token(self, request: web.Request) -> web.Response:
        async def call(on_identity: Callable[[str], None]) -> web.Response:
            return await self._sts.exchange(await read_fields(request), on_identity)

        return await self._answer(STS, call)

    async def handle_generate(self, request: web.Request) -> web.Response:
        target = request.match_info["target"]
        email = target.removesuffix(_GENERATE_SUFFIX)

        async def call(on_identity: Callable[[str], None]) -> web.Response:
            if not target.endswith(_GENERATE_SUFFIX):
                raise api_error(404, f"Method {target} not found.")
            return await self._iam.generate(email, bearer(request), await request.read())

        return await self._answer(IAM, call, identity=email)

    async def _answer(
        self,
        api: str,
        call: Callable[[Callable[[str], None]], Awaitable[web.Response]],
        *,
        identity: str | None = None,
    ) -> web.Response:
        """``call``'s answer, counted per identity (the service account, known from the path,
        or the provider, known once STS has read the request)."""
        self.ledger.forget_expired()
        identities = [identity] if identity else []
        try:
            fault = self.faults.take(api)
            if fault is not None:
                await self._act_out(fault, api)
            response = await call(identities.append)
        except GoogleError as e:
            self.stats.record(api, identities[0] if identities else None, ok=False)
            log.info("%s answered %s %s: %s", api, e.status, e.code, e.message)
            return oauth_response(e) if api == STS else api_response(e)
        self.stats.record(api, identities[0] if identities else None, ok=True)
        return response

    async def _act_out(self, fault: ApiFault, api: str) -> None:
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
            return
        status, code, message = _FAULT_ANSWERS[fault.mode][api]
        raise GoogleError(status, code, message)

    # -- admin

    def add_admin_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_post("/admin/gcp/providers", self.handle_create_provider)
        router.add_post("/admin/gcp/providers/subjects", self.handle_allow_subject)
        router.add_post("/admin/gcp/service-accounts", self.handle_create_service_account)
        router.add_post("/admin/gcp/bindings", self.handle_add_binding)
        router.add_get("/admin/gcp/stats", self.handle_stats)
        router.add_post("/admin/gcp/stats/reset", self.handle_reset_stats)
        router.add_get("/admin/gcp/tokens", self.handle_tokens)
        router.add_get("/admin/gcp/faults", self.handle_get_faults)
        router.add_post("/admin/gcp/faults", self.handle_set_fault)
        router.add_get("/admin/gcp/config", self.handle_get_config)
        router.add_post("/admin/gcp/config", self.handle_set_config)

    async def handle_create_provider(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        name, issuer = optional_str(body, "name"), optional_str(body, "issuer")
        if name is None or PROVIDER_NAME.fullmatch(name) is None:
            raise bad_request(
                "name must be projects/<number>/locations/global/workloadIdentityPools/<pool>/"
                "providers/<id>"
            )
        if issuer is None or not issuer.startswith("https://"):
            raise bad_request("issuer must be an https URL")
        subjects = body.get("allowed_subjects")
        provider = OidcProvider(
            name=name,
            issuer=issuer,
            jwks=parse_jwks(body["jwks"]) if body.get("jwks") is not None else None,
            allowed_audiences=tuple(as_str_list(body.get("allowed_audiences"))),
            allowed_subjects=None if subjects is None else tuple(as_str_list(subjects)),
        )
        self.directory.providers[name] = provider
        return web.json_response(_provider_json(provider))

    async def handle_allow_subject(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        name, subject = optional_str(body, "name"), optional_str(body, "subject")
        provider = self.directory.providers.get(name or "")
        if provider is None:
            raise not_found(f"no provider {name!r}")
        if not subject:
            raise bad_request("subject is required")
        allowed = (*(provider.allowed_subjects or ()), subject)
        provider = dataclasses.replace(provider, allowed_subjects=allowed)
        self.directory.providers[provider.name] = provider
        return web.json_response(_provider_json(provider))

    async def handle_create_service_account(self, request: web.Request) -> web.Response:
        email = optional_str(await json_object(request), "email")
        if email is None or SERVICE_ACCOUNT_EMAIL.fullmatch(email) is None:
            raise bad_request("email must be <name>@<project>.iam.gserviceaccount.com")
        self.directory.service_accounts.setdefault(email, set())
        return web.json_response({"email": email})

    async def handle_add_binding(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        email, member = optional_str(body, "email"), optional_str(body, "member")
        role = optional_str(body, "role")
        if email not in self.directory.service_accounts:
            raise not_found(f"no service account {email!r}")
        if not member or not member.startswith(("principal://", "principalSet://")):
            raise bad_request("member must be a principal:// or principalSet:// identifier")
        if role not in IMPERSONATING_ROLES:
            raise bad_request(f"role must be one of {', '.join(sorted(IMPERSONATING_ROLES))}")
        assert email is not None
        self.directory.service_accounts[email].add((member, role))
        bindings = sorted(self.directory.service_accounts[email])
        return web.json_response({"email": email, "bindings": [list(b) for b in bindings]})

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def handle_reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.to_json())

    async def handle_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"items": [t.to_json() for t in self.ledger.all()]})

    async def handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def handle_set_fault(self, request: web.Request) -> web.Response:
        fault = parse_api_fault(await json_object(request), APIS)
        self.faults.set(fault)
        log.info("Google fault set to %s", fault.to_json() if fault else "none")
        return web.json_response(self.faults.to_json())

    async def handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.to_json())

    async def handle_set_config(self, request: web.Request) -> web.Response:
        self.config = self.config.updated(await json_object(request))
        log.info("Google config set to %s", self.config.to_json())
        return web.json_response(self.config.to_json())


def _provider_json(provider: OidcProvider) -> dict[str, Any]:
    return {
        "name": provider.name,
        "issuer": provider.issuer,
        "allowed_audiences": list(provider.audiences),
        "allowed_subjects": (
            None if provider.allowed_subjects is None else list(provider.allowed_subjects)
        ),
    }
