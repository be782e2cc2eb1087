"""The plugin's options and malformed requests: one line on stderr, exit 2, nothing sent, and
never the request's token, whatever the request looks like."""

from __future__ import annotations

import json
import traceback

import pytest

from pull_secret_updater.credentialprovider.options import Options, UsageError, parse_options
from pull_secret_updater.credentialprovider.protocol import (
    MAX_REQUEST_BYTES,
    BadRequest,
    parse_request,
)
from tests.credentialprovider.support import POD_SA_TOKEN, call, request
from tests.fakes import FakeClock
from tests.tokens.fakes import FakeTokenService


def test_the_defaults_are_chainguards() -> None:
    assert parse_options([]) == Options(
        issuer="https://issuer.enforce.dev",
        registry="cgr.dev",
        timeout=10,
        deadline=45,
        min_lifetime=30,
        cache_margin=300,
        max_cache=4 * 3600,
        identity_annotation="pull-secret-updater.chainguard.dev/identity",
    )


def test_a_bare_issuer_host_is_taken_as_https() -> None:
    assert parse_options(["--issuer=issuer.example/"]).issuer == "https://issuer.example"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--issuer=http://issuer.example"], "https://"),
        (["--registry=cgr.dev/chainguard"], "registry host"),
        (["--timeout=0"], "--timeout must be"),
        (["--deadline=nan"], "--deadline must be"),
        (["--cache-margin=-1"], "--cache-margin must be"),
        (["--node-token-file=/x"], "go together"),
        (["--node-identity=abc/def"], "go together"),
        (["--node-token-file=/x", "--node-identity=a b"], "--node-identity"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_a_bad_option_is_a_usage_error(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_options(argv)


def test_a_bad_option_ends_the_call_with_one_line_and_status_2() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(), "--timeout=-1")
    assert outcome.status == 2
    assert outcome.stderr == (
        "pull-secret-updater-credential-provider: --timeout must be a number of seconds > 0\n"
    )
    assert service.requests == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the request is empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"image": "cgr.dev/x"}).encode(), "unsupported apiVersion"),
        (
            json.dumps(
                {**request(), "apiVersion": "credentialprovider.kubelet.k8s.io/v2"}
            ).encode(),
            "unsupported apiVersion 'credentialprovider.kubelet.k8s.io/v2'",
        ),
        (json.dumps({**request(), "kind": "Pod"}).encode(), "kind is not"),
        (json.dumps({**request(), "image": " "}).encode(), "names no image"),
        (json.dumps({**request(), "serviceAccountToken": 7}).encode(), "not a string"),
        (
            json.dumps({**request(), "serviceAccountAnnotations": {"a": 1}}).encode(),
            "not a map of strings",
        ),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_malformed_request_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_request(raw)


def test_an_oversized_request_is_refused() -> None:
    with pytest.raises(BadRequest, match="larger than"):
        parse_request(b" " * (MAX_REQUEST_BYTES + 1))


def test_a_request_that_is_almost_json_keeps_its_token_out_of_the_error() -> None:
    raw = json.dumps(request()).encode()[:-1]  # cut short: the decoder sees the token
    with pytest.raises(BadRequest) as caught:
        parse_request(raw)
    printed = "\n".join(traceback.format_exception(caught.value))
    assert POD_SA_TOKEN not in printed
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


def test_a_malformed_request_ends_the_call_with_one_line_and_no_token() -> None:
    service = FakeTokenService(clock=FakeClock())
    raw = json.dumps({**request(), "apiVersion": POD_SA_TOKEN}).encode()
    outcome = call(service, raw)
    assert outcome.status == 2
    assert POD_SA_TOKEN not in outcome.stderr
    assert "unsupported apiVersion '?'" in outcome.stderr
    assert outcome.stdout == b""


def test_the_parsed_request_never_shows_its_token() -> None:
    parsed = parse_request(json.dumps(request()).encode())
    assert parsed.service_account_token == POD_SA_TOKEN
    assert POD_SA_TOKEN not in repr(parsed)
    assert parsed.registry == "cgr.dev"
