"""A token in a Secret is trusted only once it verifies against the token service's keys.

Whoever may edit a namespace's pull Secret may write any token into it. Before the fix, a
self-made JWT with an `exp` ten years away and a recomputed `token-hash` annotation was
believed: the controller never refreshed it, and handed it, through its per-identity cache,
to the other namespaces' Secrets of the same identity. Here each kind of planted token is
written by a tenant who may edit the Secrets of one namespace only, and the real stack shows:

- the planted Secret gets a verified token back at once, the other namespace's Secret of the
  same identity never holds the planted token (watched across one of its refreshes), and a
  namespace created after the plant is filled with a verified token; the Event says why; the
  exchanges stay one per identity per refresh window;
- a token the token service itself issued for ten years is still re-exchanged every
  `max_refresh_interval`, once per identity however many Secrets share it;
- a restarted controller keeps the verified tokens it finds and exchanges nothing;
- a key rotation that keeps the old key published refills nothing; one that drops it moves
  every Secret to the new key with one exchange per identity, and the keys are fetched a
  bounded number of times, not once per Secret;
- while the keys cannot be fetched, tokens stay, `last-error` says why, nothing is exchanged,
  and everything recovers once the keys are back.

Tokens are checked here the way the registry's clients would: PyJWT, the JWKS the token
service publishes (found through its discovery document), `iss`, `aud` and `sub`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack import pki
from devstack.stack import LocalStack
from devstack.tokenservice import TokenServiceAdmin
from tests.helpers import ClusterHelper, Json, Start, eventually, unique
from tests.reliability.support import LAST_ERROR, Api, exchanges, figure

pytestmark = pytest.mark.stack

PREFIX = "pull-secret-updater.chainguard.dev/"
TOKEN_HASH = PREFIX + "token-hash"
EXPIRES_AT = PREFIX + "expires-at"
LAST_REFRESH = PREFIX + "last-refresh"
FILLED_IDENTITY = PREFIX + "filled-identity"

TEN_YEARS = 10 * 365 * 86400
#: Lifetime of the planting tests' tokens: a refresh every 5-7 s (margin 3 s, min interval
#: 5 s), so the other namespace's Secret is refilled while the planted token is around.
LIFETIME = 10
#: The shortest time between two refreshes of one token at LIFETIME (the 5 s minimum
#: interval between writes, and fraction - jitter = 0.56 of the lifetime).
REFRESH_PERIOD = 5.0
#: How long a Secret may take to be refilled, or to be seen again by the controller.
DEADLINE = 45.0
SAMPLE_INTERVAL = 0.25
#: A quiet period in which nothing may happen, long enough for a controller to look at every
#: Secret several times over (it reconciles a handful in milliseconds).
SETTLE = 6.0


# -- the token service's keys, as a registry client sees them ---------------------------------


class PublishedKeys:
    """The token service's published keys (discovery, then `jwks_uri`), and checks with them.

    Counts its own requests, so the controller's share of the service's fetch counters can
    be told apart.
    """

    def __init__(self, stack: LocalStack) -> None:
        self.issuer = stack.token_service.url
        self.audience = stack.registry.host
        self._ca = stack.ca_file
        self.requests = 0
        self.keys: list[jwt.PyJWK] = []
        self._verified: dict[str, Json] = {}
        self.refresh()

    def refresh(self) -> None:
        with httpx2.Client(verify=pki.trust(self._ca), timeout=10.0) as http:
            discovery = http.get(f"{self.issuer}/.well-known/openid-configuration")
            discovery.raise_for_status()
            document = http.get(str(discovery.json()["jwks_uri"]))
            document.raise_for_status()
        self.requests += 2
        self.keys = list(jwt.PyJWKSet.from_dict(document.json()).keys)
        self._verified.clear()

    @property
    def current(self) -> jwt.PyJWK:
        """The key the service signs with now (it publishes it first)."""
        return self.keys[0]

    def verify(self, token: str, *, subject: str) -> Json:
        """The claims of `token` if it verifies for `subject`; raises jwt.PyJWTError."""
        if token in self._verified:
            found = self._verified[token]
        else:
            kid = jwt.get_unverified_header(token).get("kid")
            key = next((k for k in self.keys if k.key_id == kid), None)
            if key is None:
                raise jwt.InvalidKeyError("the token's key is not published")
            found = jwt.decode(
                token, key, algorithms=[key.algorithm_name], audience=self.audience,
                issuer=self.issuer, options={"require": ["iss", "sub", "aud", "iat", "exp"]},
            )  # fmt: skip
            self._verified[token] = found
        if found["sub"] != subject:
            raise jwt.InvalidTokenError("the token is for another identity")
        return found

    def verifies(self, token: str | None, *, subject: str) -> bool:
        if not token:
            return False
        try:
            self.verify(token, subject=subject)
        except jwt.PyJWTError:
            return False
        return True

    def kid(self, token: str) -> str | None:
        kid = jwt.get_unverified_header(token).get("kid")
        return kid if isinstance(kid, str) else None


def key_fetches(stack: LocalStack, keys: PublishedKeys) -> int:
    """Discovery and JWKS requests the token service has answered, but for the test's own."""
    with stack.token_admin() as admin:
        stats = admin.stats()
    return int(stats["discovery_fetches"]) + int(stats["jwks_fetches"]) - keys.requests


def two_identities(
    new_identity: Callable[[str], str], prefix: str, secrets: int
) -> tuple[list[str], dict[str, str]]:
    """Two identities of the test's own, and the owners of ``secrets`` pull Secrets that
    alternate between them: a unique namespace name (``prefix-<i>-…``) -> its identity."""
    identities = [new_identity(prefix), new_identity(prefix)]
    return identities, {unique(f"{prefix}-{i}"): identities[i % 2] for i in range(secrets)}


def tokens_of(api: Api, namespaces: list[str]) -> dict[str, str | None]:
    """The registry token of each namespace's pull Secret, from one list call."""
    found: dict[str, str | None] = dict.fromkeys(namespaces)
    for secret in api.managed():
        if secret["metadata"]["namespace"] in found:
            found[secret["metadata"]["namespace"]] = api.token(secret)
    return found


@pytest.fixture
def keys(stack: LocalStack) -> PublishedKeys:
    return PublishedKeys(stack)


@pytest.fixture
def admin(stack: LocalStack) -> Iterator[TokenServiceAdmin]:
    """The token service's admin client; any fault a test leaves on is cleared."""
    with stack.token_admin() as client:
        try:
            yield client
        finally:
            client.clear_faults()


# -- planting ----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def old_token_hash(identity: str, registry: str, token: str) -> str:
    """The fingerprint earlier versions wrote and trusted: anyone can compute it."""
    return hashlib.sha256(f"{identity}\n{registry}\n{token}".encode()).hexdigest()[:32]


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class Victim:
    """What a forger knows about the Secret to plant into, and what it can get hold of."""

    identity: str
    registry: str
    issuer: str
    keys: PublishedKeys
    admin: TokenServiceAdmin
    other_identity: str

    def claims(self, **changes: Any) -> Json:
        now = int(time.time())
        return {
            "iss": self.issuer, "sub": self.identity, "aud": self.registry, "iat": now,
            "nbf": now, "exp": now + TEN_YEARS, "jti": unique("forged"), **changes,
        }  # fmt: skip


def self_signed(victim: Victim) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(victim.claims(), key, algorithm="ES256", headers={"kid": "made-up-kid"})


def unsigned(victim: Victim) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(victim.claims()).encode())}."


def hmac_with_public_key(victim: Victim) -> str:
    """HS256 with the service's public key as the secret, under the service's own kid."""
    published = victim.keys.current
    secret = published.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": published.key_id}).encode())
    body = b64url(json.dumps(victim.claims()).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


def real_for_another_identity(victim: Victim) -> str:
    return victim.admin.mint_token(
        sub=victim.other_identity, aud=victim.registry, exp=int(time.time()) + TEN_YEARS
    )


def real_for_another_audience(victim: Victim) -> str:
    return victim.admin.mint_token(
        sub=victim.identity, aud="registry.elsewhere.example", exp=int(time.time()) + TEN_YEARS
    )


def real_from_another_issuer(victim: Victim) -> str:
    return victim.admin.mint_token(
        sub=victim.identity, iss="https://issuer.elsewhere.example", aud=victim.registry,
        exp=int(time.time()) + TEN_YEARS,
    )  # fmt: skip


UNTRUSTED = "token not trusted"
FORGERIES = [
    pytest.param(self_signed, UNTRUSTED, id="self-signed-other-key-made-up-kid"),
    pytest.param(unsigned, UNTRUSTED, id="alg-none"),
    pytest.param(hmac_with_public_key, UNTRUSTED, id="hs256-with-the-public-key"),
    # Signed by the service, so it verifies: it is replaced because it is another identity's.
    pytest.param(real_for_another_identity, UNTRUSTED, id="real-another-identity"),
    pytest.param(real_for_another_audience, UNTRUSTED, id="real-another-audience"),
    pytest.param(real_from_another_issuer, UNTRUSTED, id="real-another-issuer"),
]


class Tenant:
    """Someone who may read and edit the Secrets of one namespace, and nothing else."""

    def __init__(self, stack: LocalStack, namespace: str) -> None:
        kubectl = stack.control_plane.kubectl
        self.namespace = namespace
        kubectl("-n", namespace, "create", "serviceaccount", "tenant")
        kubectl("-n", namespace, "create", "role", "secret-editor",
                "--verb=get,update,patch", "--resource=secrets")  # fmt: skip
        kubectl("-n", namespace, "create", "rolebinding", "tenant-edits-secrets",
                "--role=secret-editor", f"--serviceaccount={namespace}:tenant")  # fmt: skip
        token = stack.control_plane.service_account_token(namespace, "tenant")
        self.http = httpx2.Client(
            base_url=stack.control_plane.server, verify=pki.trust(stack.ca_file),
            headers={"Authorization": f"Bearer {token}"}, timeout=10.0,
        )  # fmt: skip

    def patch(self, namespace: str, body: Json) -> httpx2.Response:
        return self.http.patch(
            f"/api/v1/namespaces/{namespace}/secrets/pull-secret", json=body,
            headers={"Content-Type": "application/merge-patch+json"},
        )  # fmt: skip

    def plant(self, token: str, *, identity: str, registry: str, with_hash: bool) -> None:
        """Write `token` as the registry's entry; `with_hash`: the old status annotations too,
        with the fingerprint recomputed for the planted token, as the old controller wrote."""
        auth = base64.b64encode(f"_token:{token}".encode()).decode()
        config = {"auths": {registry: {"username": "_token", "password": token, "auth": auth}}}
        body: Json = {"data": {".dockerconfigjson": base64.b64encode(
            json.dumps(config).encode()).decode()}}  # fmt: skip
        if with_hash:
            now = time.time()
            body["metadata"] = {"annotations": {
                TOKEN_HASH: old_token_hash(identity, registry, token),
                EXPIRES_AT: rfc3339(now + TEN_YEARS),
                LAST_REFRESH: rfc3339(now),
                FILLED_IDENTITY: identity,
            }}  # fmt: skip
        response = self.patch(self.namespace, body)
        assert response.status_code == 200, response.text[:300]

    def close(self) -> None:
        self.http.close()


def event_messages(api: Api, namespace: str) -> list[str]:
    return [str(e.get("message") or "") for e in api.events(namespace)]


@dataclass
class Watch:
    """What sampling the Secrets of one identity has seen."""

    samples: int = 0
    a_refilled_at: float | None = None
    b_refilled: bool = False
    c_filled: bool = False


@pytest.mark.parametrize("with_hash", [False, True], ids=["bare", "with-old-token-hash"])
@pytest.mark.parametrize(("forge", "why"), FORGERIES)
def test_a_planted_token_is_replaced_at_once_and_never_reaches_another_namespace(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], admin: TokenServiceAdmin, keys: PublishedKeys,
    forge: Callable[[Victim], str], why: str, with_hash: bool,
) -> None:  # fmt: skip
    identity, other = new_identity("planted"), new_identity("bystander")
    admin.set_identity_lifetime(identity, LIFETIME)
    registry = stack.registry.host
    a, b = cluster.create_pull_secrets({unique("plant-a"): identity, unique("plant-b"): identity})
    tenant = Tenant(stack, a)
    start_controller("planting")
    first = cluster.wait_all_filled([a, b])
    filled_at = time.time()
    assert keys.verifies(first[a], subject=identity)

    victim = Victim(identity=identity, registry=registry, issuer=keys.issuer, keys=keys,
                    admin=admin, other_identity=other)  # fmt: skip
    planted = forge(victim)
    assert not keys.verifies(planted, subject=identity)
    # The tenant may write only its own namespace's Secret.
    assert tenant.patch(b, {"metadata": {"labels": {"x": "y"}}}).status_code == 403
    planted_at = time.monotonic()
    tenant.plant(planted, identity=identity, registry=registry, with_hash=with_hash)
    tenant.close()
    c = cluster.create_pull_secrets({unique("plant-c"): identity})[0]

    seen = Watch()
    deadline = time.monotonic() + DEADLINE
    while not (seen.a_refilled_at and seen.b_refilled and seen.c_filled):
        assert time.monotonic() < deadline, f"not settled in {DEADLINE}s: {seen}"
        tokens = tokens_of(api, [a, b, c])
        seen.samples += 1
        assert planted not in (tokens[b], tokens[c]), "the planted token reached another Secret"
        for ns in (b, c):
            assert tokens[ns] is None or keys.verifies(tokens[ns], subject=identity), ns
        if seen.a_refilled_at is not None:
            assert tokens[a] != planted, "the planted token came back"
        if tokens[a] != planted:
            assert keys.verifies(tokens[a], subject=identity), "a holds an unverified token"
            seen.a_refilled_at = seen.a_refilled_at or time.monotonic()
        token_b = tokens[b]
        if token_b is not None and token_b != first[b]:
            # b was refilled while the planted token was around: a token issued after the plant.
            issued = keys.verify(token_b, subject=identity)["iat"]
            seen.b_refilled = seen.b_refilled or issued >= filled_at - 1
        seen.c_filled = seen.c_filled or tokens[c] is not None
        time.sleep(SAMPLE_INTERVAL)
    elapsed = time.time() - filled_at
    assert seen.a_refilled_at is not None
    figure(f"planted {forge.__name__} ({with_hash=}): plant -> a verified token in a again",
           seen.a_refilled_at - planted_at, "s")  # fmt: skip
    figure("planted: samples of a, b and c (none with the planted token outside a)", seen.samples)

    annotations = api.annotations(api.secret(a))
    assert TOKEN_HASH not in annotations, "the controller's write kept the forged fingerprint"
    assert LAST_ERROR not in annotations
    assert eventually(
        lambda: [m for m in event_messages(api, a) if why in m and "Filled" in m],
        timeout=10, what=f"an Event in {a} saying {why!r}",
    )  # fmt: skip
    assert not any(planted in m for m in event_messages(api, a))

    spent = exchanges(stack, [identity])
    allowed = 1 + math.ceil(elapsed / REFRESH_PERIOD)
    figure(f"planted: exchanges in {elapsed:.0f}s for 3 Secrets of one identity "
           f"(one per window: <= {allowed})", spent)  # fmt: skip
    assert spent <= allowed
    assert exchanges(stack, [other]) == 0, "the planted token's identity was exchanged for"


# -- tokens from the token service itself --------------------------------------------------------

MAX_INTERVAL = 15.0
#: Beyond MAX_INTERVAL, the time for the exchange, the write, and one sample.
REFRESH_SLACK = 10.0
OBSERVED = 2.5 * MAX_INTERVAL


def test_a_ten_year_token_is_re_exchanged_every_max_refresh_interval_once_per_identity(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], admin: TokenServiceAdmin, keys: PublishedKeys,
) -> None:  # fmt: skip
    identity = new_identity("decade")
    admin.set_identity_lifetime(identity, TEN_YEARS)
    namespaces = cluster.create_pull_secrets({unique(f"decade-{i}"): identity for i in range(4)})
    start_controller("decade", env={"PSU_MAX_REFRESH_INTERVAL": str(MAX_INTERVAL)})
    first = cluster.wait_all_filled(namespaces)
    claims = keys.verify(first[namespaces[0]], subject=identity)
    assert claims["exp"] - claims["iat"] >= TEN_YEARS - 60, "not a ten-year token"
    counted = exchanges(stack, [identity])
    started = time.monotonic()

    held: set[str] = set(first.values())
    oldest = 0.0
    while time.monotonic() - started < OBSERVED:
        for ns, token in tokens_of(api, namespaces).items():
            assert token is not None, ns
            held.add(token)
            oldest = max(oldest, time.time() - keys.verify(token, subject=identity)["iat"])
        time.sleep(0.5)
    spent = exchanges(stack, [identity]) - counted
    figure(f"ten-year tokens: oldest token a Secret held (max interval {MAX_INTERVAL:g}s)",
           oldest, "s")  # fmt: skip
    figure(f"ten-year tokens: exchanges in {OBSERVED:g}s for 4 Secrets of one identity", spent)
    figure("ten-year tokens: distinct tokens the 4 Secrets held", len(held))
    assert oldest <= MAX_INTERVAL + REFRESH_SLACK
    assert 1 <= spent <= math.ceil(OBSERVED / MAX_INTERVAL) + 1
    # Every token any of the Secrets held came from one shared exchange.
    assert len(held) <= spent + 1


# -- restarts -----------------------------------------------------------------------------------


def restart_in_place(
    cluster: ClusterHelper, start_controller: Start, name: str, sentinel_identity: str
) -> None:
    """Start a controller and wait until it has worked through the Secrets that were there:
    a Secret created after its start (of an identity of its own) is filled only after them."""
    start_controller(name)
    sentinel = cluster.create_pull_secrets({unique("sentinel"): sentinel_identity})[0]
    cluster.wait_filled(sentinel, timeout=DEADLINE)
    time.sleep(SETTLE)


def test_a_restarted_controller_keeps_the_verified_tokens_and_exchanges_nothing(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], keys: PublishedKeys,
) -> None:  # fmt: skip
    identities, owners = two_identities(new_identity, "kept", 6)
    cluster.create_pull_secrets(owners)
    first = start_controller("kept-first")
    filled = cluster.wait_all_filled(list(owners))
    for ns, token in filled.items():
        keys.verify(token, subject=owners[ns])
    first.stop()
    versions = {ns: api.resource_version(api.secret(ns)) for ns in owners}
    counted, fetched = exchanges(stack, identities), key_fetches(stack, keys)

    restart_in_place(cluster, start_controller, "kept-second", new_identity("sentinel"))

    fetches = key_fetches(stack, keys) - fetched
    figure("restart: exchanges for 6 Secrets holding verified tokens",
           exchanges(stack, identities) - counted)  # fmt: skip
    figure("restart: key-set requests by the new controller", fetches)
    assert exchanges(stack, identities) == counted
    assert cluster.tokens(list(owners)) == filled
    assert {ns: api.resource_version(api.secret(ns)) for ns in owners} == versions, "rewritten"
    assert 1 <= fetches <= 4, "the keys were not fetched once, or fetched per Secret"


# -- key rotation --------------------------------------------------------------------------------


def touch(api: Api, namespaces: list[str]) -> None:
    """A label change: a watch event, so the controller looks at each Secret again."""
    for ns in namespaces:
        api.http.patch(
            f"/api/v1/namespaces/{ns}/secrets/pull-secret",
            json={"metadata": {"labels": {"touched": unique("t")}}},
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()


def test_a_rotation_that_keeps_the_old_key_published_refills_nothing(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], admin: TokenServiceAdmin, keys: PublishedKeys,
) -> None:  # fmt: skip
    identities, owners = two_identities(new_identity, "graceful", 6)
    cluster.create_pull_secrets(owners)
    controller = start_controller("graceful")
    filled = cluster.wait_all_filled(list(owners))
    counted, fetched = exchanges(stack, identities), key_fetches(stack, keys)

    old_kid = keys.kid(filled[next(iter(owners))])
    new_kid = admin.rotate_signing_key(keep_previous=True)
    keys.refresh()
    assert {k.key_id for k in keys.keys} >= {old_kid, new_kid}
    touch(api, list(owners))
    late = cluster.create_pull_secrets({unique("graceful-late"): identities[0]})[0]
    assert keys.verifies(cluster.wait_filled(late), subject=identities[0])
    time.sleep(SETTLE)
    controller.stop()
    restart_in_place(cluster, start_controller, "graceful-after", new_identity("sentinel"))

    fetches = key_fetches(stack, keys) - fetched
    figure("graceful rotation: exchanges for 7 Secrets (before and after a restart)",
           exchanges(stack, identities) - counted)  # fmt: skip
    figure("graceful rotation: key-set requests by two controllers", fetches)
    assert cluster.tokens(list(owners)) == filled, "a token was replaced"
    assert exchanges(stack, identities) == counted
    assert fetches <= 6


def test_a_rotation_that_drops_the_old_key_costs_one_exchange_per_identity(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], admin: TokenServiceAdmin, keys: PublishedKeys,
    tmp_path: Path,
) -> None:  # fmt: skip
    identities, owners = two_identities(new_identity, "dropped", 8)
    cluster.create_pull_secrets(owners)
    controller = start_controller("dropped-before")
    cluster.wait_all_filled(list(owners))
    controller.stop()
    sample = next(iter(owners))
    stale_config = cluster.docker_config(sample)

    new_kid = admin.rotate_signing_key(keep_previous=False)
    keys.refresh()
    assert [k.key_id for k in keys.keys] == [new_kid]
    assert cluster.refused_pull(stale_config, tmp_path) == (
        "token key id is not published by this service"
    ), "a token of the dropped key still pulls"
    counted, fetched = exchanges(stack, identities), key_fetches(stack, keys)
    rotated = time.monotonic()
    start_controller("dropped-after")

    def moved() -> bool:
        tokens = cluster.tokens(list(owners))
        return all(keys.verifies(tokens[ns], subject=uid) for ns, uid in owners.items())

    eventually(moved, timeout=DEADLINE, interval=0.3, what="every Secret on the new key")
    figure("dropped key: controller start -> 8 Secrets on the new key",
           time.monotonic() - rotated, "s")  # fmt: skip
    time.sleep(SETTLE)
    spent = exchanges(stack, identities) - counted
    fetches = key_fetches(stack, keys) - fetched
    figure("dropped key: exchanges for 8 Secrets of 2 identities", spent)
    figure("dropped key: key-set requests by the controller", fetches)
    assert spent == len(identities), "not one exchange per identity"
    assert {keys.kid(t) for t in cluster.tokens(list(owners)).values() if t} == {new_kid}
    assert fetches <= 4
    assert cluster.pull(cluster.docker_config(sample), tmp_path) == 0


def test_a_running_controller_moves_every_secret_off_a_dropped_key_once_it_knows(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], admin: TokenServiceAdmin, keys: PublishedKeys,
) -> None:  # fmt: skip
    identities, owners = two_identities(new_identity, "running-drop", 4)
    # Its tokens live seconds: its next token names the new key, the controller fetches the
    # key set for it, and from then on knows that the old key is gone.
    herald, herald_ns = new_identity("herald"), unique("herald")
    admin.set_identity_lifetime(herald, LIFETIME)
    cluster.create_pull_secrets({**owners, herald_ns: herald})
    start_controller("running-drop")
    cluster.wait_all_filled([*owners, herald_ns])
    counted = exchanges(stack, identities)

    admin.rotate_signing_key(keep_previous=False)
    keys.refresh()
    eventually(lambda: keys.verifies(api.token(api.secret(herald_ns)), subject=herald),
               timeout=DEADLINE, what="the herald's Secret on the new key")  # fmt: skip
    learned = time.monotonic()
    # The controller knows: a Secret created now gets a token of the new key.
    late = cluster.create_pull_secrets({unique("running-drop-late"): identities[0]})[0]
    assert keys.verifies(cluster.wait_filled(late), subject=identities[0])

    def stale() -> list[str]:
        tokens = tokens_of(api, list(owners))
        return [ns for ns, uid in owners.items() if not keys.verifies(tokens[ns], subject=uid)]

    left = stale()
    while left and time.monotonic() - learned < DEADLINE:
        time.sleep(0.5)
        left = stale()
    assert not left, (
        f"{len(left)} of {len(owners)} Secrets still hold a token of the dropped key "
        f"{DEADLINE:g}s after the controller fetched the new key set"
    )
    assert exchanges(stack, identities) - counted == len(identities)


# -- the keys cannot be fetched ------------------------------------------------------------------

FAULT_HELD = 15.0


def test_without_the_keys_tokens_stay_nothing_is_exchanged_and_all_recovers(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], admin: TokenServiceAdmin, keys: PublishedKeys,
) -> None:  # fmt: skip
    identity, newcomer_identity = new_identity("keyless"), new_identity("keyless-new")
    held = cluster.create_pull_secrets({unique(f"keyless-{i}"): identity for i in range(3)})
    before = start_controller("keyless-before")
    filled = cluster.wait_all_filled(held)
    before.stop()
    counted = exchanges(stack, [identity, newcomer_identity])

    admin.set_fault("status", status=503, target="keys")
    fetched = key_fetches(stack, keys)
    controller = start_controller("keyless")
    newcomer = cluster.create_pull_secrets({unique("keyless-new"): newcomer_identity})[0]
    everyone = [*held, newcomer]

    def errors() -> dict[str, str] | None:
        found = {ns: api.annotations(api.secret(ns)).get(LAST_ERROR) for ns in everyone}
        return {ns: e for ns, e in found.items() if e} if all(found.values()) else None

    reported = eventually(errors, timeout=DEADLINE, what="every Secret reporting the keys")
    for ns in held:
        assert "cannot verify the token" in reported[ns], reported[ns]
        assert "503" in reported[ns]
    assert "discovery document" in reported[newcomer], reported[newcomer]
    assert "503" in reported[newcomer]
    fault_started = time.monotonic()
    while time.monotonic() - fault_started < FAULT_HELD:
        assert cluster.tokens(held) == filled, "a token was touched while the keys were away"
        assert api.token(api.secret(newcomer)) is None
        time.sleep(0.5)
    for ns in held:
        assert "VerificationUnavailable" in api.warnings(ns)
    assert eventually(lambda: api.warnings(newcomer), timeout=10, what="a Warning")
    attempts = key_fetches(stack, keys) - fetched
    window = time.monotonic() - fault_started + SETTLE
    figure(f"keys away: key-set requests in about {window:.0f}s for 4 Secrets", attempts)
    assert attempts <= 2 * (window / 10 + 2), "the key fetches were not paced"
    assert exchanges(stack, [identity, newcomer_identity]) == counted, "exchanged without keys"

    admin.clear_faults()
    cleared = time.monotonic()

    def recovered() -> bool:
        errors = [api.annotations(api.secret(ns)).get(LAST_ERROR) for ns in everyone]
        return not any(errors) and keys.verifies(
            api.token(api.secret(newcomer)), subject=newcomer_identity
        )

    eventually(recovered, timeout=DEADLINE, interval=0.3, what="recovery")
    figure("keys away: fault cleared -> every Secret fine again", time.monotonic() - cleared, "s")
    assert cluster.tokens(held) == filled, "valid tokens were replaced after the recovery"
    assert exchanges(stack, [identity]) == counted
    assert controller.process.running()
