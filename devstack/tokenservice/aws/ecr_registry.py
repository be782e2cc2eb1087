"""The token realm of the stand-in's ECR registries: ``/ecr/token``.

A registry named ``<account>.dkr.ecr.<region>.amazonaws.com[:port]`` (its ``service``) sends
pulling clients here with HTTP Basic ``AWS:<password>``, as a pull Secret filled from
``GetAuthorizationToken`` holds it. The password must be one the front issued, not expired,
and issued for this registry's account and region. The answer is a pull-only registry token
signed by the stack's registry signer, never outliving the password. The ``admin`` user may
push (the stack puts its test image there).
"""

from __future__ import annotations

import re
import time
from typing import Final

from aiohttp import web

from devstack.tokenservice.aws.ecr_front import USERNAME
from devstack.tokenservice.aws.ledger import Ledger
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

ECR_TOKEN_PATH: Final = "/ecr/token"
_SERVICE = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(:\d+)?"
)


class EcrRegistryTokens:
    def __init__(self, state: ServiceState, ledger: Ledger) -> None:
        self._state = state
        self._ledger = ledger

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(ECR_TOKEN_PATH, self.handle_token)

    async def handle_token(self, request: web.Request) -> web.Response:
        try:
            service = request.query.get("service") or ""
            registry = _SERVICE.fullmatch(service)
            if registry is None:
                raise bad_request(f"service {service!r} is not an ECR registry")
            principal = self._authenticate(request, registry["account"], registry["region"])
            scopes = parse_scopes(request.query.getall("scope", []))
            return registry_token_response(self._state, principal, scopes, service=service)
        except ApiError as e:
            return api_error_response(e)

    def _authenticate(self, request: web.Request, account: str, region: str) -> Principal:
        credentials = basic_credentials(request)
        if credentials.login == ADMIN_USERNAME:
            return admin_principal(self._state, credentials.password)
        if credentials.login != USERNAME:
            raise denied(f"username must be {USERNAME}")
        password = self._ledger.password(credentials.password)
        if password is None:
            raise denied("not a password this registry issued")
        if password.expires_at <= time.time():
            raise denied("the password has expired")
        if (password.account, password.region) != (account, region):
            raise denied("the password is for another registry")
        return Principal(
            password.role_arn, admin=False, may_pull=True, expires_at=int(password.expires_at)
        )
