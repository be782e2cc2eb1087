"""Microsoft Entra ID and an Azure Container Registry in-process, for the ACR provider's unit
and contract tests.

Each request is checked as Entra and ACR check it: the token request must be the client
credentials grant with a JWT-bearer client assertion, the app's own client ID and the
registry scope (an ARM scope is refused, as a registry that disables ARM-audience tokens
would); the registry's exchange must name its service and the tenant, and carry an access
token Entra issued to an app with AcrPull on that registry. The real SDK against the local
stack's stand-in is tested in `tests/stack`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx2
import jwt

from tests.fakes import FakeClock
from tests.providers.cloud import Failure, FakeCloud

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"
IDENTITY = f"{TENANT}/{CLIENT}"
REGISTRY = "pullers.azurecr.io"
SCOPE = "https://containerregistry.azure.net/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class AccessToken:
    tenant: str
    client: str
    expires_at: float


@dataclass
class FakeAzure(FakeCloud):
    """Entra ID for `apps` ((tenant, client) -> the one assertion its federated credential
    accepts) and registries where `pullers` ((client, registry) pairs) have AcrPull."""

    clock: FakeClock
    apps: dict[tuple[str, str], str]
    pullers: set[tuple[str, str]] = field(default_factory=set)
    #: Seconds a refresh token lives (its `exp`).
    lifetime: float = 3 * 3600
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: {"entra": 0, "acr": 0})
    #: Answer the next requests to this service ("entra" or "acr") with (status, body, headers).
    failing: dict[str, Failure] = field(default_factory=dict)
    #: Replace the registry's answer document (a lying or broken service).
    acr_answer: object | None = None
    key: str = field(default_factory=lambda: secrets.token_hex(32))

    def service_of(self, request: httpx2.Request) -> str:
        return "entra" if request.url.host == "login.microsoftonline.com" else "acr"

    def answer(self, service: str, request: httpx2.Request, body: bytes) -> httpx2.Response:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert "authorization" not in request.headers
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if service == "entra":
            return self._entra(request, form)
        return self._acr(request, form)

    def _entra(self, request: httpx2.Request, form: dict[str, str]) -> httpx2.Response:
        tenant, _, rest = request.url.path.removeprefix("/").partition("/")
        assert rest == "oauth2/v2.0/token"
        assert set(form) == {
            "grant_type", "client_id", "client_assertion_type", "client_assertion", "scope"
        }  # fmt: skip
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == ASSERTION_TYPE
        if form["scope"] != SCOPE:
            return entra_error(
                400, "invalid_scope", 70011, "The provided value for scope is not valid."
            )
        client = form["client_id"]
        trusted = self.apps.get((tenant, client))
        if trusted is None:
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client}' was not found in the directory.",
            )
        if trusted != form["client_assertion"]:
            return entra_error(
                401,
                "invalid_client",
                700213,
                "No matching federated identity record found for presented assertion subject "
                "'system:serviceaccount:x:y'. Check your federated identity credential Subject, "
                "Audience and Issuer against the presented assertion.",
            )
        token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(20)
        self.access_tokens[token] = AccessToken(tenant, client, self.clock.now + 3599)
        document = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                    "access_token": token}  # fmt: skip
        return httpx2.Response(200, json=document)

    def _acr(self, request: httpx2.Request, form: dict[str, str]) -> httpx2.Response:
        assert request.url.path == "/oauth2/exchange"
        assert form["grant_type"] == "access_token"
        registry = request.url.host
        assert form["service"] == registry
        access = self.access_tokens.get(form.get("access_token", ""))
        if (
            access is None
            or access.tenant != form.get("tenant")
            or self.clock.now >= access.expires_at
        ):
            return acr_error(401, "UNAUTHORIZED", "authentication required")
        if (access.client, registry) not in self.pullers:
            return acr_error(401, "UNAUTHORIZED", "the identity has no access to the registry")
        refresh = jwt.encode(
            {
                "jti": secrets.token_hex(8),
                "sub": access.client,
                "nbf": int(self.clock.now),
                "exp": int(self.clock.now + self.lifetime),
                "iat": int(self.clock.now),
                "iss": "Azure Container Registry",
                "aud": registry,
                "version": "1.0",
                "grant_type": "refresh_token",
                "tenant": access.tenant,
            },
            self.key,
            algorithm="HS256",
        )
        self.issued.append(refresh)
        document = self.acr_answer if self.acr_answer is not None else {"refresh_token": refresh}
        return httpx2.Response(200, json=document)


def entra_error(status: int, error: str, code: int, description: str) -> httpx2.Response:
    return httpx2.Response(
        status,
        json={
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: 0f0e Correlation ID: "
            "1a1b Timestamp: 2026-12-07 10:00:00Z",
            "error_codes": [code],
            "timestamp": "2026-12-07 10:00:00Z",
            "trace_id": "0f0e",
            "correlation_id": "1a1b",
            "error_uri": "https://login.microsoftonline.com/error?code=" + str(code),
        },
    )


def acr_error(status: int, code: str, message: str) -> httpx2.Response:
    return httpx2.Response(
        status, content=json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    )
