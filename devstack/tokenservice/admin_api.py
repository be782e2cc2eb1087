"""The admin listener's API, behind a bearer token; ``client.TokenServiceAdmin`` speaks it.

    POST   /admin/identities             create (body: chainctl's fields, ``lifetime``)
    GET    /admin/identities[/{uid}]     list, or get one
    PATCH  /admin/identities/{uid}       change ``lifetime`` (null: the service's again)
    DELETE /admin/identities/{uid}
    GET    /admin/stats, POST /admin/stats/reset
    GET    /admin/issued                 every token issued (for leak scans)
    GET    /admin/faults, POST /admin/faults
    GET    /admin/config, POST /admin/config          ``lifetime``, ``error_codes``
    POST   /admin/keys/rotate            new STS signing key (``keep_previous``)
    POST   /admin/tokens                 mint an STS token with the claims ordered

Its errors always carry string codes: the numeric switch is for the STS's clients only.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler

from devstack.tokenservice.faults import Fault, parse_fault
from devstack.tokenservice.identities import Identity, parse_identity, update_identity
from devstack.tokenservice.listeners import Listener
from devstack.tokenservice.minting import mint_claims
from devstack.tokenservice.protocol import bad_request, not_found, unauthenticated, unknown_fields
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.wire import bearer, json_object

log = logging.getLogger("devstack.tokenservice")


class AdminApi:
    def __init__(self, state: ServiceState, *, sts: Listener) -> None:
        self._state = state
        self._sts = sts
        self._fault_expiry: asyncio.Task[None] | None = None

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_post("/admin/identities", self.handle_create_identity)
        router.add_get("/admin/identities", self.handle_list_identities)
        router.add_get("/admin/identities/{uid:.+}", self.handle_get_identity)
        router.add_patch("/admin/identities/{uid:.+}", self.handle_update_identity)
        router.add_delete("/admin/identities/{uid:.+}", self.handle_delete_identity)
        router.add_get("/admin/stats", self.handle_stats)
        router.add_post("/admin/stats/reset", self.handle_reset_stats)
        router.add_get("/admin/issued", self.handle_issued)
        router.add_get("/admin/faults", self.handle_get_faults)
        router.add_post("/admin/faults", self.handle_set_fault)
        router.add_get("/admin/config", self.handle_get_config)
        router.add_post("/admin/config", self.handle_set_config)
        router.add_post("/admin/keys/rotate", self.handle_rotate_keys)
        router.add_post("/admin/tokens", self.handle_mint_token)

    @web.middleware
    async def require_admin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/healthz":
            token = bearer(request) or ""
            if not hmac.compare_digest(token.encode(), self._state.settings.admin_token.encode()):
                raise unauthenticated("admin bearer token required")
        return await handler(request)

    async def close(self) -> None:
        if self._fault_expiry is not None:
            self._fault_expiry.cancel()

    # -- identities

    def _identity(self, request: web.Request) -> Identity:
        uid = request.match_info["uid"]
        identity = self._state.store.get(uid)
        if identity is None:
            raise not_found(f"identity {uid} not found")
        return identity

    async def handle_create_identity(self, request: web.Request) -> web.Response:
        store = self._state.store
        identity = parse_identity(await json_object(request), uid=store.new_uid())
        store.add(identity)
        log.info("created identity %s (%s)", identity.uid, identity.name)
        return web.json_response(identity.to_json(), status=HTTPStatus.CREATED)

    async def handle_list_identities(self, request: web.Request) -> web.Response:
        return web.json_response({"items": [i.to_json() for i in self._state.store.all()]})

    async def handle_get_identity(self, request: web.Request) -> web.Response:
        return web.json_response(self._identity(request).to_json())

    async def handle_update_identity(self, request: web.Request) -> web.Response:
        identity = update_identity(self._identity(request), await json_object(request))
        self._state.store.add(identity)
        log.info("updated identity %s: lifetime %s", identity.uid, identity.lifetime)
        return web.json_response(identity.to_json())

    async def handle_delete_identity(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if not self._state.store.remove(uid):
            raise not_found(f"identity {uid} not found")
        log.info("deleted identity %s", uid)
        return web.Response(status=HTTPStatus.NO_CONTENT)

    # -- what happened

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.stats.to_json())

    async def handle_reset_stats(self, request: web.Request) -> web.Response:
        self._state.stats.reset()
        return web.json_response(self._state.stats.to_json())

    async def handle_issued(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.issued.to_json())

    # -- faults and config

    async def handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.faults.to_json())

    async def handle_set_fault(self, request: web.Request) -> web.Response:
        await self.apply_fault(parse_fault(await json_object(request)))
        return web.json_response(self._state.faults.to_json())

    async def apply_fault(self, fault: Fault | None) -> None:
        if self._fault_expiry is not None:
            self._fault_expiry.cancel()
            self._fault_expiry = None
        self._state.faults.set(fault)
        log.info("fault set to %s", fault.to_json() if fault else "none")
        if fault is not None and fault.mode == "refuse":
            await self._sts.pause()
        else:
            await self._sts.resume()
        if fault is not None and fault.duration is not None:
            self._fault_expiry = asyncio.create_task(self._expire_fault(fault, fault.duration))

    async def _expire_fault(self, fault: Fault, after: float) -> None:
        await asyncio.sleep(after)
        # Detach first: apply_fault would otherwise cancel the task running it.
        self._fault_expiry = None
        if self._state.faults.current is fault:
            await self.apply_fault(None)

    async def handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.config.to_json())

    async def handle_set_config(self, request: web.Request) -> web.Response:
        self._state.config = self._state.config.updated(await json_object(request))
        log.info("config set to %s", self._state.config.to_json())
        return web.json_response(self._state.config.to_json())

    # -- keys and tokens

    async def handle_rotate_keys(self, request: web.Request) -> web.Response:
        body = await json_object(request) if request.can_read_body else {}
        unknown_fields(body, frozenset({"keep_previous"}))
        keep = body.get("keep_previous", True)
        if not isinstance(keep, bool):
            raise bad_request("keep_previous must be true or false")
        keys = self._state.sts_keys
        key = keys.rotate(keep_previous=keep)
        log.info(
            "STS signing key rotated to %s (previous keys %s)",
            key.kid,
            "kept" if keep else "dropped",
        )
        return web.json_response(
            {"kid": key.kid, "published": [k["kid"] for k in keys.jwks()["keys"]]}
        )

    async def handle_mint_token(self, request: web.Request) -> web.Response:
        state = self._state
        claims = mint_claims(
            await json_object(request),
            issuer=state.issuer_url,
            default_audience=state.settings.registry_audience,
            lifetime_for=lambda sub: state.lifetime_of(state.store.get(sub)),
            now=int(time.time()),
        )
        key = state.sts_keys.current
        try:
            token = key.sign(claims)
        except (TypeError, ValueError) as e:  # PyJWT refuses, e.g., a non-string iss
            raise bad_request(f"cannot sign these claims: {e}") from e
        state.stats.minted_tokens += 1
        state.issued.add("sts", token)
        return web.json_response({"token": token, "kid": key.kid}, status=HTTPStatus.CREATED)
