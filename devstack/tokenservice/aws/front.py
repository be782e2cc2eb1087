"""``AwsFront``: one HTTPS endpoint answering STS and ECR as AWS does, with moto behind it.

``POST /`` is ECR when ``X-Amz-Target`` names an ECR operation (JSON 1.1), and STS otherwise
(a form with ``Action``, the Query protocol, which ``GET /`` may carry in its URL too). Each
answer, error or not, has its API's shape. Faults act on these calls only; ``/ecr/token``
(the registries' realm) and ``/healthz`` stay up, as ECR's registries stay up while its API
throttles.

Admin routes (on the admin listener, behind its bearer token):

    GET  /admin/aws/stats, POST /admin/aws/stats/reset
    GET  /admin/aws/passwords                       every ECR password issued
    GET  /admin/aws/faults, POST /admin/aws/faults  (``cloud.ApiFault``)
    GET  /admin/aws/config, POST /admin/aws/config  (``ledger.AwsConfig``)
    POST /admin/aws/issuers                         ``{"issuer", "jwks"}``: an issuer's keys,
                                                    for one whose discovery is unreachable
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from devstack.tokenservice.aws.ecr_front import GET_AUTHORIZATION_TOKEN, TARGET_PREFIX, EcrFront
from devstack.tokenservice.aws.ecr_registry import EcrRegistryTokens
from devstack.tokenservice.aws.errors import AwsError, json_error, request_id, sts_error
from devstack.tokenservice.aws.ledger import (
    APIS,
    ECR,
    STS,
    AwsConfig,
    AwsStats,
    Ledger,
)
from devstack.tokenservice.aws.moto_backend import MotoBackend, MotoError
from devstack.tokenservice.aws.sigv4 import SignedRequest
from devstack.tokenservice.aws.sts_front import StsFront
from devstack.tokenservice.cloud import ApiFault, ApiFaults, parse_api_fault
from devstack.tokenservice.identities import parse_jwks
from devstack.tokenservice.oidc import IssuerKeys
from devstack.tokenservice.protocol import bad_request, optional_str
from devstack.tokenservice.settings import AwsSettings
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.wire import healthz, json_object

log = logging.getLogger("devstack.tokenservice.aws")

#: What each fault mode answers, per API: (code, message, status).
_FAULT_ANSWERS = {
    "throttle": {STS: ("Throttling", "Rate exceeded", 400),
                 ECR: ("ThrottlingException", "Rate exceeded", 400)},
    "unavailable": {STS: ("ServiceUnavailable", "Service unavailable", 503),
                    ECR: ("ServiceUnavailableException", "Service unavailable", 503)},
    "server_error": {STS: ("InternalFailure", "Internal failure", 500),
                     ECR: ("ServerException", "Internal failure", 500)},
}  # fmt: skip


class AwsFront:
    def __init__(self, state: ServiceState, settings: AwsSettings, issuer_keys: IssuerKeys) -> None:
        self.settings = settings
        self.ledger = Ledger()
        self.config = AwsConfig()
        self.faults = ApiFaults()
        self.stats = AwsStats()
        self._known_keys: dict[str, str] = {}
        self._moto = moto = MotoBackend(
            settings.moto_url,
            ca_file=str(settings.moto_ca) if settings.moto_ca else None,
            region=settings.region,
        )
        self._sts = StsFront(
            moto=moto,
            ledger=self.ledger,
            issuer_keys=issuer_keys,
            known_keys=self._known_keys,
            config=lambda: self.config,
            issued=state.issued,
        )
        self._ecr = EcrFront(
            moto=moto,
            ledger=self.ledger,
            config=lambda: self.config,
            registry_port=settings.registry_port,
            issued=state.issued,
        )
        self._registry = EcrRegistryTokens(state, self.ledger)

    def warm_up(self) -> asyncio.Task[None]:
        """Load boto3 in the background, once the service is up."""
        return asyncio.create_task(asyncio.to_thread(self._moto.warm_up))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self.handle_call)
        app.router.add_get("/", self.handle_call)  # the Query API takes its form in the URL too
        app.router.add_get("/healthz", healthz)
        self._registry.add_routes(app)
        return app

    # -- the API

    async def handle_call(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target")
        api = ECR if target is not None else STS
        rid = request_id()
        role_arn: list[str] = []
        try:
            response = await self._call(api, target, request, role_arn.append)
        except AwsError as e:
            self.stats.record(api, role_arn[0] if role_arn else None, ok=False)
            log.info("%s answered %s: %s", api, e.code, e.message)
            return json_error(e, rid) if api == ECR else sts_error(e, rid)
        self.stats.record(api, role_arn[0] if role_arn else None, ok=True)
        response.headers["x-amzn-RequestId"] = rid
        return response

    async def _call(
        self, api: str, target: str | None, request: web.Request, on_role: Callable[[str], None]
    ) -> web.Response:
        self.ledger.forget_expired()
        fault = self.faults.take(api)
        if fault is not None:
            await self._act_out(fault, api)
        body = await request.read()
        try:
            if api == ECR:
                if target != GET_AUTHORIZATION_TOKEN:
                    name = (target or "").removeprefix(TARGET_PREFIX)
                    raise AwsError("UnknownOperationException", f"{name} is not supported here")
                signed = SignedRequest(
                    method=request.method,
                    path_and_query=request.raw_path,
                    headers=dict(request.headers),
                    body=body,
                )
                return await self._ecr.get_authorization_token(signed, on_role)
            form = {**request.query, **(await request.post())}
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            if fields.get("Action") != "AssumeRoleWithWebIdentity":
                raise AwsError("InvalidAction", f"Could not find operation {fields.get('Action')}")
            if fields.get("RoleArn"):
                on_role(fields["RoleArn"])
            return await self._sts.assume(fields)
        except MotoError as e:
            log.exception("moto failed")
            code = "ServerException" if api == ECR else "InternalFailure"
            raise AwsError(code, f"the backend failed: {type(e).__name__}", 500) from None

    async def _act_out(self, fault: ApiFault, api: str) -> None:
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
            return
        code, message, status = _FAULT_ANSWERS[fault.mode][api]
        raise AwsError(code, message, status)

    # -- admin

    def add_admin_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/admin/aws/stats", self.handle_stats)
        router.add_post("/admin/aws/stats/reset", self.handle_reset_stats)
        router.add_get("/admin/aws/passwords", self.handle_passwords)
        router.add_get("/admin/aws/faults", self.handle_get_faults)
        router.add_post("/admin/aws/faults", self.handle_set_fault)
        router.add_get("/admin/aws/config", self.handle_get_config)
        router.add_post("/admin/aws/config", self.handle_set_config)
        router.add_post("/admin/aws/issuers", self.handle_set_issuer_keys)

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def handle_reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.to_json())

    async def handle_passwords(self, request: web.Request) -> web.Response:
        return web.json_response({"items": [p.to_json() for p in self.ledger.passwords.all()]})

    async def handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def handle_set_fault(self, request: web.Request) -> web.Response:
        fault = parse_api_fault(await json_object(request), APIS)
        self.faults.set(fault)
        log.info("AWS fault set to %s", fault.to_json() if fault else "none")
        return web.json_response(self.faults.to_json())

    async def handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.to_json())

    async def handle_set_config(self, request: web.Request) -> web.Response:
        self.config = self.config.updated(await json_object(request))
        log.info("AWS config set to %s", self.config.to_json())
        return web.json_response(self.config.to_json())

    async def handle_set_issuer_keys(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        issuer = optional_str(body, "issuer")
        if issuer is None or "jwks" not in body:
            raise bad_request("issuer and jwks are required")
        self._known_keys[issuer] = parse_jwks(body["jwks"])
        return web.json_response({"issuer": issuer})
