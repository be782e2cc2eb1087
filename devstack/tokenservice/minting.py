"""The claims of an STS token: for an exchange, or as ordered through the admin API.

An exchanged token carries ``iss`` (the issuer URL), ``sub`` (the identity UID), ``aud`` (the
audiences asked for: a string for one, a list for several), ``iat``/``nbf``, ``exp`` and a
unique ``jti``. A minted token starts from the same claims and then takes the order's
overrides, extra claims and omissions, so a test can plant a token that verifies against the
STS's published keys yet is wrong in exactly one way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from devstack.tokenservice.protocol import (
    JSONObject,
    bad_request,
    optional_int,
    optional_str,
    unknown_fields,
)

_MINT_FIELDS: Final = frozenset({"sub", "aud", "iss", "iat", "exp", "claims", "omit"})


def sts_claims(
    *, issuer: str, sub: str, audiences: Sequence[str], now: int, lifetime: int
) -> JSONObject:
    return {
        "iss": issuer,
        "sub": sub,
        "aud": audiences[0] if len(audiences) == 1 else list(audiences),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }


def _audiences(value: Any, default: str) -> list[str]:
    if value is None:
        return [default]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(a, str) for a in items):
        raise bad_request("aud must be a string or a non-empty list of strings")
    return items


def _str_list(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{key} must be a list of claim names")
    return value


def mint_claims(
    body: Mapping[str, Any],
    *,
    issuer: str,
    default_audience: str,
    lifetime_for: Callable[[str], int],
    now: int,
) -> JSONObject:
    """The claims a ``POST /admin/tokens`` body orders.

    Defaults are those of an exchange for ``sub`` (``aud`` defaults to the registry audience,
    ``exp`` to ``iat`` plus the lifetime ``sub``'s identity would get); ``claims`` adds or
    replaces claims, and ``omit`` then removes claims by name.
    """
    unknown_fields(body, _MINT_FIELDS)
    sub = optional_str(body, "sub")
    if sub is None:
        raise bad_request("sub is required")
    extra = body.get("claims") or {}
    if not isinstance(extra, dict):
        raise bad_request("claims must be a JSON object")
    iat = optional_int(body, "iat")
    iat = now if iat is None else iat
    claims = sts_claims(
        issuer=optional_str(body, "iss") or issuer,
        sub=sub,
        audiences=_audiences(body.get("aud"), default_audience),
        now=iat,
        lifetime=lifetime_for(sub),
    )
    exp = optional_int(body, "exp")
    if exp is not None:
        claims["exp"] = exp
    claims.update(extra)
    for name in _str_list(body, "omit"):
        claims.pop(name, None)
    return claims
