"""Reading a token's claims without its key, judging the claims of a verified token, and
refusing tokens that cannot be used."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from hypothesis import event, given
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


# --- one change to valid claims: refused, or read and judged as it stands ----------------------
#
# Each example draws claims that keep every rule, and asserts that they are read and accepted
# as they are: every example reaches the accepting branch by construction. Then it changes one
# claim (each claim in turn, so the edges of every rule come up in each run) or splices text
# into the token, and asserts that the result is refused or still keeps every rule; `event`
# shows how many changes were accepted (--hypothesis-show-statistics).

CLAIMS = ("exp", "iat", "iss", "sub", "aud", "nbf")


def _json_values(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | st.text(),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
        ),
        max_leaves=10,
    )


#: What Python's json writes, NaN and Infinity included (which a token's JSON cannot hold).
_json = _json_values(st.floats())
_valid_json = _json_values(st.floats(allow_nan=False, allow_infinity=False))
_times = st.integers(0, MAX_NUMERIC_DATE) | st.floats(0, MAX_NUMERIC_DATE)


@st.composite
def _valid_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Claims `check_claims` accepts (and so `read_claims` reads), with claims it ignores."""
    iat = draw(st.integers(0, int(NOW + LEEWAY)) | st.floats(0, NOW + LEEWAY))
    # Mostly beyond the leeway (unexpired), so that a change of iat up to there is not
    # refused for ending the token's lifetime instead.
    exp = draw(
        st.integers(int(NOW + LEEWAY) + 2, MAX_NUMERIC_DATE)
        | st.integers(int(iat) + 1, MAX_NUMERIC_DATE)
        | st.floats(iat, MAX_NUMERIC_DATE, exclude_min=True)
    )
    others = draw(st.lists(st.text(), max_size=3))
    at = draw(st.integers(0, len(others)))
    audience = draw(st.just(AUDIENCE) | st.just([*others[:at], AUDIENCE, *others[at:]]))
    payload: dict[str, Any] = {
        **draw(
            st.dictionaries(st.text().filter(lambda k: k not in CLAIMS), _valid_json, max_size=2)
        ),
        "iss": ISSUER,
        "aud": audience,
        "sub": draw(st.text(min_size=1)),
        "iat": iat,
        "exp": exp,
    }
    nbf = draw(st.none() | st.integers(0, int(NOW + LEEWAY)) | st.floats(0, NOW + LEEWAY))
    if nbf is not None:
        payload["nbf"] = nbf
    return payload


@dataclass(frozen=True)
class _Copy:
    """The value of another claim of the same payload."""

    claim: str


#: Values at the edges of each claim's rules: removed, empty, of another type, just outside.
_EDGES: dict[str, list[object]] = {
    "iss": [_ABSENT, "", ISSUER + "/", None, 7, _Copy("sub")],
    "aud": [_ABSENT, "", [], [""], ["other.example"], AUDIENCE + ".evil.example", None, [7]],
    "sub": [_ABSENT, "", None, 7],
    "iat": [_ABSENT, -1, NOW + LEEWAY, NOW + LEEWAY + 1, None, "1", _Copy("exp")],
    "exp": [_ABSENT, -1, 0, NOW, MAX_NUMERIC_DATE + 1, None, "1", _Copy("iat")],
    "nbf": [-1, NOW + LEEWAY, NOW + LEEWAY + 1, MAX_NUMERIC_DATE + 1, None, "1", _Copy("exp")],
}


def _values_for(claim: str) -> st.SearchStrategy[object]:
    """A new value for `claim`: at an edge of its rules, any time, or anything."""
    return st.sampled_from(_EDGES[claim]) | _times | _json


def _changed(payload: dict[str, Any], claim: str, value: object) -> dict[str, Any]:
    if isinstance(value, _Copy):
        value = payload.get(value.claim, _ABSENT)
    changed = {**payload, claim: value}
    return {key: kept for key, kept in changed.items() if kept is not _ABSENT}


def _audience_of(payload: dict[str, Any]) -> tuple[str, ...]:
    aud = payload.get("aud")
    return () if aud is None else (aud,) if isinstance(aud, str) else tuple(aud)


def _claims_of(payload: dict[str, Any]) -> TokenClaims:
    """The claims as `read_claims` should return them, read by hand."""
    return TokenClaims(
        exp=payload["exp"],
        iat=payload.get("iat"),
        iss=payload.get("iss"),
        sub=payload.get("sub"),
        aud=_audience_of(payload),
    )


@pytest.mark.parametrize("claim", CLAIMS)
@given(data=st.data())
def test_a_token_with_a_claim_changed_is_refused_or_read_as_it_stands(
    claim: str, data: st.DataObject
) -> None:
    valid = data.draw(_valid_payloads())
    assert read_claims(_token(valid)) == _claims_of(valid)
    payload = _changed(valid, claim, data.draw(_values_for(claim)))
    try:
        claims = read_claims(_token(payload))
    except InvalidToken:
        event("changed: refused")
        return
    event("changed: read")
    assert claims == _claims_of(payload)
    assert 0 <= claims.exp <= MAX_NUMERIC_DATE
    assert claims.iat is None or claims.iat <= claims.exp


#: Text to splice in: a few characters a token may hold (so the parts still split and decode
#: as base64url, into other bytes), or any text.
_splice_text = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=6
) | st.text(max_size=300)


@given(_valid_payloads(), st.data())
def test_a_token_with_any_text_spliced_in_only_raises_invalid_token(
    valid: dict[str, Any], data: st.DataObject
) -> None:
    token = _token(valid)
    assert read_claims(token) == _claims_of(valid)
    start = data.draw(st.integers(0, len(token)))
    end = data.draw(st.integers(start, len(token)) | st.integers(start, start + 3))
    text = data.draw(_splice_text)
    try:
        claims = read_claims(token[:start] + text + token[end:])
    except InvalidToken:
        event("spliced: refused")
        return
    event("spliced: read")
    assert 0 <= claims.exp <= MAX_NUMERIC_DATE
    assert claims.iat is None or claims.iat <= claims.exp


@pytest.mark.parametrize("claim", CLAIMS)
@given(data=st.data())
def test_claims_with_one_changed_are_refused_or_satisfy_every_rule(
    claim: str, data: st.DataObject
) -> None:
    valid = data.draw(_valid_payloads())
    assert _check(valid) == _claims_of(valid)
    payload = _changed(valid, claim, data.draw(_values_for(claim)))
    try:
        claims = _check(payload)
    except InvalidToken:
        event("changed: refused")
        return
    event("changed: accepted")
    assert claims == _claims_of(payload)
    assert claims.iss == ISSUER
    assert AUDIENCE in claims.aud
    assert claims.sub
    assert claims.iat is not None
    assert claims.iat < claims.exp
    assert claims.iat <= NOW + LEEWAY
    assert payload.get("nbf", 0) <= NOW + LEEWAY
