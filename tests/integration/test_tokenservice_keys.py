"""The STS's keys as its clients see them: discovery, the JWKS, rotation and outages.

A client verifies an STS token with nothing but the issuer URL: the discovery document names
the ``jwks_uri``, and the JWKS there holds the key. These tests verify that way (PyJWT's own
JWKS client), rotate the signing key gracefully and abruptly, count the fetches a caching
client saves, and take the keys away while exchanges keep working.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import jwt
import pytest

from devstack.tokenservice import ReadyInfo, TokenServiceAdmin, TokenServiceError
from tests.integration.tokenservice_support import (
    KUBE_ISSUER,
    LIFETIME,
    REGISTRY_AUDIENCE,
    REGISTRY_SERVICE,
    SUBJECT,
    DiscoveredVerifier,
    SaSigner,
    Tls,
    client_for,
    exchange,
    exchanged_token,
    registry_token,
    running_service,
)

pytestmark = pytest.mark.usefixtures("fresh_service_state")

DISCOVERY = "/.well-known/openid-configuration"


def published_kids(sts: httpx2.Client) -> list[str]:
    return [key["kid"] for key in sts.get("/.well-known/jwks.json").json()["keys"]]


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


# -- what a client needs to verify a token ----------------------------------------------------


def test_exchanged_token_verifies_through_discovery_with_the_standard_claims(
    sts: httpx2.Client, service: ReadyInfo, tls: Tls, kube: SaSigner, identity: str
) -> None:
    before = int(time.time())
    token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)

    claims = DiscoveredVerifier.discover(service.issuer_url, tls).verify(
        token, audience=REGISTRY_AUDIENCE
    )

    assert claims["iss"] == service.issuer_url
    assert claims["sub"] == identity
    assert claims["aud"] == REGISTRY_AUDIENCE
    assert before - 1 <= claims["iat"] <= time.time() + 1
    assert claims["exp"] == claims["iat"] + LIFETIME
    assert len(claims["jti"]) >= 16
    assert claims["jti"] != unverified_jti(exchanged_token(sts, identity, kube, aud="cgr.dev"))


def unverified_jti(token: str) -> str:
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


def test_a_token_for_several_audiences_lists_them_all(
    sts: httpx2.Client, service: ReadyInfo, tls: Tls, kube: SaSigner, identity: str
) -> None:
    response = sts.post(
        "/sts/exchange",
        json={"aud": ["cgr.dev", "other.example"], "identity": identity},
        headers={"Authorization": f"Bearer {kube.token()}"},
    )

    assert response.status_code == 200, response.text
    verifier = DiscoveredVerifier.discover(service.issuer_url, tls)
    claims = verifier.verify(response.json()["token"], audience="other.example")
    assert claims["aud"] == ["cgr.dev", "other.example"]


# -- rotation ---------------------------------------------------------------------------------


def test_graceful_rotation_signs_with_a_new_key_and_keeps_the_old_one_published(
    sts: httpx2.Client,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    service: ReadyInfo,
    tls: Tls,
    kube: SaSigner,
    identity: str,
) -> None:
    old_token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)

    new_kid = admin.rotate_signing_key(keep_previous=True)

    new_token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)
    assert new_kid != kid_of(old_token)
    assert kid_of(new_token) == new_kid
    assert published_kids(sts)[:2] == [new_kid, kid_of(old_token)]
    verifier = DiscoveredVerifier.discover(service.issuer_url, tls)
    for token in (old_token, new_token):
        assert verifier.verify(token, audience=REGISTRY_AUDIENCE)["sub"] == identity
        assert registry_token(registry, ("_token", token)).status_code == 200


def test_abrupt_rotation_drops_the_old_key_and_its_tokens(
    sts: httpx2.Client,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    service: ReadyInfo,
    tls: Tls,
    kube: SaSigner,
    identity: str,
) -> None:
    admin.rotate_signing_key(keep_previous=True)  # so there is an older key to drop, too
    old_token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)

    new_kid = admin.rotate_signing_key(keep_previous=False)

    assert published_kids(sts) == [new_kid]
    verifier = DiscoveredVerifier.discover(service.issuer_url, tls)
    with pytest.raises(jwt.PyJWKClientError):
        verifier.verify(old_token, audience=REGISTRY_AUDIENCE)
    refused = registry_token(registry, ("_token", old_token))
    assert refused.status_code == 401
    assert "key id" in refused.json()["message"]
    new_token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)
    assert verifier.verify(new_token, audience=REGISTRY_AUDIENCE)["sub"] == identity
    assert registry_token(registry, ("_token", new_token)).status_code == 200


def test_rotated_keys_survive_a_restart(tmp_path: Path, tls: Tls, kube: SaSigner) -> None:
    state = tmp_path / "state"
    extra = [f"--registry-service={REGISTRY_SERVICE}", f"--registry-audience={REGISTRY_AUDIENCE}"]
    with (
        running_service(tmp_path, tls, state_dir=state, extra=extra) as first,
        TokenServiceAdmin.from_ready(first, tls.ca_file) as admin,
        client_for(first.sts_url, tls) as sts,
    ):
        uid = admin.create_identity(
            name="kind", issuer=KUBE_ISSUER, subject=SUBJECT, issuer_keys=kube.jwks()
        )
        [original] = published_kids(sts)
        rotated = admin.rotate_signing_key(keep_previous=True)

    def after_restart(rotate: bool) -> tuple[list[str], str]:
        """The published kids, and the kid an exchange is signed with, after a restart."""
        with (
            running_service(tmp_path, tls, state_dir=state, extra=extra) as ready,
            TokenServiceAdmin.from_ready(ready, tls.ca_file) as admin,
            client_for(ready.sts_url, tls) as sts,
        ):
            published = published_kids(sts), kid_of(exchanged_token(sts, uid, kube, aud="x"))
            if rotate:
                admin.rotate_signing_key(keep_previous=False)
            return published

    assert after_restart(rotate=True) == ([rotated, original], rotated)
    published, signing = after_restart(rotate=False)
    assert published == [signing]
    assert signing not in (rotated, original)


def test_rotation_refuses_a_keep_previous_that_is_not_a_boolean(
    service: ReadyInfo, tls: Tls
) -> None:
    with client_for(service.admin_url, tls) as client:
        response = client.post(
            "/admin/keys/rotate",
            json={"keep_previous": "yes"},
            headers={"Authorization": f"Bearer {service.admin_token}"},
        )

    assert response.status_code == 400
    assert "keep_previous" in response.json()["message"]


# -- fetches ----------------------------------------------------------------------------------


def test_discovery_and_jwks_fetches_are_counted_until_reset(
    sts: httpx2.Client, admin: TokenServiceAdmin
) -> None:
    admin.reset_stats()
    for _ in range(2):
        sts.get(DISCOVERY)
    for _ in range(3):
        sts.get("/.well-known/jwks.json")

    stats = admin.stats()

    assert (stats["discovery_fetches"], stats["jwks_fetches"]) == (2, 3)
    admin.reset_stats()
    assert (admin.stats()["discovery_fetches"], admin.stats()["jwks_fetches"]) == (0, 0)


@pytest.mark.parametrize(("cache", "jwks_fetches"), [(True, 1), (False, 3)])
def test_counts_show_whether_a_client_caches_the_keys(
    cache: bool,
    jwks_fetches: int,
    sts: httpx2.Client,
    admin: TokenServiceAdmin,
    service: ReadyInfo,
    tls: Tls,
    kube: SaSigner,
    identity: str,
) -> None:
    tokens = [exchanged_token(sts, identity, kube, aud="cgr.dev") for _ in range(3)]
    admin.reset_stats()

    verifier = DiscoveredVerifier.discover(service.issuer_url, tls, cache=cache)
    for token in tokens:
        verifier.verify(token, audience="cgr.dev")

    stats = admin.stats()
    assert (stats["discovery_fetches"], stats["jwks_fetches"]) == (1, jwks_fetches)


# -- keys unavailable -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DISCOVERY, "/.well-known/jwks.json"])
def test_keys_fault_takes_discovery_and_jwks_down_while_exchanges_work(
    path: str, sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_fault("status", status=503, target="keys")

    response = sts.get(path)

    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert exchange(sts, identity, kube.token()).status_code == 200
    assert admin.stats()["exchanges"][identity] == {"ok": 1, "error": 0}
    admin.clear_faults()
    assert sts.get(path).status_code == 200


def test_keys_fault_for_count_requests_then_the_keys_are_back(
    sts: httpx2.Client, admin: TokenServiceAdmin
) -> None:
    admin.set_fault("malformed", target="keys", count=2)

    answers = [sts.get(DISCOVERY) for _ in range(3)]

    for answer in answers[:2]:
        with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error
            answer.json()
    assert answers[2].json()["jwks_uri"]
    assert admin.faults() == {"mode": "none"}


def test_slow_keys_fault_hangs_the_jwks_but_not_the_exchange(
    service: ReadyInfo, tls: Tls, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_fault("slow", delay=3, target="keys")

    with client_for(service.sts_url, tls) as sts:
        started = time.monotonic()
        assert exchange(sts, identity, kube.token()).status_code == 200
        assert time.monotonic() - started < 2
        with pytest.raises(httpx2.ReadTimeout):
            sts.get("/.well-known/jwks.json", timeout=0.5)


@pytest.mark.parametrize(
    ("mode", "target", "cause"),
    [
        ("refuse", "keys", "target keys"),
        ("expired", "keys", "target keys"),
        ("status", "everything", "target"),
    ],
)
def test_keys_fault_refuses_what_it_cannot_do(
    mode: str, target: str, cause: str, admin: TokenServiceAdmin
) -> None:
    with pytest.raises(TokenServiceError) as raised:
        admin.set_fault(mode, target=target)

    assert raised.value.status == 400
    assert cause in raised.value.message
