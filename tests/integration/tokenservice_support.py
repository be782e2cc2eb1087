"""The local token service as the integration tests drive it: a real process on real HTTPS.

The service-account tokens here come from an RSA key and JWKS made in the test, which is what
kube-apiserver's issuer amounts to for the STS: a key ID, an RS256 signature, and claims.
The fixtures built from these live in ``conftest.py``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import pki
from devstack.tokenservice import ReadyInfo, wait_ready

REPO = Path(__file__).resolve().parents[2]
KUBE_ISSUER = "https://kubernetes.default.svc.cluster.local"
SUBJECT = "system:serviceaccount:pull-secret-updater:controller"
SA_AUDIENCE = "issuer.enforce.dev"
REGISTRY_SERVICE = "registry.test:5000"
REGISTRY_AUDIENCE = "cgr.dev"
ADMIN_PASSWORD = "let-me-push"
LIFETIME = 3600
UID_FORMAT = re.compile(r"[0-9a-f]{40}/[0-9a-f]{16}")
REPOSITORY = "chainguard/busybox"

Json = dict[str, Any]


# -- service-account token issuers ------------------------------------------------------------


@dataclass(frozen=True)
class SaSigner:
    """Signs service-account tokens the way kube-apiserver does: RS256 with a kid."""

    issuer: str
    kid: str
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwk(self) -> Json:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def jwks(self) -> Json:
        return {"keys": [self.jwk()]}

    def token(
        self,
        *,
        sub: str = SUBJECT,
        aud: Sequence[str] = (SA_AUDIENCE,),
        iss: str | None = None,
        exp_in: int = 600,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": iss or self.issuer,
            "sub": sub,
            "aud": list(aud),
            "iat": now,
            "nbf": now,
            "exp": now + exp_in,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


class OidcIssuer:
    """An issuer found by OIDC discovery, as a GKE or EKS cluster's is; its keys can rotate."""

    def __init__(self, tls: pki.CertPair) -> None:
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                documents = {
                    "/.well-known/openid-configuration": {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/keys",
                    },
                    "/keys": issuer.signer.jwks(),
                }
                body = json.dumps(documents.get(self.path)).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self.signer = SaSigner(self.url, "discovered-1")
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def rotate(self) -> None:
        self.signer = SaSigner(self.url, f"discovered-{uuid.uuid4().hex[:8]}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the service process ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    serving: pki.CertPair

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@contextlib.contextmanager
def running_service(
    workdir: Path, tls: Tls, *, state_dir: Path, extra: Sequence[str] = ()
) -> Iterator[ReadyInfo]:
    workdir.mkdir(parents=True, exist_ok=True)
    ready_file = workdir / f"ready-{uuid.uuid4().hex[:8]}.json"
    log_path = ready_file.with_suffix(".log")
    argv = [
        sys.executable, "-m", "devstack.tokenservice", "serve",
        f"--tls-cert={tls.serving.cert}",
        f"--tls-key={tls.serving.key}",
        f"--state-dir={state_dir}",
        f"--ready-file={ready_file}",
        f"--ca-bundle={tls.ca_file}",
        f"--lifetime={LIFETIME}",
        *extra,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            ready = wait_ready(process, ready_file, timeout=15)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}; log:\n{log_path.read_text()[-3000:]}") from e
        yield ready
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client_for(base_url: str, tls: Tls) -> httpx2.Client:
    return httpx2.Client(base_url=base_url, verify=tls.context(), trust_env=False, timeout=10)


# -- helpers ----------------------------------------------------------------------------------


def exchange(
    sts: httpx2.Client, uid: str, token: str | None, *, aud: str = "cgr.dev", form: str = "query"
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if form == "json":
        body = {"aud": [aud], "identity": uid}
        return sts.post("/sts/exchange", json=body, headers=headers)
    return sts.get("/sts/exchange", params={"aud": aud, "identity": uid}, headers=headers)


def exchanged_token(sts: httpx2.Client, uid: str, kube: SaSigner, *, aud: str) -> str:
    response = exchange(sts, uid, kube.token(), aud=aud)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def assert_error(response: httpx2.Response, status: int, code: str, cause: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert cause in body["message"]


def unverified_claims(token: str) -> Json:
    claims: Json = jwt.decode(token, options={"verify_signature": False})
    return claims


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def libtrust_kid(cert_file: Path) -> str:
    """Written out again here so the test does not trust the service's own derivation."""
    public_key = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_key()
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert "=" not in digest
    return ":".join(re.findall("....", digest))


def sts_public_keys(sts: httpx2.Client) -> jwt.PyJWKSet:
    return jwt.PyJWKSet.from_dict(sts.get("/.well-known/jwks.json").json())


def connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def registry_token(
    client: httpx2.Client, auth: tuple[str, str] | None, *, actions: str = "pull,push"
) -> httpx2.Response:
    params = {
        "service": REGISTRY_SERVICE,
        "scope": f"repository:{REPOSITORY}:{actions}",
        "account": "_token",
    }
    return client.get("/registry/token", params=params, auth=auth)


#: What every STS token must carry for a client to judge it.
STS_TOKEN_CLAIMS = ["iss", "sub", "aud", "iat", "exp", "jti"]


@dataclass(frozen=True)
class DiscoveredVerifier:
    """Verifies STS tokens the way a client of the STS would: discovery document, then the
    ``jwks_uri`` it names, then PyJWT; nothing taken from the service's own code."""

    issuer: str
    algorithms: list[str]
    keys: jwt.PyJWKClient

    @classmethod
    def discover(cls, issuer_url: str, tls: Tls, *, cache: bool = False) -> DiscoveredVerifier:
        with client_for(issuer_url, tls) as client:
            response = client.get("/.well-known/openid-configuration")
        assert response.status_code == 200, response.text
        config = response.json()
        keys = jwt.PyJWKClient(
            config["jwks_uri"], cache_keys=cache, cache_jwk_set=cache, ssl_context=tls.context()
        )
        return cls(config["issuer"], config["id_token_signing_alg_values_supported"], keys)

    def verify(self, token: str, *, audience: str | Sequence[str]) -> Json:
        key = self.keys.get_signing_key_from_jwt(token)
        claims: Json = jwt.decode(
            token,
            key,
            algorithms=self.algorithms,
            audience=audience,
            issuer=self.issuer,
            options={"require": STS_TOKEN_CLAIMS},
        )
        return claims
