"""A local stand-in for the Chainguard STS and for a distribution registry's token endpoint.

The controller's whole job is a token exchange, so the local stack needs an issuer that judges
service-account tokens the way an assumable identity does and that can misbehave on request.
One process serves three HTTPS listeners, each for one kind of client:

- the STS listener (``--listen``): ``/sts/exchange`` and the OIDC discovery documents. This is
  the one the controller talks to, and the only one faults act on. ``refuse`` really closes its
  socket (and drops open keep-alive connections), which is why nothing else lives on it;
- the registry listener (``--registry-listen``): ``/registry/token``, the ``auth.token.realm``
  of the distribution registry. It stays up while the STS is faulted, so a still-valid
  credential keeps working, as it would against cgr.dev while the STS is down. The STS
  listener serves the same endpoint too, for a realm that must be known before the registry
  listener's port is (it then goes down with ``refuse``);
- the admin listener (``--admin-listen``): identities, statistics, faults, runtime config and
  every token issued (``/admin/issued``, for leak scans), behind a bearer token. It must stay
  reachable to clear a ``refuse`` fault.

State that must survive a restart (identities, the signing keys) lives in ``--state-dir``.
Once every listener is up, the ports, URLs and admin token are written to ``--ready-file``
(see ``ReadyInfo``). ``TokenServiceAdmin`` is the synchronous client tests and fixtures use.

Errors are JSON ``{"code", "message"}`` with a real HTTP status, built by ``error_response``
only. Messages name the cause but never contain a token.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Self

import aiohttp
import httpx2
import jwt
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

log = logging.getLogger("devstack.tokenservice")

JSONObject = dict[str, Any]

REGISTRY_PULL: Final = "registry.pull"
REGISTRY_USERNAME: Final = "_token"
ADMIN_USERNAME: Final = "admin"
SA_TOKEN_LEEWAY: Final = 10
#: How many issued tokens ``/admin/issued`` remembers; older ones are dropped (and counted).
MAX_ISSUED: Final = 100_000
DISCOVERY_TTL: Final = 60.0
# Algorithms a cluster may sign service-account tokens with; never HMAC or "none".
SA_TOKEN_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384"})


# --------------------------------------------------------------------------------------------
# Errors


_CODES: Final = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "already_exists",
    429: "resource_exhausted",
    500: "internal",
    501: "unimplemented",
    502: "unavailable",
    503: "unavailable",
    504: "deadline_exceeded",
}


def code_for_status(status: int) -> str:
    return _CODES.get(status, "unknown")


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The one place the error shape is built."""
    body = {"code": code_for_status(status), "message": message}
    return web.json_response(body, status=status, headers=headers)


class ApiError(Exception):
    """A request failed in a way the client should be told about."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.message, headers=self.headers)


def bad_request(message: str) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, message)


def unauthenticated(message: str, *, headers: Mapping[str, str] | None = None) -> ApiError:
    return ApiError(HTTPStatus.UNAUTHORIZED, message, headers=headers)


def permission_denied(message: str) -> ApiError:
    return ApiError(HTTPStatus.FORBIDDEN, message)


def not_found(message: str) -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, message)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(e.status, e.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


# --------------------------------------------------------------------------------------------
# Keys


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


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
    """RFC 7638 thumbprint: a stable ``kid`` for the STS key."""
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


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_private_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{path}: expected an EC or RSA private key")
    _algorithm_for(key)
    return key


def load_or_create_sts_key(path: Path) -> SigningKey:
    if not path.exists():
        _write_private(path, _pem(ec.generate_private_key(ec.SECP256R1())))
    key = _load_private_key(path)
    return SigningKey(key, jwk_thumbprint(_public_jwk(key.public_key())))


def create_registry_keypair(key_path: Path, cert_path: Path) -> None:
    """A self-signed cert for the registry's ``auth.token.rootcertbundle``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack registry token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_registry_key(key_path: Path, cert_path: Path) -> SigningKey:
    key = _load_private_key(key_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise ValueError(f"{cert_path} does not certify the key in {key_path}")
    return SigningKey(key, libtrust_key_id(key.public_key()))


# --------------------------------------------------------------------------------------------
# Identities


@dataclass(frozen=True)
class Identity:
    """An assumable identity: who may exchange which tokens for registry access."""

    uid: str
    name: str
    issuer: str
    subject: str | None = None
    subject_pattern: str | None = None
    audience: str | None = None
    # Canonical JSON of the issuer's JWKS, kept as text so the value stays immutable.
    issuer_keys: str | None = None
    roles: tuple[str, ...] = ()

    def subject_matches(self, sub: str) -> bool:
        if self.subject is not None:
            return sub == self.subject
        return (
            self.subject_pattern is not None and re.fullmatch(self.subject_pattern, sub) is not None
        )

    def to_json(self) -> JSONObject:
        return {
            "uid": self.uid,
            "name": self.name,
            "issuer": self.issuer,
            "subject": self.subject,
            "subject_pattern": self.subject_pattern,
            "audience": self.audience,
            "issuer_keys": json.loads(self.issuer_keys) if self.issuer_keys else None,
            "roles": list(self.roles),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Identity:
        keys = data.get("issuer_keys")
        return cls(
            uid=data["uid"],
            name=data["name"],
            issuer=data["issuer"],
            subject=data.get("subject"),
            subject_pattern=data.get("subject_pattern"),
            audience=data.get("audience"),
            issuer_keys=_canonical_json(keys) if keys else None,
            roles=tuple(data.get("roles", ())),
        )


_IDENTITY_FIELDS: Final = frozenset(
    {"name", "issuer", "subject", "subject_pattern", "audience", "issuer_keys", "roles"}
)


def _canonical_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def _parse_jwks(value: Any) -> str:
    """Validate a JWKS given as an object or as its JSON text; return canonical JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise bad_request(f"issuer_keys is not valid JSON: {e}") from e
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise bad_request('issuer_keys must be a JWKS: an object with a "keys" list')
    try:
        usable = usable_keys(jwt.PyJWKSet.from_dict(value))
    except (jwt.PyJWTError, TypeError, ValueError) as e:
        raise bad_request(f"issuer_keys is not a valid JWKS: {e}") from e
    if not usable:
        raise bad_request("issuer_keys has no RSA or EC signing key")
    return _canonical_json(value)


def _parse_roles(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise bad_request("roles must be a list of role names")
    return tuple(value)


def parse_identity(body: Mapping[str, Any], *, uid: str) -> Identity:
    """Build an identity from what ``chainctl iam identities create`` would send."""
    unknown = sorted(set(body) - _IDENTITY_FIELDS)
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}")
    name = _optional_str(body, "name")
    issuer = _optional_str(body, "issuer")
    if name is None:
        raise bad_request("name is required")
    if issuer is None:
        raise bad_request("issuer is required")
    subject = _optional_str(body, "subject")
    pattern = _optional_str(body, "subject_pattern")
    if (subject is None) == (pattern is None):
        raise bad_request("exactly one of subject and subject_pattern is required")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as e:
            raise bad_request(f"subject_pattern is not a valid regular expression: {e}") from e
    keys = body.get("issuer_keys")
    issuer_keys = _parse_jwks(keys) if keys not in (None, "") else None
    if issuer_keys is None and not issuer.startswith(("https://", "http://")):
        raise bad_request("without issuer_keys, issuer must be an http(s) URL for OIDC discovery")
    return Identity(
        uid=uid,
        name=name,
        issuer=issuer,
        subject=subject,
        subject_pattern=pattern,
        audience=_optional_str(body, "audience"),
        issuer_keys=issuer_keys,
        roles=_parse_roles(body.get("roles")),
    )


class IdentityStore:
    """Identities by UID, persisted as one JSON file rewritten atomically on each change."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._identities: dict[str, Identity] = {}
        if path.exists():
            data = json.loads(path.read_text())
            self._group: str = data["group"]
            for item in data["identities"]:
                identity = Identity.from_json(item)
                self._identities[identity.uid] = identity
        else:
            # Chainguard UIDs are "<40-hex group>/<16-hex id>"; one group per state dir.
            self._group = secrets.token_hex(20)
            self._save()

    def new_uid(self) -> str:
        return f"{self._group}/{secrets.token_hex(8)}"

    def get(self, uid: str) -> Identity | None:
        return self._identities.get(uid)

    def all(self) -> list[Identity]:
        return list(self._identities.values())

    def add(self, identity: Identity) -> None:
        self._identities[identity.uid] = identity
        self._save()

    def remove(self, uid: str) -> bool:
        if self._identities.pop(uid, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        data = {"group": self._group, "identities": [i.to_json() for i in self.all()]}
        _write_private(self._path, json.dumps(data, indent=2).encode())


# --------------------------------------------------------------------------------------------
# Verifying service-account tokens


def usable_keys(jwks: jwt.PyJWKSet) -> list[jwt.PyJWK]:
    return [k for k in jwks.keys if k.algorithm_name in SA_TOKEN_ALGORITHMS]


def _pick_key(keys: list[jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((k for k in keys if k.key_id == kid), None)


class IssuerKeys:
    """Finds the key that signed a service-account token for an identity.

    An identity either carries its issuer's JWKS (what ``--issuer-keys`` gives on KinD, whose
    issuer URL is not reachable from outside) or is resolved by OIDC discovery, cached briefly.
    """

    def __init__(self, session: aiohttp.ClientSession, *, ttl: float = DISCOVERY_TTL) -> None:
        self._session = session
        self._ttl = ttl
        self._discovered: dict[str, tuple[float, list[jwt.PyJWK]]] = {}

    async def find(self, identity: Identity, kid: str | None) -> jwt.PyJWK:
        if identity.issuer_keys is not None:
            keys = usable_keys(jwt.PyJWKSet.from_json(identity.issuer_keys))
            where = "the identity's issuer keys"
        else:
            keys = await self._discover(identity.issuer, refresh=False)
            if _pick_key(keys, kid) is None:
                # NB: an unknown kid usually means the issuer rotated its keys.
                keys = await self._discover(identity.issuer, refresh=True)
            where = f"the JWKS of {identity.issuer}"
        key = _pick_key(keys, kid)
        if key is None:
            raise unauthenticated(f"token key id {kid!r} is not in {where}")
        return key

    async def _discover(self, issuer: str, *, refresh: bool) -> list[jwt.PyJWK]:
        cached = self._discovered.get(issuer)
        if cached and not refresh and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        keys = await self._fetch(issuer)
        self._discovered[issuer] = (time.monotonic(), keys)
        return keys

    async def _fetch(self, issuer: str) -> list[jwt.PyJWK]:
        try:
            config = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
            if config.get("issuer") != issuer:
                raise ValueError(f"discovery names issuer {config.get('issuer')!r}")
            keys = usable_keys(jwt.PyJWKSet.from_dict(await self._get_json(config["jwks_uri"])))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, jwt.PyJWTError) as e:
            raise ApiError(
                HTTPStatus.SERVICE_UNAVAILABLE, f"cannot fetch the keys of issuer {issuer}: {e}"
            ) from e
        if not keys:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"issuer {issuer} has no usable keys")
        return keys

    async def _get_json(self, url: str) -> JSONObject:
        async with self._session.get(url, raise_for_status=True) as response:
            data = await response.json(content_type=None)
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return data


def _as_str_list(value: Any) -> list[str]:
    """A JWT-style string-or-list-of-strings field as a list; other values count as empty."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, str) and item]


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    return _as_str_list(claims.get("aud"))


def _unverified_kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as e:
        raise unauthenticated("bearer token is not a JWT") from e
    return kid if isinstance(kid, str) else None


def _decode(token: str, key: Any, *, algorithm: str, leeway: float) -> JSONObject:
    """Check signature and time claims; the caller judges iss, aud and sub itself."""
    try:
        claims: JSONObject = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            options={"verify_aud": False, "verify_iss": False, "require": ["exp", "iss", "sub"]},
            leeway=leeway,
        )
    except jwt.ExpiredSignatureError as e:
        raise unauthenticated("token has expired") from e
    except jwt.InvalidSignatureError as e:
        raise unauthenticated("token signature does not verify") from e
    except jwt.MissingRequiredClaimError as e:
        raise unauthenticated(f"token has no {e.claim!r} claim") from e
    except jwt.PyJWTError as e:
        raise unauthenticated(f"token is invalid: {e}") from e
    return claims


async def verify_sa_token(
    token: str, identity: Identity, keys: IssuerKeys, *, default_audience: str
) -> JSONObject:
    key = await keys.find(identity, _unverified_kid(token))
    claims = _decode(token, key.key, algorithm=key.algorithm_name, leeway=SA_TOKEN_LEEWAY)
    if claims["iss"] != identity.issuer:
        raise unauthenticated(
            f"token issuer {claims['iss']!r} is not the identity's issuer {identity.issuer!r}"
        )
    audience = identity.audience or default_audience
    if audience not in _audiences(claims):
        raise permission_denied(f"token audience does not include {audience!r}")
    if not identity.subject_matches(str(claims["sub"])):
        raise permission_denied(f"token subject {claims['sub']!r} does not match the identity")
    return claims


# --------------------------------------------------------------------------------------------
# Requests


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


async def _json_object(request: web.Request) -> JSONObject:
    try:
        body = await request.json()
    except ValueError as e:
        raise bad_request("request body is not JSON") from e
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


@dataclass(frozen=True)
class ExchangeRequest:
    bearer: str | None
    identity: str | None
    audiences: tuple[str, ...]


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(aiohttp.hdrs.AUTHORIZATION, "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


async def read_exchange_request(request: web.Request) -> ExchangeRequest:
    """Fields from the query string (as the controller sends them) or a JSON body (the SDK's)."""
    identity: Any = request.query.get("identity")
    audiences = _as_str_list(request.query.getall("aud", []))
    if request.can_read_body:
        body = await _json_object(request)
        identity = identity or body.get("identity")
        audiences += _as_str_list(body.get("aud"))
    return ExchangeRequest(
        bearer=_bearer(request),
        identity=identity if isinstance(identity, str) and identity else None,
        audiences=tuple(audiences),
    )


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """``type:name:actions`` items; a query may repeat ``scope`` or space-separate them."""
    scopes = []
    for value in values:
        for item in value.split():
            type_, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if not type_ or not name:
                raise bad_request(f"malformed scope {item!r}")
            scopes.append(Scope(type_, name, tuple(a for a in actions.split(",") if a)))
    return scopes


@dataclass(frozen=True)
class Principal:
    """Who asked the registry token endpoint, and until when their credential is good."""

    subject: str
    admin: bool
    may_pull: bool
    expires_at: int | None

    def grant(self, scope: Scope) -> list[str]:
        if self.admin:
            return list(scope.actions)
        if scope.type == "repository" and "pull" in scope.actions and self.may_pull:
            return ["pull"]
        return []


# --------------------------------------------------------------------------------------------
# Faults and statistics


FAULT_MODES: Final = (
    "none",
    "refuse",
    "status",
    "slow",
    "malformed",
    "expired",
    "no_exp",
    "garbage_token",
)
_FAULT_FIELDS: Final = frozenset({"mode", "status", "delay", "count", "duration"})


@dataclass(frozen=True)
class Fault:
    """How ``/sts/exchange`` misbehaves, for ``count`` exchanges and/or ``duration`` seconds."""

    mode: str
    status: int = 503
    delay: float = 5.0
    count: int | None = None
    duration: float | None = None

    def to_json(self) -> JSONObject:
        return dataclasses.asdict(self)


def _number(body: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise bad_request(f"{key} must be a number")
    return value


def parse_fault(body: Mapping[str, Any]) -> Fault | None:
    """The fault a ``POST /admin/faults`` body asks for; None for mode ``none``."""
    unknown = sorted(set(body) - _FAULT_FIELDS)
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}")
    mode = body.get("mode")
    if mode not in FAULT_MODES:
        raise bad_request(f"mode must be one of {', '.join(FAULT_MODES)}")
    status = _number(body, "status", 503)
    delay = _number(body, "delay", 5.0)
    count = _number(body, "count", None)
    duration = _number(body, "duration", None)
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise bad_request("status must be an HTTP error status (400-599)")
    if delay is None or delay < 0:
        raise bad_request("delay must be a number of seconds >= 0")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise bad_request("count must be a positive integer or null")
    if duration is not None and duration <= 0:
        raise bad_request("duration must be a positive number of seconds or null")
    if mode == "refuse" and count is not None:
        # Refused connections never reach the service, so there is nothing to count.
        raise bad_request("refuse cannot be limited by count; use duration or clear it")
    if mode == "none":
        return None
    return Fault(mode, status=status, delay=float(delay), count=count, duration=duration)


class FaultSwitch:
    """The one active fault, counted down by each exchange it affects."""

    def __init__(self) -> None:
        self._fault: Fault | None = None
        self._left: int | None = None

    @property
    def current(self) -> Fault | None:
        return self._fault

    def set(self, fault: Fault | None) -> None:
        self._fault = fault
        self._left = fault.count if fault else None

    def take(self) -> Fault | None:
        """The fault for the exchange now arriving, if any."""
        fault = self._fault
        if fault is None or fault.mode == "refuse":
            return None
        if self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self.set(None)
        return fault

    def to_json(self) -> JSONObject:
        if self._fault is None:
            return {"mode": "none"}
        return {**self._fault.to_json(), "remaining": self._left}


class Stats:
    """Exchanges per identity UID (ok = a normal token was issued) and registry tokens issued.

    ``in_flight`` counts, per identity UID, the exchanges being answered right now (a ``slow``
    fault keeps them open), so a test can act while a client waits for an answer; a reset
    leaves it alone.
    """

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.exchanges: dict[str, dict[str, int]] = {}
        self.exchanges_total = {"ok": 0, "error": 0}
        self.registry_tokens = 0

    def record_exchange(self, uid: str | None, *, ok: bool) -> None:
        outcome = "ok" if ok else "error"
        self.exchanges_total[outcome] += 1
        if uid is not None:
            self.exchanges.setdefault(uid, {"ok": 0, "error": 0})[outcome] += 1

    def to_json(self) -> JSONObject:
        return {
            "exchanges": self.exchanges,
            "exchanges_total": self.exchanges_total,
            "registry_tokens": self.registry_tokens,
            "in_flight": {uid: n for uid, n in self.in_flight.items() if n},
        }


class IssuedTokens:
    """Every token handed out, oldest first, so a test can search what a client emitted for them.

    ``kind`` is ``sts`` (an exchange answer, faulty ones included) or ``registry`` (the
    registry's token endpoint). Bounded by ``limit``; ``dropped`` counts what fell off.
    """

    def __init__(self, *, limit: int = MAX_ISSUED) -> None:
        self._items: deque[tuple[str, str]] = deque(maxlen=limit)
        self.dropped = 0

    def add(self, kind: str, token: str) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append((kind, token))

    def to_json(self) -> JSONObject:
        return {
            "items": [{"kind": kind, "token": token} for kind, token in self._items],
            "dropped": self.dropped,
        }


# --------------------------------------------------------------------------------------------
# Settings and listeners


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def url(self, port: int) -> str:
        """A URL clients can reach; wildcard binds are reached over loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@dataclass(frozen=True)
class Settings:
    listen: HostPort
    registry_listen: HostPort
    admin_listen: HostPort
    tls_cert: Path
    tls_key: Path
    state_dir: Path
    issuer_url: str | None
    registry_key: Path | None
    registry_cert: Path | None
    registry_service: str
    registry_issuer: str
    registry_audience: str
    registry_token_lifetime: int
    lifetime: int
    sa_audience: str
    ca_bundle: Path | None
    admin_token: str
    admin_password: str | None
    ready_file: Path | None


class Listener:
    """One HTTPS app on one port that can stop accepting connections and start again."""

    def __init__(self, app: web.Application, address: HostPort, tls: ssl.SSLContext) -> None:
        self._runner = web.AppRunner(app)
        self._address = address
        self._tls = tls
        self._site: web.TCPSite | None = None
        self.port = address.port

    @property
    def url(self) -> str:
        return self._address.url(self.port)

    async def start(self) -> None:
        await self._runner.setup()
        await self.resume()

    async def resume(self) -> None:
        if self._site is not None:
            return
        # NB: the first start may bind port 0; later starts rebind the port it got.
        site = web.TCPSite(
            self._runner, self._address.host, self.port, ssl_context=self._tls, reuse_address=True
        )
        await site.start()
        self._site, self.port = site, site.port

    async def pause(self) -> None:
        """Refuse new connections and drop open ones, as a dead server would."""
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        if self._runner.server is not None:
            for connection in self._runner.server.connections:
                connection.force_close()

    async def close(self) -> None:
        await self._runner.cleanup()


# --------------------------------------------------------------------------------------------
# The service


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


class TokenService:
    """The handlers and state behind the three listeners (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: IdentityStore,
        sts_key: SigningKey,
        registry_key: SigningKey,
        registry_cert: Path,
        issuer_keys: IssuerKeys,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sts_key = sts_key
        self._registry_key = registry_key
        self._registry_cert = registry_cert
        self._issuer_keys = issuer_keys
        self._lifetime = settings.lifetime
        self._faults = FaultSwitch()
        self._fault_expiry: asyncio.Task[None] | None = None
        self._stats = Stats()
        self._issued = IssuedTokens()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(settings.tls_cert, settings.tls_key)
        self._sts = Listener(self._sts_app(), settings.listen, tls)
        self._registry = Listener(self._registry_app(), settings.registry_listen, tls)
        self._admin = Listener(self._admin_app(), settings.admin_listen, tls)
        self.issuer_url = settings.issuer_url or ""

    # -- lifecycle

    async def start(self) -> None:
        for listener in (self._sts, self._registry, self._admin):
            await listener.start()
        if not self.issuer_url:
            self.issuer_url = self._sts.url

    async def close(self) -> None:
        if self._fault_expiry is not None:
            self._fault_expiry.cancel()
        for listener in (self._admin, self._registry, self._sts):
            await listener.close()

    def ready_info(self) -> ReadyInfo:
        s = self._settings
        return ReadyInfo(
            pid=os.getpid(),
            port=self._sts.port,
            registry_port=self._registry.port,
            admin_port=self._admin.port,
            issuer_url=self.issuer_url,
            sts_url=self._sts.url,
            registry_realm=f"{self._registry.url}/registry/token",
            admin_url=self._admin.url,
            admin_token=s.admin_token,
            registry_cert=str(self._registry_cert),
            registry_service=s.registry_service,
            registry_issuer=s.registry_issuer,
            registry_audience=s.registry_audience,
        )

    # -- apps

    def _sts_app(self) -> web.Application:
        app = web.Application(middlewares=[errors_as_json])
        app.router.add_route("GET", "/sts/exchange", self.handle_exchange)
        app.router.add_route("POST", "/sts/exchange", self.handle_exchange)
        app.router.add_get("/.well-known/openid-configuration", self.handle_discovery)
        app.router.add_get("/.well-known/jwks.json", self.handle_jwks)
        app.router.add_get("/registry/token", self.handle_registry_token)
        app.router.add_get("/healthz", healthz)
        return app

    def _registry_app(self) -> web.Application:
        app = web.Application(middlewares=[errors_as_json])
        app.router.add_get("/registry/token", self.handle_registry_token)
        app.router.add_get("/healthz", healthz)
        return app

    def _admin_app(self) -> web.Application:
        app = web.Application(middlewares=[errors_as_json, self._require_admin])
        app.router.add_get("/healthz", healthz)
        app.router.add_post("/admin/identities", self.handle_create_identity)
        app.router.add_get("/admin/identities", self.handle_list_identities)
        app.router.add_get("/admin/identities/{uid:.+}", self.handle_get_identity)
        app.router.add_delete("/admin/identities/{uid:.+}", self.handle_delete_identity)
        app.router.add_get("/admin/stats", self.handle_stats)
        app.router.add_post("/admin/stats/reset", self.handle_reset_stats)
        app.router.add_get("/admin/issued", self.handle_issued)
        app.router.add_get("/admin/faults", self.handle_get_faults)
        app.router.add_post("/admin/faults", self.handle_set_fault)
        app.router.add_get("/admin/config", self.handle_get_config)
        app.router.add_post("/admin/config", self.handle_set_config)
        return app

    @web.middleware
    async def _require_admin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/healthz":
            token = _bearer(request) or ""
            if not hmac.compare_digest(token.encode(), self._settings.admin_token.encode()):
                raise unauthenticated("admin bearer token required")
        return await handler(request)

    # -- STS

    async def handle_exchange(self, request: web.Request) -> web.StreamResponse:
        fault = self._faults.take()
        try:
            ask = await read_exchange_request(request)
        except ApiError as e:
            self._stats.record_exchange(None, ok=False)
            return e.response()
        asking = ask.identity or ""
        self._stats.in_flight[asking] = self._stats.in_flight.get(asking, 0) + 1
        try:
            response, ok = await self._answer_exchange(ask, fault)
        finally:
            self._stats.in_flight[asking] -= 1
        self._stats.record_exchange(ask.identity, ok=ok)
        return response

    async def _answer_exchange(
        self, ask: ExchangeRequest, fault: Fault | None
    ) -> tuple[web.StreamResponse, bool]:
        mode = fault.mode if fault else None
        if fault is not None and mode == "slow":
            await asyncio.sleep(fault.delay)
        if fault is not None and mode == "status":
            return error_response(fault.status, "injected fault"), False
        if mode == "malformed":
            return web.Response(text="<html>not json", content_type="application/json"), False
        try:
            body = await self._exchange(ask, mode)
        except ApiError as e:
            return e.response(), False
        return web.json_response(body), mode in (None, "slow")

    async def _exchange(self, ask: ExchangeRequest, mode: str | None) -> JSONObject:
        if ask.bearer is None:
            raise unauthenticated("missing bearer token")
        if ask.identity is None:
            raise bad_request("missing identity")
        if not ask.audiences:
            raise bad_request("missing aud")
        identity = self._store.get(ask.identity)
        if identity is None:
            raise not_found(f"identity {ask.identity} not found")
        await verify_sa_token(
            ask.bearer, identity, self._issuer_keys, default_audience=self._settings.sa_audience
        )
        if REGISTRY_PULL not in identity.roles:
            raise permission_denied(f"identity {identity.uid} lacks role {REGISTRY_PULL}")
        return self._mint_exchange_token(identity, ask.audiences, mode)

    def _mint_exchange_token(
        self, identity: Identity, audiences: tuple[str, ...], mode: str | None
    ) -> JSONObject:
        now = int(time.time())
        if mode == "expired":
            # Far enough in the past that no client leeway can accept it.
            now -= self._lifetime + 120
        exp = now + self._lifetime
        claims: JSONObject = {
            "iss": self.issuer_url,
            "sub": identity.uid,
            "aud": audiences[0] if len(audiences) == 1 else list(audiences),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": uuid.uuid4().hex,
        }
        if mode == "no_exp":
            del claims["exp"]
            token = self._sts_key.sign(claims)
            self._issued.add("sts", token)
            return {"token": token}
        if mode == "garbage_token":
            token = f"not-a-jwt-{secrets.token_hex(16)}"
        else:
            token = self._sts_key.sign(claims)
        self._issued.add("sts", token)
        return {"token": token, "expiry": rfc3339(exp)}

    async def handle_discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer_url,
                "jwks_uri": f"{self.issuer_url}/.well-known/jwks.json",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [self._sts_key.algorithm],
            }
        )

    async def handle_jwks(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [self._sts_key.public_jwk()]})

    # -- registry token endpoint

    async def handle_registry_token(self, request: web.Request) -> web.Response:
        principal = self._authenticate_registry(request)
        service = request.query.get("service")
        if service is not None and service != self._settings.registry_service:
            raise bad_request(f"unknown service {service!r}")
        scopes = parse_scopes(request.query.getall("scope", []))
        now = int(time.time())
        exp = now + self._settings.registry_token_lifetime
        if principal.expires_at is not None:
            # A registry token never outlives the credential it was issued for.
            exp = min(exp, principal.expires_at)
        token = self._registry_key.sign(
            {
                "iss": self._settings.registry_issuer,
                "sub": principal.subject,
                "aud": self._settings.registry_service,
                "iat": now,
                "nbf": now,
                "exp": exp,
                "jti": uuid.uuid4().hex,
                "access": [
                    {"type": s.type, "name": s.name, "actions": principal.grant(s)} for s in scopes
                ],
            }
        )
        self._stats.registry_tokens += 1
        self._issued.add("registry", token)
        return web.json_response(
            {
                "token": token,
                "access_token": token,
                "expires_in": exp - now,
                "issued_at": rfc3339(now),
            }
        )

    def _authenticate_registry(self, request: web.Request) -> Principal:
        def denied(message: str) -> ApiError:
            challenge = 'Basic realm="devstack registry token service"'
            return unauthenticated(message, headers={aiohttp.hdrs.WWW_AUTHENTICATE: challenge})

        header = request.headers.get(aiohttp.hdrs.AUTHORIZATION)
        if not header:
            raise denied("authentication required")
        try:
            credentials = aiohttp.BasicAuth.decode(header)
        except ValueError as e:
            raise denied("expected HTTP Basic credentials") from e
        if credentials.login == ADMIN_USERNAME:
            expected = (self._settings.admin_password or "").encode()
            if not expected or not hmac.compare_digest(credentials.password.encode(), expected):
                raise denied("bad admin credentials")
            return Principal(ADMIN_USERNAME, admin=True, may_pull=True, expires_at=None)
        if credentials.login != REGISTRY_USERNAME:
            raise denied(f"username must be {REGISTRY_USERNAME}")
        try:
            return self._principal_for(credentials.password)
        except ApiError as e:
            raise denied(e.message) from e

    def _principal_for(self, token: str) -> Principal:
        claims = _decode(
            token, self._sts_key.public_key, algorithm=self._sts_key.algorithm, leeway=0
        )
        if claims["iss"] != self.issuer_url:
            raise unauthenticated("token was not issued by this service")
        if self._settings.registry_audience not in _audiences(claims):
            raise unauthenticated(f"token audience is not {self._settings.registry_audience!r}")
        identity = self._store.get(str(claims["sub"]))
        if identity is None:
            raise unauthenticated("token's identity no longer exists")
        may_pull = REGISTRY_PULL in identity.roles
        return Principal(identity.uid, admin=False, may_pull=may_pull, expires_at=claims["exp"])

    # -- admin

    async def handle_create_identity(self, request: web.Request) -> web.Response:
        identity = parse_identity(await _json_object(request), uid=self._store.new_uid())
        self._store.add(identity)
        log.info("created identity %s (%s)", identity.uid, identity.name)
        return web.json_response(identity.to_json(), status=HTTPStatus.CREATED)

    async def handle_list_identities(self, request: web.Request) -> web.Response:
        return web.json_response({"items": [i.to_json() for i in self._store.all()]})

    async def handle_get_identity(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        identity = self._store.get(uid)
        if identity is None:
            raise not_found(f"identity {uid} not found")
        return web.json_response(identity.to_json())

    async def handle_delete_identity(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if not self._store.remove(uid):
            raise not_found(f"identity {uid} not found")
        log.info("deleted identity %s", uid)
        return web.Response(status=HTTPStatus.NO_CONTENT)

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._stats.to_json())

    async def handle_reset_stats(self, request: web.Request) -> web.Response:
        self._stats.reset()
        return web.json_response(self._stats.to_json())

    async def handle_issued(self, request: web.Request) -> web.Response:
        return web.json_response(self._issued.to_json())

    async def handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults.to_json())

    async def handle_set_fault(self, request: web.Request) -> web.Response:
        await self.apply_fault(parse_fault(await _json_object(request)))
        return web.json_response(self._faults.to_json())

    async def apply_fault(self, fault: Fault | None) -> None:
        if self._fault_expiry is not None:
            self._fault_expiry.cancel()
            self._fault_expiry = None
        self._faults.set(fault)
        log.info("fault set to %s", fault.to_json() if fault else "none")
        if fault is not None and fault.mode == "refuse":
            await self._sts.pause()
        else:
            await self._sts.resume()
        if fault is not None and fault.duration is not None:
            self._fault_expiry = asyncio.create_task(self._expire_fault(fault, fault.duration))

    async def _expire_fault(self, fault: Fault, after: float) -> None:
        await asyncio.sleep(after)
        # Detach first: apply_fault would otherwise cancel the task running it.
        self._fault_expiry = None
        if self._faults.current is fault:
            await self.apply_fault(None)

    async def handle_get_config(self, request: web.Request) -> web.Response:
        return web.json_response({"lifetime": self._lifetime})

    async def handle_set_config(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        lifetime = body.get("lifetime", self._lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1:
            raise bad_request("lifetime must be a positive number of seconds")
        self._lifetime = lifetime
        return web.json_response({"lifetime": self._lifetime})


# --------------------------------------------------------------------------------------------
# Ready file


@dataclass(frozen=True)
class ReadyInfo:
    """What ``--ready-file`` holds once every listener accepts connections."""

    pid: int
    port: int
    registry_port: int
    admin_port: int
    issuer_url: str
    sts_url: str
    registry_realm: str
    admin_url: str
    admin_token: str
    registry_cert: str
    registry_service: str
    registry_issuer: str
    registry_audience: str

    def to_json(self) -> JSONObject:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls(**json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        _write_private(path, json.dumps(self.to_json(), indent=2).encode())


def wait_ready(
    process: subprocess.Popen[bytes], ready_file: Path, *, timeout: float = 15.0
) -> ReadyInfo:
    """Wait for a ``serve`` subprocess to write its ready file (it is written atomically)."""
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"token service exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"token service not ready after {timeout}s")
        time.sleep(0.05)
    return ReadyInfo.load(ready_file)


# --------------------------------------------------------------------------------------------
# Admin client


class TokenServiceError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class TokenServiceAdmin:
    """Synchronous client of the admin listener, for tests, fixtures and ``devstack.chainctl``."""

    def __init__(
        self,
        admin_url: str,
        admin_token: str,
        ca_file: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=os.fspath(ca_file)) if ca_file else True
        )
        self._client = httpx2.Client(
            base_url=admin_url,
            headers={"Authorization": f"Bearer {admin_token}"},
            verify=verify,
            timeout=timeout,
            trust_env=False,
        )

    @classmethod
    def from_ready(cls, ready: ReadyInfo, ca_file: str | os.PathLike[str]) -> TokenServiceAdmin:
        return cls(ready.admin_url, ready.admin_token, ca_file)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: JSONObject | None = None) -> Any:
        response = self._client.request(method, path, json=body)
        if response.status_code >= 400:
            try:
                error = response.json()
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = code_for_status(response.status_code), response.text[:200]
            raise TokenServiceError(response.status_code, code, message)
        return response.json() if response.content else None

    def create_identity(
        self,
        *,
        name: str,
        issuer: str,
        subject: str | None = None,
        subject_pattern: str | None = None,
        audience: str | None = None,
        issuer_keys: str | Mapping[str, Any] | None = None,
        roles: Iterable[str] = (REGISTRY_PULL,),
    ) -> str:
        body = {
            "name": name,
            "issuer": issuer,
            "subject": subject,
            "subject_pattern": subject_pattern,
            "audience": audience,
            "issuer_keys": issuer_keys,
            "roles": list(roles),
        }
        created = self._call("POST", "/admin/identities", body)
        return str(created["uid"])

    def list_identities(self) -> list[JSONObject]:
        items: list[JSONObject] = self._call("GET", "/admin/identities")["items"]
        return items

    def delete_identity(self, uid: str) -> None:
        self._call("DELETE", f"/admin/identities/{uid}")

    def stats(self) -> JSONObject:
        stats: JSONObject = self._call("GET", "/admin/stats")
        return stats

    def reset_stats(self) -> None:
        self._call("POST", "/admin/stats/reset")

    def issued(self, kind: str | None = None) -> list[str]:
        """Every token the service has issued (``kind``: only ``sts`` or ``registry`` ones)."""
        items: list[JSONObject] = self._call("GET", "/admin/issued")["items"]
        return [str(i["token"]) for i in items if kind is None or i["kind"] == kind]

    def set_fault(
        self,
        mode: str,
        *,
        status: int | None = None,
        delay: float | None = None,
        count: int | None = None,
        duration: float | None = None,
    ) -> None:
        body: JSONObject = {"mode": mode, "count": count, "duration": duration}
        if status is not None:
            body["status"] = status
        if delay is not None:
            body["delay"] = delay
        self._call("POST", "/admin/faults", body)

    def clear_faults(self) -> None:
        self.set_fault("none")

    def set_lifetime(self, seconds: int) -> None:
        self._call("POST", "/admin/config", {"lifetime": seconds})


# --------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.tokenservice",
        description="A local STS and registry token endpoint for the development stack.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the token service until SIGTERM or SIGINT")
    addr = HostPort.parse
    serve.add_argument(
        "--listen",
        type=addr,
        default=HostPort("127.0.0.1", 0),
        help="STS listener HOST:PORT (port 0: any free port)",
    )
    serve.add_argument(
        "--registry-listen",
        type=addr,
        default=HostPort("127.0.0.1", 0),
        help="registry token endpoint listener HOST:PORT",
    )
    serve.add_argument(
        "--admin-listen",
        type=addr,
        default=HostPort("127.0.0.1", 0),
        help="admin API listener HOST:PORT",
    )
    serve.add_argument("--tls-cert", type=Path, required=True, help="serving cert (PEM)")
    serve.add_argument("--tls-key", type=Path, required=True, help="serving key (PEM)")
    serve.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="identities and signing keys; created if missing",
    )
    serve.add_argument("--issuer-url", help="own issuer URL (default: the STS listener's URL)")
    serve.add_argument(
        "--registry-key",
        type=Path,
        help="key signing registry tokens (default: generated in the state dir)",
    )
    serve.add_argument(
        "--registry-cert",
        type=Path,
        help="cert of --registry-key, the registry's auth.token.rootcertbundle",
    )
    serve.add_argument(
        "--registry-service",
        default="cgr.dev",
        help="the registry's auth.token.service (default: %(default)s)",
    )
    serve.add_argument(
        "--registry-issuer",
        default="devstack-tokenservice",
        help="the registry's auth.token.issuer (default: %(default)s)",
    )
    serve.add_argument(
        "--registry-audience",
        help="aud an STS token needs at the registry (default: --registry-service)",
    )
    serve.add_argument(
        "--registry-token-lifetime",
        type=int,
        default=300,
        help="seconds a registry token lives at most (default: %(default)s)",
    )
    serve.add_argument(
        "--lifetime",
        type=int,
        default=3600,
        help="seconds an STS token lives (default: %(default)s)",
    )
    serve.add_argument(
        "--sa-audience",
        default="issuer.enforce.dev",
        help="SA token audience for identities without one (default: %(default)s)",
    )
    serve.add_argument("--ca-bundle", type=Path, help="CA to trust for OIDC discovery")
    serve.add_argument("--admin-token", help="admin bearer token (default: random)")
    serve.add_argument(
        "--admin-password",
        help="password of registry user 'admin', who may push (default: disabled)",
    )
    serve.add_argument("--ready-file", type=Path, help="where to write ReadyInfo JSON")
    serve.add_argument("--log-level", default="INFO")
    return parser


def _resolve_registry_key(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    if (args.registry_key is None) != (args.registry_cert is None):
        raise SystemExit("--registry-key and --registry-cert go together")
    return args.registry_key, args.registry_cert


def settings_from_args(args: argparse.Namespace) -> Settings:
    registry_key, registry_cert = _resolve_registry_key(args)
    return Settings(
        listen=args.listen,
        registry_listen=args.registry_listen,
        admin_listen=args.admin_listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        state_dir=args.state_dir,
        issuer_url=args.issuer_url.rstrip("/") if args.issuer_url else None,
        registry_key=registry_key,
        registry_cert=registry_cert,
        registry_service=args.registry_service,
        registry_issuer=args.registry_issuer,
        registry_audience=args.registry_audience or args.registry_service,
        registry_token_lifetime=args.registry_token_lifetime,
        lifetime=args.lifetime,
        sa_audience=args.sa_audience,
        ca_bundle=args.ca_bundle,
        admin_token=args.admin_token or secrets.token_urlsafe(32),
        admin_password=args.admin_password,
        ready_file=args.ready_file,
    )


def _registry_signing(settings: Settings) -> tuple[SigningKey, Path]:
    key_path, cert_path = settings.registry_key, settings.registry_cert
    if key_path is None or cert_path is None:
        key_path = settings.state_dir / "registry-signing-key.pem"
        cert_path = settings.state_dir / "registry-signing-cert.pem"
        if not (key_path.exists() and cert_path.exists()):
            create_registry_keypair(key_path, cert_path)
    return load_registry_key(key_path, cert_path), cert_path.resolve()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    registry_key, registry_cert = _registry_signing(settings)
    discovery_tls = ssl.create_default_context(
        cafile=str(settings.ca_bundle) if settings.ca_bundle else None
    )
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(ssl=discovery_tls)
    ) as session:
        service = TokenService(
            settings,
            store=IdentityStore(settings.state_dir / "identities.json"),
            sts_key=load_or_create_sts_key(settings.state_dir / "sts-signing-key.pem"),
            registry_key=registry_key,
            registry_cert=registry_cert,
            issuer_keys=IssuerKeys(session),
        )
        try:
            await service.start()
            ready = service.ready_info()
            if settings.ready_file is not None:
                ready.write(settings.ready_file)
            log.info(
                "serving STS at %s, registry realm %s, admin at %s",
                ready.sts_url,
                ready.registry_realm,
                ready.admin_url,
            )
            await _until_signalled()
        finally:
            await service.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(settings_from_args(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
