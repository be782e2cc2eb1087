"""Verifying registry tokens against the token service's published keys.

Whatever sits in a Secret was written by someone who may edit that Secret, and a token
service can be wrong or impersonated. So no token's claims are believed until its signature
verifies against the keys the token service publishes (OIDC discovery:
``<issuer>/.well-known/openid-configuration`` -> ``jwks_uri``) and its claims pass
`core.claims.check_claims` (issuer, registry audience, subject, sane times).

The keys are fetched once and kept: refetched when older than `max_age`, at the next use or
at the controller's periodic `refresh_if_stale` (so a key the service withdraws stops
vouching within minutes), and at once when a token names a key we do not
know (the service rotated its key), at most once per `refetch_interval` so that tokens with
made-up key ids cannot make us hammer the service. If
the keys cannot be fetched, keys already held stay in use (a discovery blip must not become an
outage), and with none held verification fails with `KeysUnavailable`: the caller keeps the
current credential and retries later, and no unverified claim is used meanwhile.

Verdicts are cached per token (a few thousand Secrets share a handful of tokens), and
forgotten whenever the key set changes, so a key the service stops publishing stops
vouching for its tokens.

Only asymmetric algorithms are accepted, and only with a key of the matching type: never
``none`` and never HMAC (whose "key" would be the public key anyone can read).

NB: the log lines go through the standard ``logging`` module with ``extra`` fields, not
structlog: the controller's log setup (``runtime.logs``) renders them as the same JSON lines,
and the kubelet plugin, which verifies with this module too, starts without structlog.

NB: a little over our usual module size because the key set's life (fetch, keep on failure,
refetch on an unknown kid, withdraw) and the signature check it serves are one piece of
state; splitting them would put the reasons for each refetch rule far from the rule.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx2
import jwt

from pull_secret_updater.core.claims import InvalidToken, check_claims
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.tokens import loop
from pull_secret_updater.tokens.errors import KeysUnavailable
from pull_secret_updater.tokens.http import (
    NOT_JSON,
    load_json,
    read_bounded,
    reason_of,
    verification_failure,
)
from pull_secret_updater.tokens.keyfile import KeyFile

log = logging.getLogger("pull_secret_updater.tokens")

ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_MAX_AGE = 600.0
DEFAULT_REFETCH_INTERVAL = 10.0
DEFAULT_FETCH_DEADLINE = 30.0
DEFAULT_LEEWAY = 60.0
MAX_VERDICTS = 4096

_SAFE = re.compile(r"[A-Za-z0-9_.:-]{1,40}")


class TokenVerifier:
    """Verifies registry tokens issued by `issuer` for the registry `audience`.

    `http` is the client to fetch the keys with (the token service's TLS settings); `clock`
    gives epoch seconds for claim checks, `monotonic` paces the key fetches. A token that
    verifies is stated as a `Credential` of `provider` for the registry `audience`, written
    with `username`.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        http: httpx2.AsyncClient,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_age: float = DEFAULT_MAX_AGE,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL,
        fetch_deadline: float = DEFAULT_FETCH_DEADLINE,
        leeway: float = DEFAULT_LEEWAY,
        provider: str,
        username: str,
        key_file: KeyFile | None = None,
    ) -> None:
        self.provider = provider
        self.username = username
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.max_age = max_age
        self.refetch_interval = refetch_interval
        self.fetch_deadline = fetch_deadline
        self.leeway = leeway
        self._http = http
        self._key_file = key_file
        self._clock = clock
        self._monotonic = monotonic
        self._keys: dict[str, jwt.PyJWK] | None = None  # by kid ("" for a key without one)
        self._prints: dict[str, str] = {}  # kid -> fingerprint of the key published under it
        self._published: frozenset[str | None] = frozenset()  # the fingerprints above
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._failure: KeysUnavailable | None = None
        self._lock = loop.Lock()
        # token -> (verdict, fingerprint of the key it verified with)
        self._verdicts: OrderedDict[str, tuple[Credential, str]] = OrderedDict()
        #: Key-set fetches that succeeded, for tests and metrics.
        self.fetches = 0
        #: Called when a key that vouched for tokens is withdrawn (or replaced under its id), so
        #: the holders of those tokens can be looked at again at once.
        self.on_withdrawn: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self.issuer!r}, audience={self.audience!r})"

    def knows(self, key_id: str | None) -> bool:
        """Whether a key is published under `key_id` (any key, for None) in the keys held."""
        if self._keys is None:
            return False
        return key_id in self._keys if key_id is not None else bool(self._keys)

    def still_trusted(self, token: Credential) -> bool:
        """Whether `token`, verified earlier, still verifies with the keys held now: the key
        it verified with is still published (a key replaced under its id is another key)."""
        return token.key_fingerprint in self._published

    async def refresh_if_stale(self) -> None:
        """Refetch the keys held once they are older than `max_age`.

        Called periodically, so that a key the service withdraws stops vouching (and
        `on_withdrawn` fires) within `max_age` even while nothing is exchanged or verified:
        tokens are verified once and their verdicts kept. A failure is logged and the keys
        held stay in use; with none held there is nothing to withdraw, and the next exchange
        fetches them.
        """
        if self._keys is None or self._monotonic() - self._fetched_at < self.max_age:
            return
        with contextlib.suppress(KeysUnavailable):
            await self._key_set(wanted=None)

    async def ensure_keys(self) -> None:
        """Fetch the keys if none are held; raises KeysUnavailable if that fails."""
        await self._key_set(wanted=None)

    async def verify(self, token: str) -> Credential:
        """The verified token; raises InvalidToken (not trusted) or KeysUnavailable."""
        cached = self._verdicts.get(token)
        if cached is not None:
            self._verdicts.move_to_end(token)
            return cached[0]
        kid, algorithm = _header(token)
        keys = await self._key_set(wanted=kid)
        candidates = [
            key
            for found_kid, key in keys.items()
            if (kid is None or found_kid == kid) and key.algorithm_name == algorithm
        ]
        if not candidates:
            raise InvalidToken(
                "token is signed with a key the token service does not publish"
                if kid is None or kid not in keys
                else f"token is signed with {algorithm}, not with the algorithm of its key"
            )
        payload, key = _verified_payload(token, candidates)
        fingerprint = self._prints[key.key_id or ""]
        claims = check_claims(
            payload,
            issuer=self.issuer,
            audience=self.audience,
            now=self._clock(),
            leeway=self.leeway,
        )
        # check_claims requires both:
        assert claims.sub is not None
        assert claims.iat is not None
        verified = Credential(
            provider=self.provider,
            token=token,
            identity=claims.sub,
            registries=(self.audience,),
            username=self.username,
            issued_at=claims.iat,
            expires_at=claims.exp,
            key_id=kid,
            key_fingerprint=fingerprint,
        )
        self._verdicts[token] = (verified, fingerprint)
        while len(self._verdicts) > MAX_VERDICTS:
            self._verdicts.popitem(last=False)
        return verified

    async def _key_set(self, *, wanted: str | None) -> dict[str, jwt.PyJWK]:
        async with self._lock:
            now = self._monotonic()
            if self._keys is None and self._key_file is not None:
                self._load_kept(now)
            held = self._keys
            stale = held is None or now - self._fetched_at >= self.max_age
            unknown = held is not None and wanted is not None and wanted not in held
            may_try = self._attempted_at is None or now - self._attempted_at >= (
                self.refetch_interval
            )
            if (stale or unknown) and may_try:
                self._attempted_at = now
                try:
                    # NB: bounded as a whole, not only per request: verifications of tokens
                    # not yet seen and exchanges wait for this lock.
                    async with loop.within(self.fetch_deadline):
                        fresh = await self._fetch()
                except (KeysUnavailable, TimeoutError) as e:
                    self._failure = (
                        e
                        if isinstance(e, KeysUnavailable)
                        else KeysUnavailable(
                            f"fetching the keys of the token service at {self.issuer} took "
                            f"longer than {self.fetch_deadline:g}s"
                        )
                    )
                    log.warning(
                        "cannot fetch the token service's keys",
                        extra={
                            "error": self._failure.message,
                            "keeping_old_keys": held is not None,
                        },
                    )
                else:
                    self._failure = None
                    keys, entries = fresh
                    self._install(keys, now=now)
                    if self._key_file is not None:
                        self._key_file.save(entries)
            if self._keys is None:
                raise self._failure or KeysUnavailable(
                    f"the keys of the token service at {self.issuer} are not available yet"
                )
            return self._keys

    def _install(self, fetched: dict[str, tuple[jwt.PyJWK, str]], *, now: float) -> None:
        fresh = {kid: key for kid, (key, _) in fetched.items()}
        prints = {kid: fingerprint for kid, (_, fingerprint) in fetched.items()}
        if prints != self._prints:
            log.info(
                "token service keys loaded",
                extra={"key_ids": sorted(fresh), "issuer": self.issuer},
            )
            # A key withdrawn, or replaced under the same id, stops vouching for its tokens.
            published = set(prints.values())
            withdrawn = [t for t, (_, fp) in self._verdicts.items() if fp not in published]
            for token in withdrawn:
                del self._verdicts[token]
            if set(self._prints.values()) - published:
                log.warning(
                    "the token service withdrew a signing key",
                    extra={"issuer": self.issuer, "tokens_no_longer_trusted": len(withdrawn)},
                )
                for listener in self.on_withdrawn:
                    listener()
        self._keys = fresh
        self._prints = prints
        self._published = frozenset(prints.values())
        self._fetched_at = now
        self.fetches += 1

    def _load_kept(self, now: float) -> None:
        """The key set of the key file, if it holds a fresh one (see `tokens.keyfile`)."""
        assert self._key_file is not None
        kept = self._key_file.load(max_age=self.max_age)
        keys = _usable(kept[0]) if kept is not None else {}
        if kept is not None and keys:
            self._install(keys, now=now)
            self._fetched_at = now - kept[1]

    async def _fetch(self) -> tuple[dict[str, tuple[jwt.PyJWK, str]], list[dict[str, Any]]]:
        discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        discovery = await self._get_json(discovery_url, what="discovery document")
        named = discovery.get("issuer")
        if not isinstance(named, str) or named.rstrip("/") != self.issuer:
            raise KeysUnavailable(f"the discovery document at {discovery_url} names another issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise KeysUnavailable(
                f"the discovery document at {discovery_url} has no https jwks_uri"
            )
        document = await self._get_json(jwks_uri, what="key set")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise KeysUnavailable(f"the key set at {jwks_uri} has no keys list")
        keys = _usable(entries)
        if not keys:
            raise KeysUnavailable(f"the key set at {jwks_uri} holds no usable signing key")
        return keys, [entry for entry in entries if isinstance(entry, dict)]

    async def _get_json(self, url: str, *, what: str) -> dict[str, Any]:
        try:
            async with self._http.stream("GET", url) as response:
                body = await read_bounded(response)
                status = response.status_code
        except httpx2.HTTPError as e:
            verification = verification_failure(e)
            if verification:
                raise KeysUnavailable(
                    f"cannot fetch the {what} at {url}: its certificate could not be verified "
                    f"({verification}); check the CA bundle setting (ca_bundle, PSU_CA_BUNDLE)",
                    cause="tls",
                    retryable=False,
                ) from None
            # NB: the reason as `tokens.http.send` gives it (a refused connection, a proxy's
            # refusal), with anything credential-like in it redacted.
            detail = f"{type(e).__name__}: {reason_of(e)}" if str(e) else type(e).__name__
            raise KeysUnavailable(f"cannot fetch the {what} at {url}: {detail}") from None
        if status != 200:
            raise KeysUnavailable(f"the {what} at {url} answered {status}")
        document = load_json(body) if body is not None else NOT_JSON
        if not isinstance(document, dict):
            raise KeysUnavailable(f"the {what} at {url} is not a JSON object")
        return document


def _header(token: str) -> tuple[str | None, str]:
    problem = None
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, UnicodeError):
        # UnicodeError: a lone surrogate (a "\ud800" escape in the Secret's JSON) cannot even
        # be encoded; it is no token either.
        problem = "token is not a JWT"
    if problem is not None:
        raise InvalidToken(problem)
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        shown = algorithm if isinstance(algorithm, str) and _SAFE.fullmatch(algorithm) else "?"
        raise InvalidToken(f"token is signed with {shown!r}, not an asymmetric algorithm")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("token's key id is not a string")
    return kid, algorithm


def _verified_payload(token: str, candidates: list[jwt.PyJWK]) -> tuple[dict[str, Any], jwt.PyJWK]:
    problem = "token's signature does not verify with the token service's keys"
    for key in candidates:
        try:
            payload = jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                # NB: only the signature here; the claims are the core's to judge.
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
            return payload, key
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            problem = "token's payload cannot be decoded"
            break
    raise InvalidToken(problem)


def _usable(entries: list[Any]) -> dict[str, tuple[jwt.PyJWK, str]]:
    """The signing keys of a key set's entries by kid, with their fingerprints."""
    keys: dict[str, tuple[jwt.PyJWK, str]] = {}
    for entry in entries:
        key = _signing_key(entry)
        if key is not None:
            keys[key.key_id or ""] = (key, _fingerprint(entry))
    return keys


def _fingerprint(entry: dict[str, Any]) -> str:
    """A key's identity: its public parameters, whatever id it is published under."""
    return json.dumps(
        {k: v for k, v in entry.items() if k not in ("kid", "use", "alg", "key_ops")},
        sort_keys=True,
    )


def _signing_key(entry: object) -> jwt.PyJWK | None:
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK.from_dict(entry)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    return key if key.algorithm_name in ALGORITHMS else None
