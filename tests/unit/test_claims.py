"""Reading a token's claims without its key, judging the claims of a verified token, and
refusing tokens that cannot be used."""

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
    check_claims,
    read_claims,
)
from pull_secret_updater.core.credential import Credential

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


# --- the claims of a verified token ----------------------------------------------------------

ISSUER = "https://issuer.enforce.dev"
AUDIENCE = "cgr.dev"
SUBJECT = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"
LEEWAY = 60.0
#: A claim left out of the payload.
_ABSENT = object()


def _payload(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": NOW - 10,
        "exp": NOW + 3600,
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not _ABSENT}


def _check(payload: dict[str, object], *, now: float = NOW) -> TokenClaims:
    return check_claims(payload, issuer=ISSUER, audience=AUDIENCE, now=now, leeway=LEEWAY)


def test_the_claims_of_a_token_for_us_are_returned() -> None:
    assert _check(_payload()) == TokenClaims(
        exp=NOW + 3600, iat=NOW - 10, iss=ISSUER, sub=SUBJECT, aud=(AUDIENCE,)
    )


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": ["other.example", AUDIENCE]}, id="audience among others"),
        pytest.param({"iat": NOW + LEEWAY}, id="iat ahead by the leeway"),
        pytest.param({"nbf": NOW + LEEWAY}, id="nbf ahead by the leeway"),
        pytest.param({"nbf": NOW - 10}, id="nbf passed"),
        pytest.param({"iat": NOW - 7200, "exp": NOW - 3600}, id="expired: still ours to replace"),
        pytest.param({"jti": "x", "extra": {"nested": [1]}}, id="claims we do not read"),
    ],
)
def test_claims_that_are_acceptable(overrides: dict[str, object]) -> None:
    claims = _check(_payload(**overrides))
    assert claims.sub == SUBJECT


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.example"}, "token was not issued by the configured token service"),
        ({"iss": ISSUER + "/"}, "token was not issued by the configured token service"),
        ({"iss": _ABSENT}, "token has no iss claim"),
        ({"iss": ""}, "token has no iss claim"),
        ({"aud": "other.example"}, "token is not for the registry cgr.dev"),
        ({"aud": ["a", "b"]}, "token is not for the registry cgr.dev"),
        ({"aud": _ABSENT}, "token is not for the registry cgr.dev"),
        ({"aud": "cgr.dev.evil.example"}, "token is not for the registry cgr.dev"),
        ({"sub": _ABSENT}, "token has no sub claim"),
        ({"sub": ""}, "token has no sub claim"),
        ({"sub": 7}, "token's sub claim is not a string"),
        ({"iat": _ABSENT}, "token has no iat claim"),
        ({"iat": NOW + LEEWAY + 1}, r"token's iat claim lies in the future \(is a clock wrong\?\)"),
        ({"exp": NOW - 10}, r"token's lifetime is empty \(iat is not before exp\)"),
        ({"exp": NOW - 11}, "token's iat claim is later than its exp claim"),
        ({"exp": _ABSENT}, "token has no exp claim"),
        ({"exp": "soon"}, "token's exp claim is not a number"),
        ({"nbf": NOW + LEEWAY + 1}, r"token is not valid yet \(nbf lies in the future\)"),
        ({"nbf": "now"}, "token's nbf claim is not a number"),
        ({"nbf": None}, "token's nbf claim is not a number"),
    ],
)
def test_claims_that_are_refused_name_the_cause(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidToken, match=f"^{message}"):
        _check(_payload(**overrides))


def test_a_refusal_never_quotes_the_claims() -> None:
    secret = "S3CRETS3CRET"
    for overrides in ({"iss": f"https://{secret}.example"}, {"aud": secret}, {"nbf": secret}):
        with pytest.raises(InvalidToken) as caught:
            _check(_payload(**overrides))
        assert secret not in str(caught.value)
        assert caught.value.__context__ is None


@given(
    st.dictionaries(
        st.sampled_from(["exp", "iat", "iss", "sub", "aud", "nbf"]),
        _json | st.sampled_from([ISSUER, AUDIENCE, SUBJECT, NOW, NOW + 3600]),
    )
)
def test_arbitrary_claims_are_either_refused_or_satisfy_every_rule(
    payload: dict[str, Any],
) -> None:
    try:
        claims = _check(payload)
    except InvalidToken:
        return
    assert claims.iss == ISSUER
    assert AUDIENCE in claims.aud
    assert claims.sub
    assert claims.iat is not None
    assert claims.iat < claims.exp
    assert claims.iat <= NOW + LEEWAY


def test_a_verified_tokens_repr_holds_no_token() -> None:
    verified = Credential(
        token="eyJ.S3CRET.sig",
        identity=SUBJECT,
        provider="chainguard",
        registries=(AUDIENCE,),
        username="_token",
        issued_at=NOW,
        expires_at=NOW + 600,
        key_id="k1",
    )
    assert "S3CRET" not in repr(verified)
    assert verified.lifetime == 600
