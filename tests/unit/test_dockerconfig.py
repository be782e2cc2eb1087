"""Parsing and rewriting `.dockerconfigjson`: other people's entries survive, bad input is named."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pull_secret_updater.core.dockerconfig import (
    MAX_DEPTH,
    DockerConfig,
    parse_docker_config,
    with_token,
)
from pull_secret_updater.core.errors import BadInput

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJlLXNlY3JldA"


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _doc(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, b"", b"{}", b'{"auths": {}}', b' { "auths" : { } } '])
def test_empty_documents_parse_to_a_config_without_registries(raw: bytes | None) -> None:
    config = parse_docker_config(raw)
    assert config.registries == ()
    assert config.entry("cgr.dev") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"{", "not valid JSON (line 1, column 2)"),
        (b'{"auths": NaN}', "not valid JSON"),
        (b"1" * 5000, "not valid JSON (a number is out of range)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b"[]", "is a list, expected an object"),
        (b'"auths"', "is a string, expected an object"),
        (b"null", "is null, expected an object"),
        (b'{"auths": []}', "auths is a list, expected an object"),
        (b'{"auths": "x"}', "auths is a string, expected an object"),
        (b'{"auths": null}', "auths is null, expected an object"),
        (b'{"auths": {"a": {}, "cgr.dev": "secret"}}', "auths entry #2 is a string"),
        (b'{"auths": {"cgr.dev": ["secret"]}}', "auths entry #1 is a list"),
        (_doc({"deep": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}), "deeper than 64"),
    ],
)
def test_malformed_documents_raise_bad_input_naming_the_problem(raw: bytes, expected: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_docker_config(raw)
    assert caught.value.reason == "MalformedDockerConfig"
    assert expected in caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"auths": {"cgr.dev": "' + TOKEN.encode() + b'"}}',
        b'{"auths": {"cgr.dev": {"password": "' + TOKEN.encode() + b'"}}',  # truncated JSON
        b'["' + TOKEN.encode() + b'"]',
        TOKEN.encode() + b"\xff",
    ],
)
def test_errors_neither_quote_nor_keep_the_document(raw: bytes) -> None:
    with pytest.raises(BadInput) as caught:
        parse_docker_config(raw)
    assert TOKEN not in str(caught.value)
    # The decoder's exception holds the whole document; it must not ride along.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_depth_at_the_limit_is_accepted() -> None:
    nested: Any = {}
    for _ in range(MAX_DEPTH - 1):
        nested = {"x": nested}
    assert parse_docker_config(_doc(nested)).registries == ()


# --- reading entries ------------------------------------------------------------------------


def test_entry_reads_auth_field() -> None:
    config = parse_docker_config(_doc({"auths": {"cgr.dev": {"auth": _auth("_token", "abc")}}}))
    entry = config.entry("cgr.dev")
    assert entry is not None
    assert (entry.key, entry.username, entry.password) == ("cgr.dev", "_token", "abc")


def test_entry_reads_username_and_password_fields_without_auth() -> None:
    config = parse_docker_config(_doc({"auths": {"cgr.dev": {"username": "u", "password": "p"}}}))
    entry = config.entry("cgr.dev")
    assert entry is not None
    assert (entry.username, entry.password) == ("u", "p")


def test_auth_wins_over_username_and_password_as_in_kubelet() -> None:
    value = {"username": "u", "password": "old", "auth": _auth("_token", "new")}
    entry = parse_docker_config(_doc({"auths": {"cgr.dev": value}})).entry("cgr.dev")
    assert entry is not None
    assert (entry.username, entry.password) == ("_token", "new")


def test_password_may_contain_colons() -> None:
    value = {"auth": _auth("user", "a:b:c")}
    entry = parse_docker_config(_doc({"auths": {"cgr.dev": value}})).entry("cgr.dev")
    assert entry is not None
    assert (entry.username, entry.password) == ("user", "a:b:c")


@pytest.mark.parametrize(
    "auth",
    [
        "!!!not base64",
        base64.b64encode(b"no colon").decode(),
        base64.b64encode(b"\xff:x").decode(),
        42,
    ],
)
def test_undecodable_auth_gives_an_entry_without_password(auth: object) -> None:
    value = {"username": "u", "password": "p", "auth": auth}
    entry = parse_docker_config(_doc({"auths": {"cgr.dev": value}})).entry("cgr.dev")
    assert entry is not None
    assert entry.username == "u"
    assert entry.password is None


def test_entry_with_non_string_fields_has_no_credentials() -> None:
    value = {"username": 1, "password": ["x"]}
    entry = parse_docker_config(_doc({"auths": {"cgr.dev": value}})).entry("cgr.dev")
    assert entry is not None
    assert (entry.username, entry.password) == (None, None)


def test_entry_repr_hides_the_password() -> None:
    config = parse_docker_config(_doc({"auths": {"cgr.dev": {"auth": _auth("_token", TOKEN)}}}))
    assert TOKEN not in repr(config.entry("cgr.dev"))
    assert TOKEN not in repr(config)


@pytest.mark.parametrize(
    "key",
    [
        "cgr.dev",
        "https://cgr.dev",
        "http://cgr.dev",
        "cgr.dev/",
        "https://cgr.dev/",
        "https://cgr.dev/v2/",
        "https://cgr.dev/v1/",
        "CGR.dev",
    ],
)
def test_entry_recognises_the_forms_kubelet_accepts_for_a_host(key: str) -> None:
    config = parse_docker_config(_doc({"auths": {key: {"auth": _auth("u", "p")}}}))
    entry = config.entry("cgr.dev")
    assert entry is not None
    assert entry.key == key


@pytest.mark.parametrize(
    "key", ["cgr.dev/chainguard", "cgr.dev:443", "other.cgr.dev", "cgr.devx", "ftp://cgr.dev"]
)
def test_entry_does_not_match_other_hosts_or_paths(key: str) -> None:
    config = parse_docker_config(_doc({"auths": {key: {"auth": _auth("u", "p")}}}))
    assert config.entry("cgr.dev") is None


def test_exact_key_wins_over_an_alias() -> None:
    auths = {
        "https://cgr.dev": {"auth": _auth("u", "alias")},
        "cgr.dev": {"auth": _auth("u", "exact")},
    }
    entry = parse_docker_config(_doc({"auths": auths})).entry("cgr.dev")
    assert entry is not None
    assert (entry.key, entry.password) == ("cgr.dev", "exact")


def test_registry_with_port_matches_exactly() -> None:
    config = parse_docker_config(_doc({"auths": {"localhost:5000": {"auth": _auth("u", "p")}}}))
    assert config.entry("localhost:5000") is not None
    assert config.entry("localhost") is None


# --- writing --------------------------------------------------------------------------------


def test_with_token_fills_an_empty_document() -> None:
    written = json.loads(
        with_token(parse_docker_config(b"{}"), registry="cgr.dev", token="t0k", username="_token")
    )
    assert written == {
        "auths": {
            "cgr.dev": {
                "username": "_token",
                "password": "t0k",
                "auth": base64.b64encode(b"_token:t0k").decode(),
            }
        }
    }


def test_with_token_output_is_compact_and_keeps_order() -> None:
    raw = b'{"z": 1, "auths": {"b.io": {"auth": "YTpi"}, "cgr.dev": {"auth": "old"}}, "a": 2}'
    out = with_token(parse_docker_config(raw), registry="cgr.dev", token="T", username="_token")
    auth = base64.b64encode(b"_token:T").decode()
    assert out == (
        b'{"z":1,"auths":{"b.io":{"auth":"YTpi"},'
        b'"cgr.dev":{"username":"_token","password":"T","auth":"' + auth.encode() + b'"}},"a":2}'
    )


def test_with_token_replaces_our_entry_whole() -> None:
    # A stale identitytoken beside a fresh password would be preferred by some clients.
    raw = _doc({"auths": {"cgr.dev": {"auth": "x", "identitytoken": "stale", "email": "e"}}})
    out = json.loads(
        with_token(parse_docker_config(raw), registry="cgr.dev", token="T", username="_token")
    )
    assert set(out["auths"]["cgr.dev"]) == {"username", "password", "auth"}


def test_with_token_keeps_other_entries_and_top_level_keys() -> None:
    original = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": _auth("me", "pw"), "email": "me@x"},
            "https://cgr.dev": {"auth": _auth("someone", "else")},
        },
        "credHelpers": {"gcr.io": "gcloud"},
        "psFormat": "table",
        "proxies": {"default": {"httpProxy": "http://p:3128"}},
    }
    out = json.loads(
        with_token(
            parse_docker_config(_doc(original)), registry="cgr.dev", token="T", username="_token"
        )
    )
    assert {k: v for k, v in out.items() if k != "auths"} == {
        k: v for k, v in original.items() if k != "auths"
    }
    assert {k: v for k, v in out["auths"].items() if k != "cgr.dev"} == original["auths"]


def test_with_token_writes_the_bare_host_key_beside_an_alias() -> None:
    raw = _doc({"auths": {"https://cgr.dev/": {"auth": _auth("u", "p")}}})
    config = parse_docker_config(
        with_token(parse_docker_config(raw), registry="cgr.dev", token="T", username="_token")
    )
    entry = config.entry("cgr.dev")
    assert entry is not None
    assert (entry.key, entry.password) == ("cgr.dev", "T")
    assert config.registries == ("https://cgr.dev/", "cgr.dev")


def test_with_token_output_is_ascii_even_for_lone_surrogates() -> None:
    raw = b'{"note": "\\ud800 caf\\u00e9", "auths": {}}'
    out = with_token(parse_docker_config(raw), registry="cgr.dev", token="T", username="_token")
    assert out.isascii()
    assert json.loads(out)["note"] == json.loads(raw)["note"]


def test_with_token_does_not_modify_the_parsed_config() -> None:
    config = parse_docker_config(_doc({"auths": {"a.io": {"auth": "x"}}}))
    with_token(config, registry="cgr.dev", token="T", username="_token")
    assert config.registries == ("a.io",)


@pytest.mark.parametrize("registry", ["", "https://cgr.dev", "cgr.dev/", " cgr.dev"])
def test_with_token_rejects_a_registry_that_is_not_a_bare_host(registry: str) -> None:
    with pytest.raises(ValueError, match="bare host"):
        with_token(DockerConfig({}), registry=registry, token="T", username="_token")


def test_with_token_rejects_an_empty_token() -> None:
    with pytest.raises(ValueError, match="token"):
        with_token(DockerConfig({}), registry="cgr.dev", token="", username="_token")


# --- properties -----------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
_entry = st.dictionaries(
    st.sampled_from(["auth", "username", "password", "email", "identitytoken"]) | st.text(),
    _json,
    max_size=5,
)
_hosts = (
    st.sampled_from(["cgr.dev", "https://cgr.dev", "index.docker.io", "gcr.io", "x"]) | st.text()
)
_configs = st.fixed_dictionaries(
    {"auths": st.dictionaries(_hosts, _entry, max_size=5)},
    optional={"credHelpers": _json, "credsStore": st.text(), "HttpHeaders": _json},
).flatmap(
    lambda fixed: st.dictionaries(st.text(), _json, max_size=3).map(
        lambda extra: {**{k: v for k, v in extra.items() if k != "auths"}, **fixed}
    )
)
# Every provider's credentials are printable ASCII (what the controller reads back as a password).
_tokens = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=200
)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_bad_input(raw: bytes) -> None:
    reason = None
    try:
        config = parse_docker_config(raw)
    except BadInput as e:
        reason = e.reason
    else:
        assert isinstance(config.registries, tuple)
    assert reason in (None, "MalformedDockerConfig")


@given(_json)
def test_arbitrary_json_parses_or_raises_bad_input(value: Any) -> None:
    reason = None
    try:
        config = parse_docker_config(json.dumps(value).encode())
    except BadInput as e:
        reason = e.reason
    else:
        for registry in (*config.registries, "cgr.dev"):
            config.entry(registry)
    assert reason in (None, "MalformedDockerConfig")


@given(_configs, _tokens)
def test_with_token_keeps_everything_else_and_sets_the_entry(
    original: dict[str, Any], token: str
) -> None:
    out = with_token(
        parse_docker_config(_doc(original)), registry="cgr.dev", token=token, username="_token"
    )
    written = json.loads(out)
    assert {k: v for k, v in written.items() if k != "auths"} == {
        k: v for k, v in original.items() if k != "auths"
    }
    assert {k: v for k, v in written["auths"].items() if k != "cgr.dev"} == {
        k: v for k, v in original["auths"].items() if k != "cgr.dev"
    }
    entry = parse_docker_config(out).entry("cgr.dev")
    assert entry is not None
    assert (entry.key, entry.username, entry.password) == ("cgr.dev", "_token", token)


@given(_configs, _tokens)
def test_with_token_is_idempotent(original: dict[str, Any], token: str) -> None:
    once = with_token(
        parse_docker_config(_doc(original)), registry="cgr.dev", token=token, username="_token"
    )
    twice = with_token(
        parse_docker_config(once), registry="cgr.dev", token=token, username="_token"
    )
    assert twice == once
