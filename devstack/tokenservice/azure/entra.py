"""Microsoft Entra ID's token endpoint for workload identity federation, judged as Entra
judges it, and the tenant discovery MSAL reads first.

``POST /<tenant>/oauth2/v2.0/token`` with ``grant_type=client_credentials``, the app's
``client_id``, ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``
and the Kubernetes token as ``client_assertion``: the app must exist in the tenant, the
assertion must verify against its issuer's keys and be unexpired, and its issuer, subject and
audience must equal those of one of the app's federated identity credentials. Errors have
Entra's shape (``error``, ``error_description`` starting with the ``AADSTS`` code,
``error_codes``, trace and correlation IDs). The access token is a JWT for the resource the
scope names, good for an hour.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from aiohttp import web

from devstack.tokenservice.azure.directory import (
    AZURE_SECRET,
    AccessToken,
    AzureConfig,
    Directory,
    Ledger,
)
from devstack.tokenservice.identities import Identity
from devstack.tokenservice.oidc import IssuerKeys, audiences, decode, unverified_kid
from devstack.tokenservice.protocol import ApiError
from devstack.tokenservice.stats import IssuedTokens

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Resources the stand-in issues access tokens for: the registries' own audience (ARM's too,
#: which the registries refuse, as one that disables ARM-audience tokens does).
RESOURCES: Final = ("https://containerregistry.azure.net", "https://management.azure.com")


@dataclass
class EntraError(Exception):
    status: int
    error: str
    code: int
    description: str

    def response(self) -> web.Response:
        now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        return web.json_response(
            {
                "error": self.error,
                "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} "
                f"Correlation ID: {correlation} Timestamp: {now}",
                "error_codes": [self.code],
                "timestamp": now,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
            },
            status=self.status,
            headers={"Retry-After": "5"} if self.status == 429 else None,
        )


def discovery(base_url: str, tenant: str) -> dict[str, Any]:
    """The tenant's OpenID configuration, as ``/<tenant>/v2.0/.well-known/...`` answers it."""
    return {
        "token_endpoint": f"{base_url}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base_url}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base_url}/{tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{base_url}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base_url}/{tenant}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base_url}/{tenant}/oauth2/v2.0/logout",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }


class EntraFront:
    def __init__(
        self,
        *,
        directory: Directory,
        ledger: Ledger,
        issuer_keys: IssuerKeys,
        config: Callable[[], AzureConfig],
        issued: IssuedTokens,
    ) -> None:
        self._directory = directory
        self._ledger = ledger
        self._issuer_keys = issuer_keys
        self._config = config
        self._issued = issued
        self._key = secrets.token_bytes(32)

    async def token(
        self, tenant: str, form: Mapping[str, str], on_client: Callable[[str], None]
    ) -> web.Response:
        """The answer to a good request; raises ``EntraError`` for any other."""
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                raise EntraError(400, "invalid_request", 900144,
                                 f"The request body must contain the following parameter: "
                                 f"'{name}'.")  # fmt: skip
        if form["grant_type"] != "client_credentials":
            raise EntraError(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type "
                             f"'{form['grant_type']}'.")  # fmt: skip
        client_id = form["client_id"]
        on_client(client_id)
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise EntraError(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: "
                             "'client_assertion' or 'client_secret'.")  # fmt: skip
        resource = _resource(form["scope"])
        app = self._directory.app(tenant, client_id)
        if app is None:
            raise EntraError(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the "
                             f"directory '{tenant}'.")  # fmt: skip
        claims = await self._verify_assertion(form["client_assertion"])
        issuer, subject = str(claims["iss"]), str(claims["sub"])
        federated = app.federated
        if not any(f.issuer == issuer for f in federated):
            raise EntraError(400, "invalid_client", 700211,
                             "No matching federated identity record found for presented "
                             f"assertion issuer '{issuer}'. Please note that the matching is "
                             "done using a case-sensitive comparison.")  # fmt: skip
        if not any(f.issuer == issuer and f.subject == subject for f in federated):
            raise EntraError(400, "invalid_client", 700213,
                             "No matching federated identity record found for presented "
                             f"assertion subject '{subject}'. Please note that the matching is "
                             "done using a case-sensitive comparison. Check your federated "
                             "identity credential Subject, Audience and Issuer against the "
                             "presented assertion.")  # fmt: skip
        presented = audiences(claims)
        if not any(
            f.issuer == issuer and f.subject == subject and f.audience in presented
            for f in federated
        ):
            raise EntraError(400, "invalid_client", 700212,
                             "No matching federated identity record found for presented "
                             f"assertion audience '{', '.join(presented)}'.")  # fmt: skip
        lifetime = self._config().access_token_lifetime
        now = int(time.time())
        access_token = jwt.encode(
            {
                "aud": resource,
                "iss": f"https://sts.windows.net/{tenant}/",
                "iat": now,
                "nbf": now,
                "exp": now + lifetime,
                "appid": client_id,
                "idtyp": "app",
                "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}")),
                "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}")),
                "tid": tenant,
                "ver": "1.0",
            },
            self._key,
            algorithm="HS256",
            headers={"kid": "standin"},
        )
        self._ledger.access_tokens.add(
            access_token, AccessToken(client_id, tenant, resource, now + lifetime)
        )
        self._issued.add(AZURE_SECRET, access_token)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access_token,
            }
        )

    async def _verify_assertion(self, assertion: str) -> dict[str, Any]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            kid = unverified_kid(assertion)
        except (jwt.PyJWTError, ApiError):
            raise EntraError(400, "invalid_client", 50027,
                             "JWT token is invalid or malformed.") from None  # fmt: skip
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise EntraError(400, "invalid_client", 50027, "JWT token has no issuer.")
        identity = Identity(
            uid="", name="", issuer=issuer, issuer_keys=self._directory.issuer_keys.get(issuer)
        )
        try:
            key = await self._issuer_keys.find(identity, kid)
        except ApiError as e:
            if e.status >= 500:
                raise EntraError(400, "invalid_client", 700207,
                                 "Failed to fetch the OIDC discovery document or keys of the "
                                 f"issuer '{issuer}'.") from None  # fmt: skip
            raise EntraError(400, "invalid_client", 700027,
                             "Client assertion failed signature validation.") from None  # fmt: skip
        try:
            return decode(assertion, key.key, algorithm=key.algorithm_name, leeway=0)
        except ApiError as e:
            if "expired" in e.message:
                raise EntraError(
                    400,
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.",
                ) from None
            raise EntraError(400, "invalid_client", 700027,
                             "Client assertion failed signature validation.") from None  # fmt: skip


def _resource(scope: str) -> str:
    """The resource of a client credentials scope (one ``<resource>/.default``)."""
    scopes = [s for s in scope.split() if s not in {"openid", "profile", "offline_access"}]
    resources = [s.removesuffix("/.default") for s in scopes if s.endswith("/.default")]
    if len(resources) != 1 or len(scopes) != 1 or resources[0] not in RESOURCES:
        raise EntraError(400, "invalid_scope", 1002012,
                         f"The provided value for scope {scope} is not valid. Client credential "
                         "flows must have a scope value with /.default suffixed to the resource "
                         "identifier (application ID URI).")  # fmt: skip
    return resources[0]
