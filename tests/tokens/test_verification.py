"""Registry tokens are trusted only once their signature verifies against the keys the token
service publishes (OIDC discovery, then the key set) and their claims are ours; the keys are
fetched sparingly, kept through an outage, and refetched for a rotated key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine

import httpx2
import jwt
import pytest

from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.tokens import KeysUnavailable, TokenVerifier, verification
from tests.fakes import NOW, REGISTRY, FakeClock
from tests.tokens.fakes import (
    ATTACKER_KEY,
    DISCOVERY_PATH,
    ED_KEY,
    IDENTITY,
    ISSUER,
    KEY,
    KEYS_PATH,
    ROTATED_KEY,
    RSA_KEY,
    FakeTokenService,
    SigningKey,
    claims,
    everything_printed,
    hmac_signed,
    unsigned_jwt,
)

MAX_AGE = 3600.0
REFETCH = 10.0
LEEWAY = 60.0

#: An ``httpx2.MockTransport`` handler: it answers every request the verifier makes.
Handler = Callable[[httpx2.Request], Coroutine[None, None, httpx2.Response]]


class Setup:
    """A token service and a verifier of its tokens, with their clocks."""

    def __init__(self, published: list[SigningKey] | None = None) -> None:
        self.clock = FakeClock()
        self.monotonic = FakeClock(now=1000.0)
        self.service = FakeTokenService(clock=self.clock, published=published)
        self.verifier = TokenVerifier(
            provider="chainguard",
            username="_token",
            issuer=ISSUER,
            audience=REGISTRY,
            http=self.service.client(),
            clock=self.clock,
            monotonic=self.monotonic,
            max_age=MAX_AGE,
            refetch_interval=REFETCH,
            leeway=LEEWAY,
        )

    def fetched(self) -> tuple[int, int]:
        """How often the discovery document and the key set were asked for."""
        return self.service.hits(DISCOVERY_PATH), self.service.hits(KEYS_PATH)


async def refused(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    if token:
        assert token not in everything_printed(caught.value)
    return caught.value


async def unavailable(verifier: TokenVerifier, token: str) -> KeysUnavailable:
    with pytest.raises(KeysUnavailable) as caught:
        await verifier.verify(token)
    assert token not in everything_printed(caught.value)
    return caught.value


def verifier_behind(
    handler: Handler,
    *,
    clock: Callable[[], float] = time.time,
) -> TokenVerifier:
    """A verifier whose every request ``handler`` answers."""
    return TokenVerifier(
        provider="chainguard",
        username="_token",
        issuer=ISSUER,
        audience=REGISTRY,
        http=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        clock=clock,
    )


async def keys_unavailable(handler: Handler) -> KeysUnavailable:
    """Why a verifier behind ``handler`` has no keys."""
    with pytest.raises(KeysUnavailable) as caught:
        await verifier_behind(handler).ensure_keys()
    return caught.value


# -- tokens that verify ------------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, RSA_KEY, ED_KEY], ids=["ES256", "RS256", "EdDSA"])
async def test_a_token_signed_with_a_published_key_is_verified(key: SigningKey) -> None:
    setup = Setup(published=[ROTATED_KEY, key])
    token = key.sign(claims(iat=NOW - 100, lifetime=900))
    assert await setup.verifier.verify(token) == Credential(
        token=token,
        identity=IDENTITY,
        provider="chainguard",
        registries=(REGISTRY,),
        username="_token",
        issued_at=NOW - 100,
        expires_at=NOW + 800,
        key_id=key.kid,
    )


async def test_a_token_without_a_key_id_is_tried_with_every_key_of_its_algorithm() -> None:
    setup = Setup(published=[ROTATED_KEY, KEY])
    token = jwt.encode(claims(), KEY.private, algorithm="ES256")
    verified = await setup.verifier.verify(token)
    assert (verified.identity, verified.key_id) == (IDENTITY, None)


async def test_an_expired_token_still_verifies_it_is_ours_to_replace() -> None:
    setup = Setup()
    verified = await setup.verifier.verify(KEY.sign(claims(iat=NOW - 7200, lifetime=3600)))
    assert verified.expires_at == NOW - 3600


async def test_a_trailing_slash_on_the_issuer_is_the_same_issuer() -> None:
    setup = Setup()
    verifier = TokenVerifier(
        provider="chainguard",
        username="_token",
        issuer=ISSUER + "/",
        audience=REGISTRY,
        http=setup.service.client(),
        clock=setup.clock,
    )
    assert (await verifier.verify(KEY.sign(claims()))).identity == IDENTITY


async def test_the_key_set_is_fetched_from_the_uri_discovery_names() -> None:
    setup = Setup()
    setup.service.discovery = {"issuer": ISSUER, "jwks_uri": f"https://keys.example{KEYS_PATH}"}
    await setup.verifier.verify(KEY.sign(claims()))
    urls = [str(request.url) for request in setup.service.requests]
    assert urls == [f"{ISSUER}{DISCOVERY_PATH}", f"https://keys.example{KEYS_PATH}"]


async def test_the_keys_are_fetched_once_for_many_tokens_even_concurrently() -> None:
    setup = Setup()
    tokens = [KEY.sign(claims(identity=f"org/{n}")) for n in range(20)]
    results = await asyncio.gather(*(setup.verifier.verify(token) for token in tokens))
    assert [result.identity for result in results] == [f"org/{n}" for n in range(20)]
    assert setup.fetched() == (1, 1)
    assert setup.verifier.fetches == 1


async def test_keys_older_than_max_age_are_fetched_again() -> None:
    setup = Setup()
    await setup.verifier.verify(KEY.sign(claims(identity="org/a")))
    setup.monotonic.now += MAX_AGE - 1
    await setup.verifier.verify(KEY.sign(claims(identity="org/b")))
    assert setup.verifier.fetches == 1
    setup.monotonic.now += 1
    await setup.verifier.verify(KEY.sign(claims(identity="org/c")))
    assert setup.verifier.fetches == 2


# -- tokens that must not verify ---------------------------------------------------------------


async def test_alg_none_is_refused() -> None:
    setup = Setup()
    header = {"alg": "none", "typ": "JWT", "kid": "key-1"}
    token = unsigned_jwt(claims(), header=header).rsplit(".", 1)[0] + "."
    error = await refused(setup.verifier, token)
    assert str(error) == "token is signed with 'none', not an asymmetric algorithm"


@pytest.mark.parametrize("key", [KEY, RSA_KEY], ids=["EC", "RSA"])
async def test_hs256_signed_with_the_public_key_is_refused(key: SigningKey) -> None:
    setup = Setup(published=[key])
    assert key.kid is not None
    token = hmac_signed(claims(), secret=key.public_pem(), kid=key.kid)
    error = await refused(setup.verifier, token)
    assert str(error) == "token is signed with 'HS256', not an asymmetric algorithm"


async def test_a_self_signed_token_with_a_forged_key_id_is_refused() -> None:
    setup = Setup()
    token = ATTACKER_KEY.sign(claims())  # kid "key-1", the service's, but another private key
    error = await refused(setup.verifier, token)
    assert str(error) == "token's signature does not verify with the token service's keys"


async def test_a_token_whose_algorithm_is_not_its_keys_is_refused() -> None:
    setup = Setup()
    token = RSA_KEY.sign(claims(), kid="key-1")  # RS256 under the kid of an EC key
    error = await refused(setup.verifier, token)
    assert str(error) == "token is signed with RS256, not with the algorithm of its key"


async def test_a_token_naming_an_unknown_key_is_refused() -> None:
    setup = Setup()
    error = await refused(setup.verifier, ROTATED_KEY.sign(claims()))
    assert str(error) == "token is signed with a key the token service does not publish"


async def test_a_payload_that_is_not_json_is_refused_even_when_signed() -> None:
    setup = Setup()
    token = jwt.PyJWS().encode(b"[1, 2]", KEY.private, algorithm="ES256", headers={"kid": "key-1"})
    error = await refused(setup.verifier, token)
    assert str(error) == "token's payload cannot be decoded"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("S3CRET-not-a-jwt", "token is not a JWT", id="not-a-jwt"),
        pytest.param("", "token is not a JWT", id="empty"),
        pytest.param(
            unsigned_jwt(claims(), header={"alg": "ES256", "kid": 7}),
            "token is not a JWT",  # PyJWT refuses such a header before we look at it
            id="kid-not-a-string",
        ),
        pytest.param(
            unsigned_jwt(claims(), header={"alg": "S3CRET\n", "kid": "key-1"}),
            "token is signed with '?', not an asymmetric algorithm",
            id="alg-unprintable",
        ),
        pytest.param(
            unsigned_jwt(claims(), header={"kid": "key-1"}),
            "token is signed with '?', not an asymmetric algorithm",
            id="no-alg",
        ),
    ],
)
async def test_tokens_that_are_not_signed_jwts_are_refused(token: str, message: str) -> None:
    error = await refused(Setup().verifier, token)
    assert str(error) == message
    assert "S3CRET" not in everything_printed(error)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(
            claims(iss="https://evil.example"),
            "token was not issued by the configured token service",
            id="other-issuer",
        ),
        pytest.param(claims(iss=None), "token has no iss claim", id="no-issuer"),
        pytest.param(
            claims(aud="registry.example"), "token is not for the registry cgr.dev", id="other-aud"
        ),
        pytest.param(claims(sub=None), "token has no sub claim", id="no-sub"),
        pytest.param(claims(sub=""), "token has no sub claim", id="empty-sub"),
        pytest.param(claims(iat=None), "token has no iat claim", id="no-iat"),
        pytest.param(claims(exp=None), "token has no exp claim", id="no-exp"),
        pytest.param(
            claims(iat=NOW + LEEWAY + 60),
            "token's iat claim lies in the future (is a clock wrong?)",
            id="iat-in-the-future",
        ),
        pytest.param(
            claims(nbf=int(NOW + LEEWAY + 60)),
            "token is not valid yet (nbf lies in the future)",
            id="nbf-in-the-future",
        ),
    ],
)
async def test_a_validly_signed_token_whose_claims_are_not_ours_is_refused(
    payload: dict[str, object], message: str
) -> None:
    error = await refused(Setup().verifier, KEY.sign(payload))
    assert str(error) == message


async def test_an_iat_within_the_leeway_is_accepted() -> None:
    verified = await Setup().verifier.verify(KEY.sign(claims(iat=NOW + LEEWAY)))
    assert verified.issued_at == NOW + LEEWAY


# -- key rotation, and tokens with made-up key ids ---------------------------------------------


async def test_an_unknown_key_id_refetches_the_keys_and_finds_a_rotated_key() -> None:
    setup = Setup()
    await setup.verifier.verify(KEY.sign(claims()))
    setup.service.published = [KEY, ROTATED_KEY]  # the service rotates
    setup.monotonic.now += REFETCH
    verified = await setup.verifier.verify(ROTATED_KEY.sign(claims()))
    assert verified.key_id == "key-2"
    assert setup.verifier.fetches == 2
    assert setup.verifier.knows("key-2")


async def test_a_rotated_key_is_not_fetched_sooner_than_the_refetch_interval() -> None:
    setup = Setup()
    await setup.verifier.verify(KEY.sign(claims()))
    setup.service.published = [KEY, ROTATED_KEY]
    setup.monotonic.now += REFETCH - 1
    token = ROTATED_KEY.sign(claims())
    await refused(setup.verifier, token)
    assert setup.fetched() == (1, 1)
    setup.monotonic.now += 1
    assert (await setup.verifier.verify(token)).key_id == "key-2"


async def test_made_up_key_ids_cost_at_most_one_fetch_per_refetch_interval() -> None:
    setup = Setup()
    await setup.verifier.verify(KEY.sign(claims()))
    start = setup.monotonic.now
    for second in range(0, 30):
        setup.monotonic.now = start + REFETCH + second
        await refused(setup.verifier, ATTACKER_KEY.sign(claims(), kid=f"made-up-{second}"))
    # One fetch at start, then at +10, +20 and +30: one per interval, however many tokens.
    assert setup.fetched() == (1 + 3, 1 + 3)


async def test_a_second_unknown_key_id_within_the_interval_does_not_refetch() -> None:
    setup = Setup()
    await setup.verifier.verify(KEY.sign(claims()))
    setup.monotonic.now += REFETCH
    await refused(setup.verifier, ATTACKER_KEY.sign(claims(), kid="made-up-1"))
    assert setup.verifier.fetches == 2
    setup.monotonic.now += REFETCH / 2
    await refused(setup.verifier, ATTACKER_KEY.sign(claims(), kid="made-up-2"))
    assert setup.verifier.fetches == 2
    assert setup.fetched() == (2, 2)


async def test_a_key_the_service_stops_publishing_stops_vouching_for_its_tokens() -> None:
    setup = Setup()
    old = KEY.sign(claims())
    await setup.verifier.verify(old)
    assert setup.verifier.knows("key-1")
    setup.service.published = [ROTATED_KEY]
    setup.monotonic.now += MAX_AGE
    await setup.verifier.ensure_keys()
    assert setup.verifier.fetches == 2
    assert not setup.verifier.knows("key-1")
    assert setup.verifier.knows("key-2")
    # The verdict on `old` went with the key set it was reached with.
    error = await refused(setup.verifier, old)
    assert str(error) == "token is signed with a key the token service does not publish"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(KEY, ATTACKER_KEY, id="same-kid"),
        pytest.param(SigningKey(kid=None), SigningKey(kid=None), id="no-kid"),
    ],
)
async def test_a_key_replaced_under_the_same_key_id_stops_vouching_for_its_tokens(
    before: SigningKey, after: SigningKey
) -> None:
    setup = Setup(published=[before])
    old = before.sign(claims())
    await setup.verifier.verify(old)
    setup.service.published = [after]  # new key material, same key id
    setup.monotonic.now += MAX_AGE
    await setup.verifier.ensure_keys()
    assert setup.verifier.fetches == 2
    await refused(setup.verifier, old)


# -- when the keys cannot be had ---------------------------------------------------------------


async def test_a_discovery_failure_leaves_no_keys_and_is_retryable() -> None:
    setup = Setup()
    setup.service.failing[DISCOVERY_PATH] = 503
    error = await unavailable(setup.verifier, KEY.sign(claims()))
    assert str(error) == f"the discovery document at {ISSUER}{DISCOVERY_PATH} answered 503"
    assert (error.cause, error.retryable) == ("keys", True)
    assert not setup.verifier.knows("key-1")
    assert setup.verifier.fetches == 0


async def test_after_a_failure_the_keys_are_not_asked_for_again_within_the_interval() -> None:
    setup = Setup()
    setup.service.failing[DISCOVERY_PATH] = 503
    with pytest.raises(KeysUnavailable):
        await setup.verifier.ensure_keys()
    del setup.service.failing[DISCOVERY_PATH]
    setup.monotonic.now += REFETCH - 1
    with pytest.raises(KeysUnavailable, match="answered 503"):
        await setup.verifier.ensure_keys()
    assert setup.fetched() == (1, 0)
    setup.monotonic.now += 1
    await setup.verifier.ensure_keys()
    assert setup.verifier.knows("key-1")


async def test_keys_held_are_kept_when_a_later_fetch_fails() -> None:
    setup = Setup()
    await setup.verifier.verify(KEY.sign(claims(identity="org/a")))
    setup.service.failing[DISCOVERY_PATH] = 503
    setup.monotonic.now += MAX_AGE
    # Stale keys, and the refetch fails: the held ones still verify new tokens.
    verified = await setup.verifier.verify(KEY.sign(claims(identity="org/b")))
    assert verified.identity == "org/b"
    await setup.verifier.ensure_keys()
    assert setup.fetched() == (2, 1)
    # A token with an unknown key is refused, not "unavailable": keys are held.
    await refused(setup.verifier, ROTATED_KEY.sign(claims()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"discovery": {"issuer": "https://evil.example", "jwks_uri": f"{ISSUER}{KEYS_PATH}"}},
            f"the discovery document at {ISSUER}{DISCOVERY_PATH} names another issuer",
            id="discovery-names-another-issuer",
        ),
        pytest.param(
            {"discovery": {"issuer": ISSUER, "jwks_uri": f"http://issuer.test{KEYS_PATH}"}},
            f"the discovery document at {ISSUER}{DISCOVERY_PATH} has no https jwks_uri",
            id="jwks-uri-not-https",
        ),
        pytest.param(
            {"discovery": {"issuer": ISSUER}},
            f"the discovery document at {ISSUER}{DISCOVERY_PATH} has no https jwks_uri",
            id="no-jwks-uri",
        ),
        pytest.param(
            {"failing": {KEYS_PATH: 500}},
            f"the key set at {ISSUER}{KEYS_PATH} answered 500",
            id="key-set-500",
        ),
        pytest.param(
            {"failing": {DISCOVERY_PATH: 302}},
            f"the discovery document at {ISSUER}{DISCOVERY_PATH} answered 302",
            id="discovery-redirect-not-followed",
        ),
    ],
)
async def test_keys_that_cannot_be_had_say_why(change: dict[str, object], message: str) -> None:
    setup = Setup()
    for name, value in change.items():
        setattr(setup.service, name, value)
    error = await unavailable(setup.verifier, KEY.sign(claims()))
    assert str(error) == message
    assert setup.service.hits(KEYS_PATH) == (1 if "key set" in message else 0)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        pytest.param({"keys": "none"}, "has no keys list", id="keys-not-a-list"),
        pytest.param({}, "has no keys list", id="no-keys"),
        pytest.param(
            {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "key-1", "alg": "HS256"}]},
            "holds no usable signing key",
            id="hmac-key-only",
        ),
        pytest.param(
            {"keys": [{**KEY.public_jwk(), "use": "enc"}]},
            "holds no usable signing key",
            id="encryption-key-only",
        ),
        pytest.param(
            {"keys": [{"kty": "EC", "crv": "P-256", "x": "bad", "kid": "k"}, 7]},
            "holds no usable signing key",
            id="broken-keys",
        ),
    ],
)
async def test_a_key_set_without_a_usable_key_is_no_key_set(
    keys: dict[str, object], message: str
) -> None:
    setup = Setup()

    async def key_set(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == KEYS_PATH:
            return httpx2.Response(200, json=keys)
        return await setup.service.handle(request)

    verifier = verifier_behind(key_set, clock=setup.clock)
    error = await unavailable(verifier, KEY.sign(claims()))
    assert str(error) == f"the key set at {ISSUER}{KEYS_PATH} {message}"


async def test_unusable_keys_beside_a_good_one_are_skipped() -> None:
    setup = Setup()

    async def key_set(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == KEYS_PATH:
            junk = [{"kty": "oct", "k": "c2VjcmV0", "kid": "key-1", "alg": "HS256"}, "x"]
            return httpx2.Response(200, json={"keys": [*junk, KEY.public_jwk()]})
        return await setup.service.handle(request)

    verifier = verifier_behind(key_set, clock=setup.clock)
    assert (await verifier.verify(KEY.sign(claims()))).key_id == "key-1"


@pytest.mark.parametrize("body", [b"<html>", b"[]", b"\xff\xfe"], ids=["html", "list", "binary"])
async def test_a_discovery_document_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body)

    error = await keys_unavailable(handler)
    assert str(error) == (
        f"the discovery document at {ISSUER}{DISCOVERY_PATH} is not a JSON object"
    )


@pytest.mark.parametrize("issuer", [None, 42, ["https://issuer.test"]])
async def test_a_discovery_document_with_an_issuer_that_is_not_a_string_is_refused(
    issuer: object,
) -> None:
    setup = Setup()
    setup.service.discovery = {"issuer": issuer, "jwks_uri": f"{ISSUER}{KEYS_PATH}"}
    with pytest.raises(KeysUnavailable, match="names another issuer"):
        await setup.verifier.ensure_keys()


async def test_an_unreachable_token_service_is_keys_unavailable() -> None:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)

    error = await keys_unavailable(handler)
    assert str(error) == (
        f"cannot fetch the discovery document at {ISSUER}{DISCOVERY_PATH}: "
        "ConnectError: [Errno 111] Connection refused"
    )
    assert error.__cause__ is None


async def test_ensure_keys_fetches_only_when_none_are_held() -> None:
    setup = Setup()
    await setup.verifier.ensure_keys()
    await setup.verifier.ensure_keys()
    assert setup.fetched() == (1, 1)


async def test_a_token_stays_trusted_after_its_verdict_leaves_the_bounded_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # More live tokens than verdicts kept (namespace-scoped identities in many namespaces):
    # trust follows the key, so an old verdict's eviction costs no exchange.
    monkeypatch.setattr(verification, "MAX_VERDICTS", 2)
    setup = Setup()
    first, *_ = [
        await setup.verifier.verify(KEY.sign(claims(identity=f"org/{n}"))) for n in range(3)
    ]
    assert setup.verifier.still_trusted(first)
    setup.service.published = [ROTATED_KEY]
    setup.monotonic.now += MAX_AGE
    await setup.verifier.ensure_keys()
    assert not setup.verifier.still_trusted(first)


async def test_a_withdrawn_key_is_noticed_within_max_age_with_no_token_to_verify() -> None:
    # Steady state: every token was verified once and nothing new arrives, so nothing but
    # the periodic check asks for the keys.
    setup = Setup()
    withdrawn: list[str] = []
    setup.verifier.on_withdrawn.append(lambda: withdrawn.append("now"))
    await setup.verifier.verify(KEY.sign(claims()))
    setup.service.published = [ROTATED_KEY]

    setup.monotonic.now += MAX_AGE - 1
    await setup.verifier.refresh_if_stale()
    assert (setup.verifier.fetches, withdrawn) == (1, [])
    setup.monotonic.now += 1
    await setup.verifier.refresh_if_stale()
    assert (setup.verifier.fetches, withdrawn) == (2, ["now"])
    assert not setup.verifier.knows("key-1")


async def test_the_periodic_check_fetches_nothing_before_the_first_use() -> None:
    setup = Setup()
    setup.monotonic.now += 10 * MAX_AGE
    await setup.verifier.refresh_if_stale()
    assert setup.fetched() == (0, 0)


async def test_a_periodic_check_that_fails_keeps_the_keys_held() -> None:
    setup = Setup()
    token = KEY.sign(claims())
    await setup.verifier.verify(token)
    setup.service.failing[DISCOVERY_PATH] = 503
    setup.monotonic.now += MAX_AGE
    await setup.verifier.refresh_if_stale()  # logged, not raised
    assert setup.fetched() == (2, 1)
    assert setup.verifier.knows("key-1")
    assert (await setup.verifier.verify(token)).token == token


async def test_a_key_fetch_that_hangs_is_cut_off_and_the_keys_held_stay() -> None:
    hanging = asyncio.Event()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        await hanging.wait()  # never answers
        raise AssertionError("unreachable")

    verifier = TokenVerifier(
        provider="chainguard",
        username="_token",
        issuer=ISSUER,
        audience=REGISTRY,
        http=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        fetch_deadline=0.05,
    )
    with pytest.raises(KeysUnavailable) as caught:
        await verifier.ensure_keys()
    assert "took longer than 0.05s" in str(caught.value)
    assert caught.value.retryable


# -- secrecy -----------------------------------------------------------------------------------


async def test_no_token_appears_in_any_failure_or_repr() -> None:
    setup = Setup()
    assert KEY.kid is not None
    tokens = [
        KEY.sign(claims(iss="https://evil.example")),
        ATTACKER_KEY.sign(claims()),
        hmac_signed(claims(), secret=KEY.public_pem(), kid=KEY.kid),
        unsigned_jwt(claims(), header={"alg": "none", "kid": "key-1"}),
        ROTATED_KEY.sign(claims()),
    ]
    for token in tokens:
        error = await refused(setup.verifier, token)
        printed = everything_printed(error)
        for part in token.split("."):
            assert part not in printed
    verified = await setup.verifier.verify(KEY.sign(claims()))
    assert verified.token not in repr(verified)
    assert verified.token not in repr(setup.verifier)
    assert repr(setup.verifier) == f"TokenVerifier(issuer={ISSUER!r}, audience={REGISTRY!r})"

    down = Setup()
    down.service.failing[DISCOVERY_PATH] = 503
    token = KEY.sign(claims())
    printed = everything_printed(await unavailable(down.verifier, token))
    assert all(part not in printed for part in token.split("."))


@pytest.mark.parametrize(
    "token",
    ["\ud800", "eyJhbGciOiJFUzI1NiJ9.\ud800.c2ln", "e\udcff.e30.c2ln", "\x00.\x00.\x00"],
    ids=["lone surrogate", "surrogate in the payload", "low surrogate", "control characters"],
)
async def test_a_string_that_cannot_be_encoded_is_not_a_token_and_raises_nothing_else(
    token: str,
) -> None:
    setup = Setup()
    with pytest.raises(InvalidToken):
        await setup.verifier.verify(token)
