"""STS tokens made to order: minted through the admin API, and identities with their own lifetime.

A minted token is signed with the STS's current key, so it verifies exactly like an exchanged
one; that is what lets a test plant a "real" token in a Secret, or one wrong in a single way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
    rfc3339,
    running_service,
    unverified_claims,
)

pytestmark = pytest.mark.usefixtures("fresh_service_state")

TEN_YEARS = 10 * 365 * 24 * 3600


# -- minting ----------------------------------------------------------------------------------


def test_minted_token_carries_the_ordered_claims_and_verifies(
    sts: httpx2.Client,
    admin: TokenServiceAdmin,
    service: ReadyInfo,
    tls: Tls,
    identity: str,
) -> None:
    now = int(time.time())

    token = admin.mint_token(
        sub=identity,
        aud=["cgr.dev", "other.example"],
        iat=now - 30,
        exp=now + 600,
        claims={"act": {"sub": "planted"}, "jti": "fixed-jti"},
    )

    claims = DiscoveredVerifier.discover(service.issuer_url, tls).verify(token, audience="cgr.dev")
    assert claims == {
        "iss": service.issuer_url,
        "sub": identity,
        "aud": ["cgr.dev", "other.example"],
        "iat": now - 30,
        "nbf": now - 30,
        "exp": now + 600,
        "jti": "fixed-jti",
        "act": {"sub": "planted"},
    }
    current_kid = sts.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
    assert jwt.get_unverified_header(token)["kid"] == current_kid


def test_minted_token_is_logged_and_counted_like_an_issued_one(
    admin: TokenServiceAdmin, identity: str
) -> None:
    admin.reset_stats()

    token = admin.mint_token(sub=identity)

    assert token in admin.issued("sts")
    stats = admin.stats()
    assert stats["minted_tokens"] == 1
    assert stats["exchanges_total"] == {"ok": 0, "error": 0}


def test_minted_token_defaults_are_those_of_an_exchange(
    sts: httpx2.Client,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    service: ReadyInfo,
    kube: SaSigner,
    identity: str,
) -> None:
    exchanged = unverified_claims(exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE))

    token = admin.mint_token(sub=identity)

    minted = unverified_claims(token)
    assert sorted(minted) == sorted(exchanged)
    assert (minted["iss"], minted["sub"], minted["aud"]) == (
        service.issuer_url,
        identity,
        REGISTRY_AUDIENCE,
    )
    assert minted["exp"] - minted["iat"] == LIFETIME
    assert minted["jti"] != exchanged["jti"]
    assert registry_token(registry, ("_token", token)).status_code == 200


@pytest.mark.parametrize(
    ("order", "cause"),
    [
        ({"iss": "https://issuer.elsewhere"}, "not issued by this service"),
        ({"aud": "other.example"}, "audience"),
        ({"exp": int(time.time()) - 600}, "expired"),
        ({"omit": ["exp"]}, "'exp'"),
        ({"sub": "0" * 40 + "/" + "1" * 16}, "no longer exists"),
    ],
)
def test_minted_token_wrong_in_one_way_is_refused_by_the_registry(
    order: dict[str, Any],
    cause: str,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    identity: str,
) -> None:
    token = admin.mint_token(**{"sub": identity, **order})

    response = registry_token(registry, ("_token", token))

    assert response.status_code == 401, response.text
    assert cause in response.json()["message"]


@pytest.mark.parametrize(
    ("order", "cause"),
    [
        ({"aud": []}, "aud"),
        ({"claims": {"iss": 5}}, "cannot sign"),
        ({"sub": ""}, "sub is required"),
    ],
)
def test_invalid_mint_order_is_refused(
    order: dict[str, Any], cause: str, admin: TokenServiceAdmin, identity: str
) -> None:
    with pytest.raises(TokenServiceError) as raised:
        admin.mint_token(**{"sub": identity, **order})

    assert raised.value.status == 400
    assert cause in raised.value.message


# -- per-identity lifetime --------------------------------------------------------------------


def test_an_identity_created_with_a_lifetime_gets_tokens_of_that_lifetime_only(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    decade = admin.create_identity(
        name="ten-years",
        issuer=KUBE_ISSUER,
        subject=SUBJECT,
        issuer_keys=kube.jwks(),
        lifetime=TEN_YEARS,
    )

    long_lived = exchange(sts, decade, kube.token()).json()
    ordinary = unverified_claims(exchanged_token(sts, identity, kube, aud="cgr.dev"))

    claims = unverified_claims(long_lived["token"])
    assert claims["exp"] - claims["iat"] == TEN_YEARS
    assert long_lived["expiry"] == rfc3339(claims["exp"])
    assert ordinary["exp"] - ordinary["iat"] == LIFETIME
    assert admin.get_identity(decade)["lifetime"] == TEN_YEARS


def test_identity_lifetime_is_set_and_reset_by_the_admin(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    def lifetime() -> int:
        claims = unverified_claims(exchanged_token(sts, identity, kube, aud="cgr.dev"))
        return int(claims["exp"] - claims["iat"])

    admin.set_identity_lifetime(identity, 120)
    admin.set_lifetime(90)
    assert lifetime() == 120
    assert admin.get_identity(identity)["lifetime"] == 120

    admin.set_identity_lifetime(identity, None)
    assert lifetime() == 90
    assert admin.get_identity(identity)["lifetime"] is None


def test_expired_fault_backdates_by_the_identity_lifetime(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_identity_lifetime(identity, TEN_YEARS)
    admin.set_fault("expired", count=1)

    claims = unverified_claims(exchanged_token(sts, identity, kube, aud="cgr.dev"))

    assert claims["exp"] < time.time() - 60


def test_minted_token_takes_the_lifetime_of_its_identity(
    admin: TokenServiceAdmin, identity: str
) -> None:
    admin.set_identity_lifetime(identity, TEN_YEARS)

    claims = unverified_claims(admin.mint_token(sub=identity))

    assert claims["exp"] - claims["iat"] == TEN_YEARS


@pytest.mark.parametrize("seconds", [0, -5])
def test_invalid_identity_lifetime_is_refused(
    seconds: int, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    with pytest.raises(TokenServiceError) as created:
        admin.create_identity(
            name="bad",
            issuer=KUBE_ISSUER,
            subject=SUBJECT,
            issuer_keys=kube.jwks(),
            lifetime=seconds,
        )
    with pytest.raises(TokenServiceError) as updated:
        admin.set_identity_lifetime(identity, seconds)

    for raised in (created, updated):
        assert (raised.value.status, raised.value.code) == (400, "invalid_argument")
        assert "lifetime" in raised.value.message


def test_lifetime_of_an_unknown_identity_is_not_found(admin: TokenServiceAdmin) -> None:
    with pytest.raises(TokenServiceError) as raised:
        admin.set_identity_lifetime("0" * 40 + "/" + "1" * 16, 60)

    assert raised.value.status == 404


def test_identity_lifetime_survives_a_restart(tmp_path: Path, tls: Tls, kube: SaSigner) -> None:
    state = tmp_path / "state"
    extra = [f"--registry-service={REGISTRY_SERVICE}"]
    with (
        running_service(tmp_path, tls, state_dir=state, extra=extra) as first,
        TokenServiceAdmin.from_ready(first, tls.ca_file) as admin,
    ):
        uid = admin.create_identity(
            name="kind", issuer=KUBE_ISSUER, subject=SUBJECT, issuer_keys=kube.jwks()
        )
        admin.set_identity_lifetime(uid, TEN_YEARS)

    with (
        running_service(tmp_path, tls, state_dir=state, extra=extra) as second,
        client_for(second.sts_url, tls) as sts,
    ):
        claims = unverified_claims(exchanged_token(sts, uid, kube, aud="cgr.dev"))
    assert claims["exp"] - claims["iat"] == TEN_YEARS
