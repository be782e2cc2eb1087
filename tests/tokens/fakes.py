"""Small fakes shared by the token tests: signing keys, a token service spoken to over HTTP
(discovery, keys, exchange) and subject token sources; the clock and the provider are the
shared ones of `tests.fakes`, re-exported here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.tokens import Subject, TokenCache
from tests.fakes import NOW, REGISTRY, FakeClock

ISSUER = "https://issuer.test"
IDENTITY = "0123abcd/4567ef"
#: The controller's own ServiceAccount, the subject of most exchanges.
OWN = Subject(namespace="pull-secret-updater", service_account="controller")

#: A stand-in service-account token: JWT-shaped, as the real one is.
SA_TOKEN = jwt.encode(
    {"iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:x:y"},
    "service-account-signing-key-for-tests-0123456789",
    algorithm="HS256",
)

Handler = Callable[[httpx2.Request], Awaitable[httpx2.Response]]


def everything_printed(exc: BaseException) -> str:
    """What any log handler could print about `exc`: message, repr, full chained traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: object, *, header: object = None) -> str:
    """A JWT-shaped string with any header and claims and a signature nobody made."""
    header = {"alg": "ES256", "typ": "JWT", "kid": "key-1"} if header is None else header
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}.c2ln"


def claims(
    *,
    identity: str = IDENTITY,
    iat: float | None = NOW,
    lifetime: float = 3600,
    **extra: object,
) -> dict[str, object]:
    """The claims of a registry token from ISSUER; an `iat` or `extra` of None drops that
    claim."""
    result: dict[str, object] = {
        "iss": ISSUER,
        "aud": REGISTRY,
        "sub": identity,
        "iat": None if iat is None else int(iat),
        "exp": int((NOW if iat is None else iat) + lifetime),
    }
    result.update(extra)
    return {key: value for key, value in result.items() if value is not None}


class SigningKey:
    """A private key the fake token service (or an attacker) signs with."""

    def __init__(self, *, kid: str | None = "key-1", kind: str = "ec") -> None:
        self.kid = kid
        self.private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        if kind == "ec":
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.algorithm = "ES256"
        elif kind == "rsa":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
        elif kind == "ed25519":
            self.private = ed25519.Ed25519PrivateKey.generate()
            self.algorithm = "EdDSA"
        else:
            raise ValueError(kind)

    def sign(self, payload: Mapping[str, object], *, kid: str | None = None) -> str:
        """`payload` signed with this key, under its own key id or the one given."""
        key_id = kid if kid is not None else self.kid
        headers = {"kid": key_id} if key_id is not None else None
        return jwt.encode(dict(payload), self.private, algorithm=self.algorithm, headers=headers)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk.update({"use": "sig", "alg": self.algorithm})
        if self.kid is not None:
            jwk["kid"] = self.kid
        return jwk


def hmac_signed(payload: Mapping[str, object], *, secret: bytes, kid: str) -> str:
    """An HS256 token made with `secret` (say, a public key) as the HMAC key, by hand: PyJWT
    refuses to use a PEM key as an HMAC secret, an attacker does not."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(dict(payload)).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(signature)}"


# Keys are slow-ish to make (RSA); these are shared, each test makes its own service around them.
KEY = SigningKey(kid="key-1")
ROTATED_KEY = SigningKey(kid="key-2")
ATTACKER_KEY = SigningKey(kid="key-1")  # same key id as KEY, another private key
RSA_KEY = SigningKey(kid="rsa-1", kind="rsa")
ED_KEY = SigningKey(kid="ed-1", kind="ed25519")

DISCOVERY_PATH = "/.well-known/openid-configuration"
KEYS_PATH = "/keys"
EXCHANGE_PATH = "/sts/exchange"


class FakeTokenService:
    """The token service at ISSUER, over HTTP: discovery, the key set and the exchange.

    `published` are the keys served; `signer` signs the tokens it issues (for the identity
    asked, valid `lifetime` from the clock). `exchange` replaces the exchange's answer;
    `failing` maps a path to the status it answers instead; `discovery` replaces the
    discovery document.
    """

    def __init__(
        self,
        *,
        clock: FakeClock,
        published: list[SigningKey] | None = None,
        lifetime: float = 3600,
        issuer: str = ISSUER,
    ) -> None:
        self.clock = clock
        self.issuer = issuer
        self.published = [KEY] if published is None else published
        self.signer = self.published[0] if self.published else KEY
        self.lifetime = lifetime
        self.exchange: Handler | None = None
        self.failing: dict[str, int] = {}
        self.discovery: dict[str, object] | None = None
        self.requests: list[httpx2.Request] = []

    def hits(self, path: str) -> int:
        return sum(1 for request in self.requests if request.url.path == path)

    def mint(self, identity: str = IDENTITY, **extra: object) -> str:
        extra = {"iss": self.issuer, **extra}
        return self.signer.sign(
            claims(identity=identity, iat=self.clock.now, lifetime=self.lifetime, **extra)
        )

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if path in self.failing:
            return httpx2.Response(self.failing[path], json={"code": "unavailable"})
        if path == DISCOVERY_PATH and request.method == "GET":
            document = self.discovery or {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}{KEYS_PATH}",
                "id_token_signing_alg_values_supported": ["ES256"],
            }
            return httpx2.Response(200, json=document)
        if path == KEYS_PATH and request.method == "GET":
            return httpx2.Response(200, json={"keys": [k.public_jwk() for k in self.published]})
        if path == EXCHANGE_PATH and request.method == "POST":
            if self.exchange is not None:
                return await self.exchange(request)
            identity = request.url.params.get("identity", "")
            return httpx2.Response(200, json={"token": self.mint(identity)})
        return httpx2.Response(404, json={"code": "not_found", "message": path})

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=self.transport())


@dataclass
class StaticTokenSource:
    """The controller's own service-account token, always the same."""

    token: str = SA_TOKEN
    calls: int = 0

    async def get(self) -> str:
        self.calls += 1
        return self.token


@dataclass
class SubjectTokenMap:
    """A service-account token per subject; any other subject is refused."""

    tokens: dict[Subject, str] = field(default_factory=lambda: {OWN: SA_TOKEN})
    asked: list[Subject] = field(default_factory=list)

    async def get(self, subject: Subject) -> str:
        self.asked.append(subject)
        try:
            return self.tokens[subject]
        except KeyError:
            raise AssertionError(f"no token for {subject}") from None


def want_of(identity: str = IDENTITY) -> Want:
    """What a Secret annotated with `identity` asks of the Chainguard provider."""
    return Want(provider="chainguard", identity=identity, registries=(REGISTRY,))


def offer_to(cache: TokenCache, *, subject: Subject, token: Credential) -> None:
    """Offer `token` as a Secret of its identity would."""
    cache.offer(subject=subject, want=want_of(token.identity), token=token)
