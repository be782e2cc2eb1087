"""A registry token's claims: read (to describe a token) and checked (to trust one).

Nothing here verifies a signature: that needs the token service's published keys, which the
token layer fetches (`tokens.verification`). What the core owns is the rule for the claims of
a token whose signature verified: `check_claims` decides whether such a token is one the
controller may act on (issued by the configured issuer, for the registry, for a subject,
with sane times); a provider then states it as a `core.credential.Credential`, the only form in
which a token's times reach a refresh decision. `read_claims` reads claims without any
verification, and is used only to describe a token to a person (the `check` command).

Decoding is done by hand so that every failure has one plain cause. Like everywhere in the
core, errors never carry the token, and are raised outside the `except` that detected them
so the decoder's exception (which holds the payload) is not kept as context.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

_PART = re.compile(r"[A-Za-z0-9_-]+")

#: 9999-12-31T23:59:59Z: later dates cannot be written as RFC3339, so they are absurd.
MAX_NUMERIC_DATE = 253402300799


class InvalidToken(Exception):
    """A token we cannot use; the message names the cause and never contains the token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    """The claims the controller looks at. Times are epoch seconds."""

    exp: float
    iat: float | None
    iss: str | None
    sub: str | None
    aud: tuple[str, ...]


def read_claims(token: str) -> TokenClaims:
    """The claims of a compact JWS, unverified; raises InvalidToken."""
    parts = token.split(".")
    if len(parts) != 3 or not all(_PART.fullmatch(part) for part in parts):
        raise InvalidToken("token is not three dot-separated base64url parts")
    header, problem = _decode_part(parts[0], name="header")
    if problem is None:
        payload, problem = _decode_part(parts[1], name="payload")
    if problem is not None:
        raise InvalidToken(problem)
    if not isinstance(header, dict):
        raise InvalidToken("token header is not a JSON object")
    if not isinstance(payload, dict):
        raise InvalidToken("token claims are not a JSON object")
    return claims_of(payload)


def claims_of(payload: Mapping[str, object]) -> TokenClaims:
    """The claims the controller looks at, from a decoded payload; raises InvalidToken."""
    if "exp" not in payload:
        raise InvalidToken("token has no exp claim")
    exp = _numeric_date(payload["exp"], name="exp")
    iat = _numeric_date(payload["iat"], name="iat") if "iat" in payload else None
    if iat is not None and iat > exp:
        raise InvalidToken("token's iat claim is later than its exp claim")
    return TokenClaims(
        exp=exp,
        iat=iat,
        iss=_optional_string(payload.get("iss"), name="iss"),
        sub=_optional_string(payload.get("sub"), name="sub"),
        aud=_audience(payload.get("aud")),
    )


def check_claims(
    payload: Mapping[str, object],
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: float,
) -> TokenClaims:
    """The claims of a token whose signature verified, if the controller may trust them.

    Raises InvalidToken unless `iss` is `issuer`, `aud` contains `audience`, `sub` is a
    non-empty string, `iat` and `exp` are present with `iat` before `exp`, and neither `iat`
    nor `nbf` lies more than `leeway` seconds in the future. Whether the token has expired is
    not checked here: an expired token is still the controller's own, to be replaced.
    """
    claims = claims_of(payload)
    if claims.iss != issuer:
        raise InvalidToken(
            "token was not issued by the configured token service"
            if claims.iss
            else "token has no iss claim"
        )
    if audience not in claims.aud:
        raise InvalidToken(f"token is not for the registry {audience}")
    if not claims.sub:
        raise InvalidToken("token has no sub claim")
    if claims.iat is None:
        raise InvalidToken("token has no iat claim")
    if claims.iat > now + leeway:
        raise InvalidToken("token's iat claim lies in the future (is a clock wrong?)")
    if claims.iat >= claims.exp:
        raise InvalidToken("token's lifetime is empty (iat is not before exp)")
    if "nbf" in payload and _numeric_date(payload["nbf"], name="nbf") > now + leeway:
        raise InvalidToken("token is not valid yet (nbf lies in the future)")
    return claims


def _decode_part(part: str, *, name: str) -> tuple[object, str | None]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        problem = f"token {name} is not valid base64url"
    else:
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant), None
        except UnicodeDecodeError:
            problem = f"token {name} is not UTF-8"
        except RecursionError:
            problem = f"token {name} is nested too deeply"
        except ValueError:
            problem = f"token {name} is not valid JSON"
    return None, problem


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def _numeric_date(value: object, *, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"token's {name} claim is not a number")
    # NB: compared before float(): a huge int overflows float, and NaN fails both bounds.
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise InvalidToken(f"token's {name} claim is out of range")
    result = float(value)
    assert math.isfinite(result)
    return result


def _optional_string(value: object, *, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidToken(f"token's {name} claim is not a string")


def _audience(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InvalidToken("token's aud claim is not a string or a list of strings")
