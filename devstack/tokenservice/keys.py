"""Signing keys: the STS's (rotatable, published as a JWKS) and the registry token signer's.

The STS signs with one *current* key and publishes its public key together with any earlier
keys it still honours, which is how an issuer rotates gracefully: clients that cached the old
JWKS keep verifying old tokens, and a client that sees an unknown ``kid`` refetches. Dropping
the old keys at once is the other case a client must survive (a compromised key).

Both survive a restart in the state dir: ``sts-signing-key.pem`` is the current private key
(the file name an older state dir already has), ``sts-published-keys.json`` the public JWKs of
earlier keys still published. Key generation and private file writes are ``devstack.pki``'s.

This module also says which of a *cluster's* keys may sign service-account tokens
(``usable_keys``), since identities validate the JWKS they carry with it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devstack import pki
from devstack.tokenservice.protocol import JSONObject

PrivateKey = pki.PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

STS_KEY_FILE: Final = "sts-signing-key.pem"
STS_PUBLISHED_FILE: Final = "sts-published-keys.json"
REGISTRY_KEY_FILE: Final = "registry-signing-key.pem"
REGISTRY_CERT_FILE: Final = "registry-signing-cert.pem"
REGISTRY_CERT_VALIDITY: Final = dt.timedelta(days=3650)

# Algorithms a cluster may sign service-account tokens with; never HMAC or "none".
SA_TOKEN_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384"})


def usable_keys(jwks: jwt.PyJWKSet) -> list[jwt.PyJWK]:
    return [k for k in jwks.keys if k.algorithm_name in SA_TOKEN_ALGORITHMS]


def pick_key(keys: list[jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    """The key a token's ``kid`` names; without a kid, only an issuer's sole key will do."""
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((k for k in keys if k.key_id == kid), None)


def libtrust_key_id(public_key: PublicKey) -> str:
    """The key ID docker/libtrust derives, which distribution 2.8 matches a token's ``kid`` to."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint: a stable ``kid`` for an STS key."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _algorithm_for(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    curves = {"secp256r1": "ES256", "secp384r1": "ES384"}
    if key.curve.name not in curves:
        raise ValueError(f"unsupported EC curve {key.curve.name}")
    return curves[key.curve.name]


def _public_jwk(public_key: PublicKey) -> JSONObject:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True)
    return jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)


@dataclass(frozen=True)
class SigningKey:
    private_key: PrivateKey
    kid: str

    @property
    def algorithm(self) -> str:
        return _algorithm_for(self.private_key)

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self.private_key, algorithm=self.algorithm, headers={"kid": self.kid}
        )

    def public_jwk(self) -> JSONObject:
        return {
            **_public_jwk(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": self.algorithm,
        }


def load_private_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{path}: expected an EC or RSA private key")
    _algorithm_for(key)
    return key


def _sts_key(key: PrivateKey) -> SigningKey:
    return SigningKey(key, jwk_thumbprint(_public_jwk(key.public_key())))


class StsKeys:
    """The STS's current signing key and the public keys it publishes, kept in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self._key_path = state_dir / STS_KEY_FILE
        self._published_path = state_dir / STS_PUBLISHED_FILE
        if not self._key_path.exists():
            pki.write_private_key(self._key_path, pki.new_key())
        self._current = _sts_key(load_private_key(self._key_path))
        earlier: list[JSONObject] = []
        if self._published_path.exists():
            earlier = json.loads(self._published_path.read_text())["keys"]
        # NB: a crash inside rotate() may leave the current key listed as an earlier one too.
        self._earlier = tuple(k for k in earlier if k.get("kid") != self._current.kid)

    @property
    def current(self) -> SigningKey:
        return self._current

    def rotate(self, *, keep_previous: bool) -> SigningKey:
        """Sign with a new key from now on; keep publishing the earlier ones, or drop them all."""
        earlier = (self._current.public_jwk(), *self._earlier) if keep_previous else ()
        key = pki.new_key()
        # The list first: a crash before the key is replaced leaves a duplicate, not a loss.
        pki.write_private(self._published_path, json.dumps({"keys": list(earlier)}).encode())
        pki.write_private_key(self._key_path, key)
        self._current, self._earlier = _sts_key(key), earlier
        return self._current

    def jwks(self) -> JSONObject:
        return {"keys": [self._current.public_jwk(), *self._earlier]}

    def algorithms(self) -> list[str]:
        return sorted({str(k["alg"]) for k in self.jwks()["keys"]})

    def verification_key(self, kid: str | None) -> jwt.PyJWK | None:
        """The published key a token of ours names, if it is still published."""
        return pick_key(jwt.PyJWKSet.from_dict(self.jwks()).keys, kid)


def create_registry_keypair(key_path: Path, cert_path: Path) -> None:
    """A self-signed cert for the registry's ``auth.token.rootcertbundle``."""
    pki.create_token_signer(
        key_path,
        cert_path,
        common_name="devstack registry token signer",
        validity=REGISTRY_CERT_VALIDITY,
    )


def load_registry_key(key_path: Path, cert_path: Path) -> SigningKey:
    key = load_private_key(key_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise ValueError(f"{cert_path} does not certify the key in {key_path}")
    return SigningKey(key, libtrust_key_id(key.public_key()))


def registry_signing(
    state_dir: Path, key_path: Path | None, cert_path: Path | None
) -> tuple[SigningKey, Path]:
    """The registry token signer given on the command line, or one kept in the state dir."""
    if key_path is None or cert_path is None:
        key_path = state_dir / REGISTRY_KEY_FILE
        cert_path = state_dir / REGISTRY_CERT_FILE
        if not (key_path.exists() and cert_path.exists()):
            create_registry_keypair(key_path, cert_path)
    return load_registry_key(key_path, cert_path), cert_path.resolve()
