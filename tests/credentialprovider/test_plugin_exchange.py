"""The plugin's one call: the Pod's ServiceAccount token is exchanged for the identity in its
annotation, the returned token is verified, and the kubelet gets the registry's credentials
with a cache duration from the token's verified expiry."""

from __future__ import annotations

import io
import json
import socket

import httpx2
import pytest

from pull_secret_updater.credentialprovider import plugin
from pull_secret_updater.credentialprovider.protocol import API_GROUP
from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from tests.credentialprovider.support import IMAGE, POD_SA_TOKEN, call, request
from tests.fakes import NOW, REGISTRY, FakeClock
from tests.tokens.fakes import (
    ATTACKER_KEY,
    DISCOVERY_PATH,
    EXCHANGE_PATH,
    IDENTITY,
    KEYS_PATH,
    FakeTokenService,
    claims,
)

OTHER_IDENTITY = "89abcdef/0123456789"


def test_the_pods_token_is_exchanged_for_the_annotated_identity() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(annotations={IDENTITY_KEY: OTHER_IDENTITY}))

    assert outcome.status == 0, outcome.stderr
    assert outcome.stderr == ""
    [exchange] = [r for r in service.requests if r.url.path == EXCHANGE_PATH]
    assert exchange.headers["Authorization"] == f"Bearer {POD_SA_TOKEN}"
    assert list(exchange.url.params.multi_items()) == [
        ("aud", REGISTRY),
        ("identity", OTHER_IDENTITY),
    ]
    # Verified against the published keys before anything was answered.
    assert service.hits(DISCOVERY_PATH) == service.hits(KEYS_PATH) == 1


def test_the_answer_is_the_registrys_credentials_cached_until_the_margin_before_expiry() -> None:
    service = FakeTokenService(clock=FakeClock())
    issued = service.mint(IDENTITY)

    async def issue(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"token": issued})

    service.exchange = issue
    outcome = call(service, request())

    answer = outcome.answer
    assert answer == {
        "apiVersion": f"{API_GROUP}/v1",
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": "3300s",
        "auth": {REGISTRY: {"username": "_token", "password": issued}},
    }
    assert outcome.stdout.endswith(b"\n")


def test_the_cache_duration_follows_the_tokens_own_expiry_and_the_margin_option() -> None:
    service = FakeTokenService(clock=FakeClock(), lifetime=900)
    service.clock.now = NOW + 100  # the token is issued now, and lives 900 s
    outcome = call(service, request(), "--cache-margin=60")
    assert outcome.answer["cacheDuration"] == "840s"


def test_a_token_that_expires_within_the_margin_is_handed_over_but_not_cached() -> None:
    service = FakeTokenService(clock=FakeClock(), lifetime=200)
    outcome = call(service, request())
    assert outcome.answer["cacheDuration"] == "0s"
    assert outcome.answer["auth"][REGISTRY]["password"]


@pytest.mark.parametrize("version", ["v1beta1", "v1alpha1"])
def test_the_answer_carries_the_requests_api_version(version: str) -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(api_version=f"{API_GROUP}/{version}"))
    assert outcome.answer["apiVersion"] == f"{API_GROUP}/{version}"


def test_an_identity_that_does_not_trust_the_service_account_is_the_services_403() -> None:
    service = FakeTokenService(clock=FakeClock())

    async def refuse(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            403,
            json={"code": "permission_denied", "message": "no identity trusts this token"},
        )

    service.exchange = refuse
    outcome = call(service, request())

    assert outcome.status == 1
    assert outcome.stdout == b""
    assert outcome.stderr.count("\n") == 1
    assert outcome.stderr == (
        "pull-secret-updater-credential-provider: exchange for identity "
        f"{IDENTITY} as ServiceAccount team-a/app failed: token service answered 403 "
        "permission_denied: no identity trusts this token\n"
    )


def test_a_token_echoed_in_the_services_error_never_reaches_stderr() -> None:
    service = FakeTokenService(clock=FakeClock())

    async def echo(request: httpx2.Request) -> httpx2.Response:
        bearer = request.headers["Authorization"]
        return httpx2.Response(400, json={"code": "invalid_argument", "message": bearer})

    service.exchange = echo
    outcome = call(service, request())

    assert outcome.status == 1
    assert POD_SA_TOKEN not in outcome.stderr
    assert POD_SA_TOKEN[:20] not in outcome.stderr
    assert "[redacted]" in outcome.stderr


def test_a_returned_token_that_does_not_verify_is_refused_and_not_handed_over() -> None:
    service = FakeTokenService(clock=FakeClock())
    forged = ATTACKER_KEY.sign(claims(identity=IDENTITY))

    async def forge(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"token": forged})

    service.exchange = forge
    outcome = call(service, request())

    assert outcome.status == 1
    assert outcome.stdout == b""
    assert "a token that cannot be trusted" in outcome.stderr
    assert "signature does not verify" in outcome.stderr
    assert forged not in outcome.stderr


def test_a_token_for_another_identity_is_refused() -> None:
    service = FakeTokenService(clock=FakeClock())

    async def other(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"token": service.mint(OTHER_IDENTITY)})

    service.exchange = other
    outcome = call(service, request())
    assert outcome.status == 1
    assert "a token for another identity" in outcome.stderr


def test_without_the_token_services_keys_nothing_is_exchanged() -> None:
    service = FakeTokenService(clock=FakeClock())
    service.failing[KEYS_PATH] = 503
    outcome = call(service, request())

    assert outcome.status == 1
    assert service.hits(EXCHANGE_PATH) == 0
    assert "key set" in outcome.stderr
    assert "503" in outcome.stderr
    # One line: the verifier's own warning is not printed beside it.
    assert outcome.stderr.count("\n") == 1


def test_an_outage_is_one_line_and_a_failure() -> None:
    service = FakeTokenService(clock=FakeClock())
    service.failing[EXCHANGE_PATH] = 503
    outcome = call(service, request())
    assert outcome.status == 1
    assert outcome.stderr.endswith("failed: token service answered 503 unavailable\n")


def test_a_token_service_that_does_not_answer_in_time_fails_before_the_kubelet_kills_us() -> None:
    # A real socket that takes the connection and never says a word: the TLS handshake waits,
    # on the plugin's own transport, until the call's deadline (not the 5 s request timeout).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        stdout, stderr = io.BytesIO(), io.StringIO()
        status = plugin.run(
            [f"--issuer=https://127.0.0.1:{port}", f"--registry={REGISTRY}", "--deadline=0.2",
             "--timeout=5"],
            stdin=io.BytesIO(json.dumps(request()).encode()), stdout=stdout, stderr=stderr,
        )  # fmt: skip
    assert status == 1
    assert stdout.getvalue() == b""
    assert stderr.getvalue().endswith(
        "failed: no answer from the token service within the deadline of 0.2s\n"
    )


def test_an_image_on_another_registry_is_not_exchanged_for() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(image="registry.example/app:1"))
    assert outcome.status == 2
    assert service.requests == []
    assert "is not on the registry cgr.dev" in outcome.stderr
    assert "matchImages" in outcome.stderr


def test_the_image_is_matched_on_its_registry_only() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(image=IMAGE.replace(REGISTRY, REGISTRY.upper())))
    assert outcome.status == 0, outcome.stderr
