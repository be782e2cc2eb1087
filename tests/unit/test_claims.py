"""Reading a token's claims without its key, and refusing tokens that cannot be used."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pull_secret_updater.core.claims import (
    MAX_NUMERIC_DATE,
    InvalidToken,
    TokenClaims,
    check_fresh,
    read_claims,
)

NOW = 1_750_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(header: bytes, payload: bytes) -> str:
    return f"{_b64(header)}.{_b64(payload)}.c2ln"


def _token(claims: Any, *, header: Any = None) -> str:
    header = {"alg": "ES256", "typ": "JWT"} if header is None else header
    head = _b64(json.dumps(header).encode())
    return f"{head}.{_b64(json.dumps(claims).encode())}.{_b64(b'not-a-real-signature')}"


def test_reads_the_claims_of_a_signed_token() -> None:
    token = jwt.encode(
        {
            "exp": 1_750_003_600,
            "iat": 1_750_000_000,
            "iss": "https://issuer.enforce.dev",
            "sub": "abc/def",
            "aud": "cgr.dev",
        },
        "some-key-we-do-not-hold-in-production",
        algorithm="HS256",
    )
    assert read_claims(token) == TokenClaims(
        exp=1_750_003_600.0,
        iat=1_750_000_000.0,
        iss="https://issuer.enforce.dev",
        sub="abc/def",
        aud=("cgr.dev",),
    )


def test_only_exp_is_required() -> None:
    assert read_claims(_token({"exp": 12.5})) == TokenClaims(
        exp=12.5, iat=None, iss=None, sub=None, aud=()
    )


def test_audience_list_becomes_a_tuple() -> None:
    assert read_claims(_token({"exp": 1, "aud": ["a", "b"]})).aud == ("a", "b")


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "token is not three dot-separated base64url parts"),
        ("a.b", "token is not three dot-separated base64url parts"),
        ("a.b.c.d", "token is not three dot-separated base64url parts"),
        ("a..c", "token is not three dot-separated base64url parts"),
        ("a+b.c/d.e", "token is not three dot-separated base64url parts"),
        ("eyJ9.e30=.c2ln", "token is not three dot-separated base64url parts"),  # padding
        ("a.b.c", "token header is not valid base64url"),
        (_b64(b"{}") + ".abcde.c2ln", "token payload is not valid base64url"),
        (_raw(b"{}", b"{"), "token payload is not valid JSON"),
        (_raw(b"{}", b"\xff"), "token payload is not UTF-8"),
        (_raw(b"{}", b'{"exp": NaN}'), "token payload is not valid JSON"),
        (_raw(b"[]", b"{}"), "token header is not a JSON object"),
        (_token([1]), "token claims are not a JSON object"),
        (_token("exp"), "token claims are not a JSON object"),
        (_token({}), "token has no exp claim"),
        (_token({"iat": 1}), "token has no exp claim"),
        (_token({"exp": "1750000000"}), "token's exp claim is not a number"),
        (_token({"exp": None}), "token's exp claim is not a number"),
        (_token({"exp": True}), "token's exp claim is not a number"),
        (_token({"exp": -1}), "token's exp claim is out of range"),
        (_token({"exp": MAX_NUMERIC_DATE + 1}), "token's exp claim is out of range"),
        (_token({"exp": 10**400}), "token's exp claim is out of range"),
        (_token({"exp": 1e308}), "token's exp claim is out of range"),
        (_token({"exp": 5, "iat": "x"}), "token's iat claim is not a number"),
        (_token({"exp": 5, "iat": 6}), "token's iat claim is later than its exp claim"),
        (_token({"exp": 5, "iss": 1}), "token's iss claim is not a string"),
        (_token({"exp": 5, "sub": {}}), "token's sub claim is not a string"),
        (_token({"exp": 5, "aud": [1]}), "token's aud claim is not a string or a list"),
        (_token({"exp": 5, "aud": 7}), "token's aud claim is not a string or a list"),
    ],
)
def test_unusable_tokens_raise_invalid_token_naming_the_cause(token: str, message: str) -> None:
    with pytest.raises(InvalidToken, match=f"^{message}"):
        read_claims(token)


def test_exp_given_as_nan_is_rejected() -> None:
    # Python's json accepts NaN; a token carrying it must still be refused.
    with pytest.raises(InvalidToken):
        read_claims(_raw(b"{}", b'{"exp": 1, "iat": NaN}'))


def test_errors_never_contain_or_keep_the_token() -> None:
    secret = "S3CRETS3CRET"
    bad = _raw(b"{}", b'{"exp": "' + secret.encode() + b'"')
    with pytest.raises(InvalidToken) as caught:
        read_claims(bad)
    assert secret not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


@given(st.text(max_size=300))
def test_arbitrary_strings_only_raise_invalid_token(text: str) -> None:
    try:
        claims = read_claims(text)
    except InvalidToken:
        return
    assert 0 <= claims.exp <= MAX_NUMERIC_DATE


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["exp", "iat", "iss", "sub", "aud", "nbf"]), _json))
def test_arbitrary_claims_only_raise_invalid_token(claims: dict[str, Any]) -> None:
    try:
        result = read_claims(_token(claims))
    except InvalidToken:
        return
    assert result.exp == claims["exp"]
    assert result.iat is None or result.iat <= result.exp


# --- freshness ------------------------------------------------------------------------------


def _claims(exp: float) -> TokenClaims:
    return TokenClaims(exp=exp, iat=None, iss=None, sub=None, aud=())


def test_a_token_with_enough_lifetime_is_fresh() -> None:
    check_fresh(_claims(NOW + 3600), now=NOW, min_lifetime=60)
    check_fresh(_claims(NOW + 60), now=NOW, min_lifetime=60)


@pytest.mark.parametrize("exp", [NOW, NOW - 1, 0])
def test_an_expired_token_is_not_fresh(exp: float) -> None:
    with pytest.raises(InvalidToken, match=r"^token is already expired$"):
        check_fresh(_claims(exp), now=NOW, min_lifetime=60)


def test_a_token_about_to_expire_is_not_fresh() -> None:
    with pytest.raises(InvalidToken, match=r"^token expires in 30s, less than the minimum 60s$"):
        check_fresh(_claims(NOW + 30), now=NOW, min_lifetime=60)
