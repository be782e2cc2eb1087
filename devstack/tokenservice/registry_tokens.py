"""The distribution registry's token endpoint (``auth.token.realm``): ``/registry/token``.

A client authenticates with HTTP Basic ``_token:<STS token>`` (what a pull Secret holds) or as
the ``admin`` user, who may push. The STS token must verify against a key the STS still
publishes, so dropping a key at rotation also ends the pulls of the tokens it signed. The
answer is a registry token signed with the registry signer (its ``kid`` in libtrust form, which
distribution 2.8 requires), granting pull only, and never outliving the STS token.
"""

from __future__ import annotations

import hmac
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import aiohttp
from aiohttp import web

from devstack.tokenservice.cloud import Expiring
from devstack.tokenservice.oidc import audiences, decode, unverified_kid
from devstack.tokenservice.protocol import (
    ADMIN_USERNAME,
    REGISTRY_PULL,
    REGISTRY_USERNAME,
    ApiError,
    bad_request,
    rfc3339,
    unauthenticated,
)
from devstack.tokenservice.state import ServiceState
from devstack.tokenservice.wire import api_error_response

REGISTRY_TOKEN_PATH = "/registry/token"


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """``type:name:actions`` items; a query may repeat ``scope`` or space-separate them."""
    scopes = []
    for value in values:
        for item in value.split():
            type_, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if not type_ or not name:
                raise bad_request(f"malformed scope {item!r}")
            scopes.append(Scope(type_, name, tuple(a for a in actions.split(",") if a)))
    return scopes


@dataclass(frozen=True)
class Principal:
    """Who asked the registry token endpoint, and until when their credential is good."""

    subject: str
    admin: bool
    may_pull: bool
    expires_at: int | None

    def grant(self, scope: Scope) -> list[str]:
        if self.admin:
            return list(scope.actions)
        if scope.type == "repository" and "pull" in scope.actions and self.may_pull:
            return ["pull"]
        return []


def denied(message: str) -> ApiError:
    """401 with the challenge a registry client answers with its Basic credentials."""
    challenge = 'Basic realm="devstack registry token service"'
    return unauthenticated(message, headers={aiohttp.hdrs.WWW_AUTHENTICATE: challenge})


def basic_credentials(request: web.Request) -> aiohttp.BasicAuth:
    header = request.headers.get(aiohttp.hdrs.AUTHORIZATION)
    if not header:
        raise denied("authentication required")
    try:
        return aiohttp.BasicAuth.decode(header)
    except ValueError as e:
        raise denied("expected HTTP Basic credentials") from e


def admin_principal(state: ServiceState, password: str) -> Principal:
    """The ``admin`` user, who may push (the stack's own images), if the password is right."""
    expected = (state.settings.admin_password or "").encode()
    if not expected or not hmac.compare_digest(password.encode(), expected):
        raise denied("bad admin credentials")
    return Principal(ADMIN_USERNAME, admin=True, may_pull=True, expires_at=None)


class RegistryTokens:
    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(REGISTRY_TOKEN_PATH, self.handle_registry_token)

    async def handle_registry_token(self, request: web.Request) -> web.Response:
        settings = self._state.settings
        principal = self._authenticate(request)
        service = request.query.get("service")
        if service is not None and service != settings.registry_service:
            raise bad_request(f"unknown service {service!r}")
        scopes = parse_scopes(request.query.getall("scope", []))
        return registry_token_response(
            self._state, principal, scopes, service=settings.registry_service
        )

    def _authenticate(self, request: web.Request) -> Principal:
        credentials = basic_credentials(request)
        if credentials.login == ADMIN_USERNAME:
            return admin_principal(self._state, credentials.password)
        if credentials.login != REGISTRY_USERNAME:
            raise denied(f"username must be {REGISTRY_USERNAME}")
        try:
            return self._principal_for(credentials.password)
        except ApiError as e:
            raise denied(e.message) from e

    def _principal_for(self, token: str) -> Principal:
        state = self._state
        key = state.sts_keys.verification_key(unverified_kid(token))
        if key is None:
            raise unauthenticated("token key id is not published by this service")
        claims = decode(token, key.key, algorithm=key.algorithm_name, leeway=0)
        if claims["iss"] != state.issuer_url:
            raise unauthenticated("token was not issued by this service")
        if state.settings.registry_audience not in audiences(claims):
            raise unauthenticated(f"token audience is not {state.settings.registry_audience!r}")
        identity = state.store.get(str(claims["sub"]))
        if identity is None:
            raise unauthenticated("token's identity no longer exists")
        may_pull = REGISTRY_PULL in identity.roles
        return Principal(identity.uid, admin=False, may_pull=may_pull, expires_at=claims["exp"])


L = TypeVar("L")
C = TypeVar("C", bound=Expiring)


def unexpired(credential: C | None, *, unknown: str, expired: str) -> C:
    """The issued credential a client sent, found; ``denied`` with ``unknown`` when it was
    not found, with ``expired`` when it has expired."""
    if credential is None:
        raise denied(unknown)
    if credential.expires_at <= time.time():
        raise denied(expired)
    return credential


@dataclass(frozen=True)
class Realm:
    """Where a cloud's registries send pulling clients (``path``), the user name their
    credentials go with, and which services are its registries (``what``, for an error:
    "an ECR registry")."""

    path: str
    username: str
    services: re.Pattern[str]
    what: str


class CloudRegistryTokens(ABC, Generic[L]):
    """The token realm of a cloud stand-in's registries: ``GET <path>?service=<registry>``.

    A pulling client authenticates with HTTP Basic ``<username>:<credential>``, as a pull
    Secret filled by that cloud's provider holds it, or as the ``admin`` user, who may push
    (the stack puts its test image there). A subclass names its ``realm`` and what a
    credential in its ``ledger`` (of type ``L``) is good for. The
    answer is a pull-only registry token signed by the stack's registry signer, never
    outliving the credential; errors are in the token service's ``{"code", "message"}`` shape.
    """

    realm: ClassVar[Realm]

    def __init__(self, state: ServiceState, ledger: L) -> None:
        self._state = state
        self._ledger = ledger

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(self.realm.path, self.handle_token)

    async def handle_token(self, request: web.Request) -> web.Response:
        try:
            service = request.query.get("service") or ""
            registry = self.realm.services.fullmatch(service)
            if registry is None:
                raise bad_request(f"service {service!r} is not {self.realm.what}")
            principal = self._authenticate(request, registry)
            scopes = parse_scopes(request.query.getall("scope", []))
            return registry_token_response(self._state, principal, scopes, service=service)
        except ApiError as e:
            return api_error_response(e)

    def _authenticate(self, request: web.Request, registry: re.Match[str]) -> Principal:
        credentials = basic_credentials(request)
        if credentials.login == ADMIN_USERNAME:
            return admin_principal(self._state, credentials.password)
        if credentials.login != self.realm.username:
            raise denied(f"username must be {self.realm.username}")
        return self._principal(registry, credential=credentials.password)

    @abstractmethod
    def _principal(self, registry: re.Match[str], *, credential: str) -> Principal:
        """Who ``credential`` stands for at ``registry`` (the service, matched by the realm's
        ``services``); raise ``denied`` when it is not one the stand-in issued, has expired,
        or is for another registry."""


def registry_token_response(
    state: ServiceState, principal: Principal, scopes: list[Scope], *, service: str
) -> web.Response:
    """A registry token for ``service`` granting ``principal`` what it may of ``scopes``,
    signed by the registry signer and never outliving the principal's credential."""
    settings = state.settings
    now = int(time.time())
    exp = now + settings.registry_token_lifetime
    if principal.expires_at is not None:
        exp = min(exp, principal.expires_at)
    token = state.registry_key.sign(
        {
            "iss": settings.registry_issuer,
            "sub": principal.subject,
            "aud": service,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": s.type, "name": s.name, "actions": principal.grant(s)} for s in scopes
            ],
        }
    )
    state.stats.registry_tokens += 1
    state.issued.add("registry", token)
    return web.json_response(
        {
            "token": token,
            "access_token": token,
            "expires_in": exp - now,
            "issued_at": rfc3339(now),
        }
    )
