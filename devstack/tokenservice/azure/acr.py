"""Azure Container Registry's OAuth endpoints, as the registries serve them.

``POST /oauth2/exchange`` (form ``grant_type=access_token``, ``service``, ``tenant``,
``access_token``): the access token must be one Entra issued here, unexpired, for the
registries' audience (an ARM-audience token is refused, as by a registry that disables
them), in that tenant, to an app with AcrPull on the registry. The answer is
``{"refresh_token"}``, a JWT whose ``exp`` says when it ends (3 hours, settable).

``/oauth2/token`` is the token realm of the stand-in's registries: ``GET`` with HTTP Basic
``00000000-0000-0000-0000-000000000000:<refresh token>`` (what a pull Secret holds, and how
distribution asks), or ``POST`` form ``grant_type=refresh_token`` (how ACR's clients ask).
The refresh token must be one issued here, for this registry, unexpired; the answer is a
pull-only registry token signed by the stack's registry signer, never outliving it. The
``admin`` user may push (the stack puts its test image there).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Final

import jwt
from aiohttp import web

from devstack.tokenservice.azure.directory import (
    AZURE_SECRET,
    AzureConfig,
    Directory,
    Ledger,
    RefreshToken,
)
from devstack.tokenservice.protocol import ADMIN_USERNAME, ApiError
from devstack.tokenservice.registry_tokens import (
    Principal,
    admin_principal,
    basic_credentials,
    denied,
    parse_scopes,
    registry_token_response,
    unexpired,
)
from devstack.tokenservice.state import ServiceState

USERNAME: Final = "00000000-0000-0000-0000-000000000000"
REGISTRY_AUDIENCE: Final = "https://containerregistry.azure.net"
_SERVICE = re.compile(r"[a-z0-9]{5,50}\.azurecr\.(?:io|cn|us)(?::\d+)?")


class AcrError(Exception):
    """The registry's refusal, in the registry API's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        headers = {"Retry-After": "5"} if self.status == 429 else None
        return web.json_response(
            {"errors": [{"code": self.code, "message": self.message}]},
            status=self.status,
            headers=headers,
        )


def registry_of(service: str) -> str:
    """A registry's service name without a port (``<name>.azurecr.io``); raises AcrError."""
    if not _SERVICE.fullmatch(service):
        raise AcrError(400, "UNSUPPORTED", f"service {service!r} is not a registry here")
    return service.rsplit(":", 1)[0] if ":" in service else service


class AcrFront:
    def __init__(
        self,
        *,
        state: ServiceState,
        directory: Directory,
        ledger: Ledger,
        config: Callable[[], AzureConfig],
    ) -> None:
        self._state = state
        self._directory = directory
        self._ledger = ledger
        self._config = config
        self._key = secrets.token_bytes(32)

    def exchange(self, form: Mapping[str, str], on_client: Callable[[str], None]) -> web.Response:
        """A refresh token for a good request; raises ``AcrError`` for any other."""
        if form.get("grant_type") != "access_token":
            raise AcrError(400, "UNSUPPORTED", "grant_type must be access_token")
        registry = registry_of(form.get("service", ""))
        access = self._ledger.access_tokens.get(form.get("access_token", ""))
        if access is None:
            raise AcrError(401, "UNAUTHORIZED", "the access token is not valid")
        on_client(access.client_id)
        if access.expires_at <= time.time():
            raise AcrError(401, "UNAUTHORIZED", "the access token has expired")
        if access.audience != REGISTRY_AUDIENCE:
            raise AcrError(401, "UNAUTHORIZED",
                           "Azure AD authentication-as-ARM is disabled for this registry: "
                           "the access token's audience must be "
                           f"{REGISTRY_AUDIENCE}")  # fmt: skip
        if form.get("tenant", access.tenant) != access.tenant:
            raise AcrError(401, "UNAUTHORIZED", "the access token is not from that tenant")
        if (access.client_id, registry) not in self._directory.pullers:
            raise AcrError(401, "UNAUTHORIZED",
                           f"the identity {access.client_id} has no role assignment on "
                           f"{registry}")  # fmt: skip
        now = int(time.time())
        expires_at = now + self._config().refresh_token_lifetime
        token = jwt.encode(
            {
                "jti": str(uuid.uuid4()),
                "sub": access.client_id,
                "nbf": now,
                "exp": expires_at,
                "iat": now,
                "iss": "Azure Container Registry",
                "aud": registry,
                "version": "1.0",
                "rid": uuid.uuid5(uuid.NAMESPACE_DNS, registry).hex,
                "grant_type": "refresh_token",
                "appid": access.client_id,
                "tenant": access.tenant,
                "permissions": {"actions": ["read"], "notActions": None},
                "roles": [],
            },
            self._key,
            algorithm="HS256",
        )
        self._ledger.refresh_tokens.add(
            token, RefreshToken(token, registry, access.client_id, access.tenant, expires_at)
        )
        self._state.issued.add(AZURE_SECRET, token)
        return web.json_response({"refresh_token": token})

    async def token(self, request: web.Request) -> web.Response:
        """The registry token a pulling client asks for (GET, Basic) or ACR's clients (POST)."""
        try:
            if request.method == "POST":
                form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
                if form.get("grant_type") != "refresh_token":
                    raise denied("grant_type must be refresh_token")
                service, login, password = (
                    form.get("service", ""),
                    USERNAME,
                    form.get("refresh_token", ""),
                )
                scopes = parse_scopes([form.get("scope", "")])
            else:
                credentials = basic_credentials(request)
                service, login, password = (
                    request.query.get("service", ""),
                    credentials.login,
                    credentials.password,
                )
                scopes = parse_scopes(request.query.getall("scope", []))
            principal = self._authenticate(service, login, password)
            response = registry_token_response(self._state, principal, scopes, service=service)
        except AcrError as e:
            return e.response()
        except ApiError as e:
            return AcrError(e.status, "UNAUTHORIZED", e.message).response()
        return response

    def _authenticate(self, service: str, login: str, password: str) -> Principal:
        registry = registry_of(service)
        if login == ADMIN_USERNAME:
            return admin_principal(self._state, password)
        if login != USERNAME:
            raise denied(f"username must be {USERNAME}")
        refresh = unexpired(
            self._ledger.refresh_tokens.get(password),
            unknown="not a refresh token this registry issued",
            expired="the refresh token has expired",
        )
        if refresh.registry != registry:
            raise denied("the refresh token is for another registry")
        return Principal(refresh.client_id, admin=False, may_pull=True,
                         expires_at=int(refresh.expires_at))  # fmt: skip
