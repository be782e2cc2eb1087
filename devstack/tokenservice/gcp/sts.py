"""STS ``POST /v1/token``: a Kubernetes token exchanged for a federated access token.

Judged in Google's order: the request's fields (RFC 8693: a token exchange, for an access
token, of a JWT), the audience (``//iam.googleapis.com/`` and a provider that exists), then the
token against that provider: issuer, signature with the provider's keys, expiry, audience
among the allowed ones, and the attribute condition on ``sub``. The body may be a form (as
google-auth sends it) or JSON (proto field names in either case, as Google's JSON mapping
accepts). The federated token lives an hour, and never longer than the Kubernetes token.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import jwt
from aiohttp import web

from devstack.tokenservice.gcp.directory import Directory, OidcProvider, principal
from devstack.tokenservice.gcp.errors import (
    GoogleError,
    invalid_grant,
    invalid_request,
    invalid_target,
    rejected_by_condition,
)
from devstack.tokenservice.gcp.ledger import (
    GCP_SECRET,
    MAX_LIFETIME,
    AccessToken,
    GcpConfig,
    Ledger,
)
from devstack.tokenservice.identities import Identity
from devstack.tokenservice.oidc import IssuerKeys, audiences, decode, unverified_kid
from devstack.tokenservice.protocol import ApiError
from devstack.tokenservice.stats import IssuedTokens

GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES: Final = frozenset(
    {"urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token"}
)
AUDIENCE_PREFIX: Final = "//iam.googleapis.com/"
_FIELDS: Final = {
    "grantType": "grant_type",
    "requestedTokenType": "requested_token_type",
    "subjectToken": "subject_token",
    "subjectTokenType": "subject_token_type",
}


async def read_fields(request: web.Request) -> dict[str, str]:
    """The request's fields, snake_case, from a form or a JSON body."""
    if request.content_type == "application/json":
        try:
            document: Any = json.loads(await request.read() or b"{}")
        except ValueError:
            raise invalid_request("The request body is not valid JSON.") from None
        if not isinstance(document, dict):
            raise invalid_request("The request body must be a JSON object.")
        items: Mapping[str, Any] = document
    else:
        items = await request.post()
    return {_FIELDS.get(k, k): v for k, v in items.items() if isinstance(v, str)}


class TokenExchange:
    def __init__(
        self,
        *,
        directory: Directory,
        ledger: Ledger,
        issuer_keys: IssuerKeys,
        config: Callable[[], GcpConfig],
        issued: IssuedTokens,
    ) -> None:
        self._directory = directory
        self._ledger = ledger
        self._issuer_keys = issuer_keys
        self._config = config
        self._issued = issued

    async def exchange(
        self, fields: Mapping[str, str], on_provider: Callable[[str], None]
    ) -> web.Response:
        """The answer to a good request; raises ``GoogleError`` for any other."""
        if fields.get("grant_type") != GRANT_TYPE:
            raise GoogleError(400, "unsupported_grant_type", "Invalid value for grant_type.")
        if fields.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            raise invalid_request("Invalid value for requested_token_type.")
        if fields.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise invalid_request("Invalid value for subject_token_type.")
        if not fields.get("subject_token"):
            raise invalid_request("subject_token is required.")
        audience = fields.get("audience", "")
        if not audience.startswith(AUDIENCE_PREFIX):
            raise invalid_target()
        provider = self._directory.providers.get(audience.removeprefix(AUDIENCE_PREFIX))
        if provider is None:
            raise invalid_target()
        on_provider(provider.name)
        claims = await self._verify(fields["subject_token"], provider)
        subject = str(claims["sub"])
        if not provider.condition_holds(subject):
            raise rejected_by_condition()
        now = time.time()
        cap = self._config().federated_lifetime_cap or MAX_LIFETIME
        lifetime = int(min(MAX_LIFETIME, cap, float(claims["exp"]) - now))
        if lifetime <= 0:
            raise invalid_grant("The ID Token has expired.")
        token = "ya29.d." + secrets.token_urlsafe(96)
        self._ledger.add(
            token,
            AccessToken(
                token=token,
                principal=principal(provider.name, subject),
                provider=provider.name,
                service_account=None,
                expires_at=now + lifetime,
            ),
        )
        self._issued.add(GCP_SECRET, token)
        return web.json_response(
            {
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": lifetime,
            }
        )

    async def _verify(self, token: str, provider: OidcProvider) -> dict[str, Any]:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            kid = unverified_kid(token)
        except (jwt.PyJWTError, ApiError):
            raise invalid_grant("Unable to parse the ID Token.") from None
        if unverified.get("iss") != provider.issuer:
            raise invalid_grant(
                f"The issuer in ID Token {unverified.get('iss')} does not match the expected "
                f"ISSUER {provider.issuer}."
            )
        identity = Identity(uid="", name="", issuer=provider.issuer, issuer_keys=provider.jwks)
        try:
            key = await self._issuer_keys.find(identity, kid)
        except ApiError as e:
            if e.status >= 500:
                raise GoogleError(503, "temporarily_unavailable", e.message) from None
            raise invalid_grant("Invalid JWT signature: no key of the issuer matches.") from None
        try:
            claims = decode(token, key.key, algorithm=key.algorithm_name, leeway=0)
        except ApiError as e:
            if "expired" in e.message:
                raise invalid_grant("The ID Token has expired.") from None
            raise invalid_grant(f"Invalid ID Token: {e.message}.") from None
        token_audiences = audiences(claims)
        if not any(a in provider.audiences for a in token_audiences):
            raise invalid_grant(
                f"The audience in ID Token {token_audiences} does not match the expected audience."
            )
        return claims
