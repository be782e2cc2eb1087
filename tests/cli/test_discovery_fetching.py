"""The issuer and keys are read from the API server, and each way that fails says why."""

from __future__ import annotations

import httpx2
import pytest

from pull_secret_updater.kube.errors import Transient
from pull_secret_updater.tools.discovery import ClusterIssuer, fetch_issuer
from pull_secret_updater.tools.errors import ToolError
from tests.cli.fakes import fake_client
from tests.fakes import status_reply

ISSUER = "https://kubernetes.default.svc.cluster.local"
JWKS = {"keys": [{"kty": "RSA", "kid": "k", "n": "q83v", "e": "AQAB"}]}


async def fetch(discovery: httpx2.Response, jwks: httpx2.Response) -> ClusterIssuer:
    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return discovery
        if request.url.path == "/openid/v1/jwks":
            # NB: a real API server answers 406 unless this media type is acceptable.
            assert "application/jwk-set+json" in request.headers["Accept"]
            return jwks
        return httpx2.Response(404)

    client = fake_client(handle)
    try:
        return await fetch_issuer(client)
    finally:
        await client.close()


async def test_issuer_and_keys_come_from_the_api_server() -> None:
    found = await fetch(
        httpx2.Response(200, json={"issuer": ISSUER}), httpx2.Response(200, json=JWKS)
    )
    assert found.issuer == ISSUER
    assert found.jwks == JWKS


@pytest.mark.parametrize(
    ("discovery", "jwks", "words"),
    [
        (httpx2.Response(404), httpx2.Response(200, json=JWKS),
         "does not serve /.well-known/openid-configuration (404)"),
        (status_reply(403, "no", reason="Forbidden"), httpx2.Response(200, json=JWKS),
         "needs the ClusterRole system:service-account-issuer-discovery"),
        (status_reply(401, "no", reason="Unauthorized"), httpx2.Response(200, json=JWKS),
         "did not accept the kubeconfig's credentials"),
        (httpx2.Response(200, text="<html>"), httpx2.Response(200, json=JWKS),
         "is not a JSON object"),
        (httpx2.Response(200, json={"jwks_uri": "x"}), httpx2.Response(200, json=JWKS),
         "has no issuer"),
        (httpx2.Response(200, json={"issuer": ISSUER}), httpx2.Response(200, json={"keys": []}),
         "/openid/v1/jwks holds no keys"),
    ],
)  # fmt: skip
async def test_failures_say_what_is_wrong(
    discovery: httpx2.Response, jwks: httpx2.Response, words: str
) -> None:
    with pytest.raises(ToolError) as caught:
        await fetch(discovery, jwks)
    assert words in caught.value.message


async def test_an_overloaded_api_server_is_a_kube_error() -> None:
    with pytest.raises(Transient) as caught:
        await fetch(status_reply(503, "busy", reason="ServiceUnavailable"), httpx2.Response(200))
    assert "GET /.well-known/openid-configuration: 503" in caught.value.message
