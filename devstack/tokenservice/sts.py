"""The STS listener's own endpoints: ``/sts/exchange`` and the OIDC discovery documents.

The exchange reads its fields from the query string (as the controller sends them) or a JSON
body (as Chainguard's SDK does), verifies the service-account token against the identity, and
answers ``{"token", "expiry"}``. ``/.well-known/openid-configuration`` names the issuer and the
``jwks_uri``, whose JWKS holds every key a client needs to verify the tokens. Faults act here:
an ``exchange`` fault on the exchange, a ``keys`` fault on the two discovery documents.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devstack.tokenservice.faults import EXCHANGE, KEYS, Fault
from devstack.tokenservice.identities import Identity
from devstack.tokenservice.minting import sts_claims
from devstack.tokenservice.oidc import verify_sa_token
from devstack.tokenservice.protocol import (
    REGISTRY_PULL,
    ApiError,
    JSONObject,
    as_str_list,
    bad_request,
    not_found,
    permission_denied,
    rfc3339,
    unauthenticated,
)
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.wire import api_error_response, bearer, error_response, json_object

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"


@dataclass(frozen=True)
class ExchangeRequest:
    bearer: str | None
    identity: str | None
    audiences: tuple[str, ...]


async def read_exchange_request(request: web.Request) -> ExchangeRequest:
    """Fields from the query string (as the controller sends them) or a JSON body (the SDK's)."""
    identity: Any = request.query.get("identity")
    audiences = as_str_list(request.query.getall("aud", []))
    if request.can_read_body:
        body = await json_object(request)
        identity = identity or body.get("identity")
        audiences += as_str_list(body.get("aud"))
    return ExchangeRequest(
        bearer=bearer(request),
        identity=identity if isinstance(identity, str) and identity else None,
        audiences=tuple(audiences),
    )


class StsApi:
    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/sts/exchange", self.handle_exchange)
        app.router.add_route("POST", "/sts/exchange", self.handle_exchange)
        app.router.add_get(DISCOVERY_PATH, self.handle_discovery)
        app.router.add_get(JWKS_PATH, self.handle_jwks)

    async def _faulty_answer(self, fault: Fault | None) -> web.Response | None:
        """What a fault answers instead of the real thing (after a ``slow`` fault's delay)."""
        if fault is None:
            return None
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
        if fault.mode == "status":
            codes = self._state.sts_error_codes()
            return error_response(fault.status, "injected fault", codes=codes)
        if fault.mode == "malformed":
            return web.Response(text="<html>not json", content_type="application/json")
        return None

    # -- exchange

    async def handle_exchange(self, request: web.Request) -> web.StreamResponse:
        state = self._state
        fault = state.faults.take(EXCHANGE)
        try:
            ask = await read_exchange_request(request)
        except ApiError as e:
            state.stats.record_exchange(None, ok=False)
            return api_error_response(e, codes=state.sts_error_codes())
        asking = ask.identity or ""
        state.stats.in_flight[asking] = state.stats.in_flight.get(asking, 0) + 1
        try:
            response, ok = await self._answer_exchange(ask, fault)
        finally:
            state.stats.in_flight[asking] -= 1
        state.stats.record_exchange(ask.identity, ok=ok)
        return response

    async def _answer_exchange(
        self, ask: ExchangeRequest, fault: Fault | None
    ) -> tuple[web.StreamResponse, bool]:
        answer = await self._faulty_answer(fault)
        if answer is not None:
            return answer, False
        mode = fault.mode if fault else None
        try:
            body = await self._exchange(ask, mode)
        except ApiError as e:
            return api_error_response(e, codes=self._state.sts_error_codes()), False
        return web.json_response(body), mode in (None, "slow")

    async def _exchange(self, ask: ExchangeRequest, mode: str | None) -> JSONObject:
        if ask.bearer is None:
            raise unauthenticated("missing bearer token")
        if ask.identity is None:
            raise bad_request("missing identity")
        if not ask.audiences:
            raise bad_request("missing aud")
        state = self._state
        identity = state.store.get(ask.identity)
        if identity is None:
            raise not_found(f"identity {ask.identity} not found")
        await verify_sa_token(
            ask.bearer, identity, state.issuer_keys, default_audience=state.settings.sa_audience
        )
        if REGISTRY_PULL not in identity.roles:
            raise permission_denied(f"identity {identity.uid} lacks role {REGISTRY_PULL}")
        return self._mint_exchange_token(identity, ask.audiences, mode)

    def _mint_exchange_token(
        self, identity: Identity, audiences: tuple[str, ...], mode: str | None
    ) -> JSONObject:
        state = self._state
        lifetime = state.lifetime_of(identity)
        now = int(time.time())
        if mode == "expired":
            # Far enough in the past that no client leeway can accept it.
            now -= lifetime + 120
        claims = sts_claims(
            issuer=state.issuer_url,
            sub=identity.uid,
            audiences=audiences,
            now=now,
            lifetime=lifetime,
        )
        exp: int = claims["exp"]
        if mode == "no_exp":
            del claims["exp"]
            token = state.sts_keys.current.sign(claims)
            state.issued.add("sts", token)
            return {"token": token}
        if mode == "garbage_token":
            token = f"not-a-jwt-{secrets.token_hex(16)}"
        else:
            token = state.sts_keys.current.sign(claims)
        state.issued.add("sts", token)
        return {"token": token, "expiry": rfc3339(exp)}

    # -- discovery

    async def handle_discovery(self, request: web.Request) -> web.Response:
        self._state.stats.discovery_fetches += 1
        return await self._keys_document(self._discovery)

    async def handle_jwks(self, request: web.Request) -> web.Response:
        self._state.stats.jwks_fetches += 1
        return await self._keys_document(self._state.sts_keys.jwks)

    async def _keys_document(self, document: Callable[[], JSONObject]) -> web.Response:
        answer = await self._faulty_answer(self._state.faults.take(KEYS))
        # NB: built after a slow fault's delay, so a hang spanning a rotation shows the new keys.
        return answer if answer is not None else web.json_response(document())

    def _discovery(self) -> JSONObject:
        issuer = self._state.issuer_url
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}{JWKS_PATH}",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": self._state.sts_keys.algorithms(),
        }
