"""Reading a registry token's claims, without verifying it.

The controller does not hold the token service's key and does not need to: it only asks a
token it was just given (or wrote itself) when it expires, so that refreshes follow the
token's own `exp` rather than an assumed lifetime. The registry verifies the signature.

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


def check_fresh(claims: TokenClaims, *, now: float, min_lifetime: float) -> None:
    """Raise InvalidToken unless the token lives at least `min_lifetime` seconds from `now`.

    Used on a token just obtained: writing one that is about to expire would only schedule
    the next refresh straight away, over and over.
    """
    remaining = claims.exp - now
    if remaining <= 0:
        raise InvalidToken("token is already expired")
    if remaining < min_lifetime:
        raise InvalidToken(
            f"token expires in {remaining:.0f}s, less than the minimum {min_lifetime:.0f}s"
        )


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
