"""Judging a service-account token the way an assumable identity does.

The key comes from the identity's own JWKS (what ``--issuer-keys`` gives on KinD, whose issuer
URL is not reachable from outside) or from the issuer's OIDC discovery, cached briefly and
refetched when a token names a key the cache does not hold. Then the signature and time claims
are checked, and ``iss``, ``aud`` and ``sub`` are judged against the identity. Each failure
is an ``ApiError`` whose message names the cause, never the token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import jwt

from devstack.tokenservice.identities import Identity
from devstack.tokenservice.keys import pick_key, usable_keys
from devstack.tokenservice.protocol import (
    JSONObject,
    as_str_list,
    permission_denied,
    unauthenticated,
    unavailable,
)

SA_TOKEN_LEEWAY: Final = 10
DISCOVERY_TTL: Final = 60.0


class IssuerKeys:
    """Finds the key that signed a service-account token for an identity."""

    def __init__(self, session: aiohttp.ClientSession, *, ttl: float = DISCOVERY_TTL) -> None:
        self._session = session
        self._ttl = ttl
        self._discovered: dict[str, tuple[float, list[jwt.PyJWK]]] = {}

    async def find(self, identity: Identity, kid: str | None) -> jwt.PyJWK:
        if identity.issuer_keys is not None:
            keys = usable_keys(jwt.PyJWKSet.from_json(identity.issuer_keys))
            where = "the identity's issuer keys"
        else:
            keys = await self._discover(identity.issuer, refresh=False)
            if pick_key(keys, kid) is None:
                # NB: an unknown kid usually means the issuer rotated its keys.
                keys = await self._discover(identity.issuer, refresh=True)
            where = f"the JWKS of {identity.issuer}"
        key = pick_key(keys, kid)
        if key is None:
            raise unauthenticated(f"token key id {kid!r} is not in {where}")
        return key

    async def _discover(self, issuer: str, *, refresh: bool) -> list[jwt.PyJWK]:
        cached = self._discovered.get(issuer)
        if cached and not refresh and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        keys = await self._fetch(issuer)
        self._discovered[issuer] = (time.monotonic(), keys)
        return keys

    async def _fetch(self, issuer: str) -> list[jwt.PyJWK]:
        try:
            config = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
            if config.get("issuer") != issuer:
                raise ValueError(f"discovery names issuer {config.get('issuer')!r}")
            keys = usable_keys(jwt.PyJWKSet.from_dict(await self._get_json(config["jwks_uri"])))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, jwt.PyJWTError) as e:
            raise unavailable(f"cannot fetch the keys of issuer {issuer}: {e}") from e
        if not keys:
            raise unavailable(f"issuer {issuer} has no usable keys")
        return keys

    async def _get_json(self, url: str) -> JSONObject:
        async with self._session.get(url, raise_for_status=True) as response:
            data = await response.json(content_type=None)
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return data


def audiences(claims: Mapping[str, Any]) -> list[str]:
    return as_str_list(claims.get("aud"))


def unverified_kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as e:
        raise unauthenticated("bearer token is not a JWT") from e
    return kid if isinstance(kid, str) else None


def decode(token: str, key: Any, *, algorithm: str, leeway: float) -> JSONObject:
    """Check signature and time claims; the caller judges iss, aud and sub itself."""
    try:
        claims: JSONObject = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            options={"verify_aud": False, "verify_iss": False, "require": ["exp", "iss", "sub"]},
            leeway=leeway,
        )
    except jwt.ExpiredSignatureError as e:
        raise unauthenticated("token has expired") from e
    except jwt.InvalidSignatureError as e:
        raise unauthenticated("token signature does not verify") from e
    except jwt.MissingRequiredClaimError as e:
        raise unauthenticated(f"token has no {e.claim!r} claim") from e
    except jwt.PyJWTError as e:
        raise unauthenticated(f"token is invalid: {e}") from e
    return claims


async def verify_sa_token(
    token: str, identity: Identity, keys: IssuerKeys, *, default_audience: str
) -> JSONObject:
    key = await keys.find(identity, unverified_kid(token))
    claims = decode(token, key.key, algorithm=key.algorithm_name, leeway=SA_TOKEN_LEEWAY)
    if claims["iss"] != identity.issuer:
        raise unauthenticated(
            f"token issuer {claims['iss']!r} is not the identity's issuer {identity.issuer!r}"
        )
    audience = identity.audience or default_audience
    if audience not in audiences(claims):
        raise permission_denied(f"token audience does not include {audience!r}")
    if not identity.subject_matches(str(claims["sub"])):
        raise permission_denied(f"token subject {claims['sub']!r} does not match the identity")
    return claims
