"""The token realm of the stand-in's Artifact Registry: ``/gar/token``.

A registry named ``<location>-docker.pkg.dev[:port]`` (its ``service``) sends pulling clients
here with HTTP Basic ``oauth2accesstoken:<access token>``, as a pull Secret filled by the
Google provider holds it. The token must be one the stand-in issued (federated or a service
account's), not expired. The answer is a pull-only registry token signed by the stack's
registry signer, never outliving the access token. The ``admin`` user may push.
"""

from __future__ import annotations

import re
import time
from typing import Final

from aiohttp import web

from devstack.tokenservice.gcp.ledger import Ledger
from devstack.tokenservice.protocol import ADMIN_USERNAME, ApiError, bad_request
from devstack.tokenservice.registry_tokens import (
    Principal,
    admin_principal,
    basic_credentials,
    denied,
    parse_scopes,
    registry_token_response,
)
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.wire import api_error_response

GAR_TOKEN_PATH: Final = "/gar/token"
USERNAME: Final = "oauth2accesstoken"
_SERVICE = re.compile(r"[a-z]+(?:-[a-z]+[0-9]+)?-docker\.pkg\.dev(:\d+)?")


class GarRegistryTokens:
    def __init__(self, state: ServiceState, ledger: Ledger) -> None:
        self._state = state
        self._ledger = ledger

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(GAR_TOKEN_PATH, self.handle_token)

    async def handle_token(self, request: web.Request) -> web.Response:
        try:
            service = request.query.get("service") or ""
            if _SERVICE.fullmatch(service) is None:
                raise bad_request(f"service {service!r} is not an Artifact Registry host")
            principal = self._authenticate(request)
            scopes = parse_scopes(request.query.getall("scope", []))
            return registry_token_response(self._state, principal, scopes, service=service)
        except ApiError as e:
            return api_error_response(e)

    def _authenticate(self, request: web.Request) -> Principal:
        credentials = basic_credentials(request)
        if credentials.login == ADMIN_USERNAME:
            return admin_principal(self._state, credentials.password)
        if credentials.login != USERNAME:
            raise denied(f"username must be {USERNAME}")
        token = self._ledger.get(credentials.password)
        if token is None:
            raise denied("not an access token Google issued")
        if token.expires_at <= time.time():
            raise denied("the access token has expired")
        who = token.service_account or token.principal
        return Principal(who, admin=False, may_pull=True, expires_at=int(token.expires_at))
