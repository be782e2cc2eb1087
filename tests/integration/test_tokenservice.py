"""The local token service, run as a real process and judged over real HTTPS.

The service-account tokens here come from an RSA key and JWKS made in the test, which is what
kube-apiserver's issuer amounts to for the STS: a key ID, an RS256 signature, and claims.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devstack import chainctl, pki
from devstack.tokenservice import ReadyInfo, TokenServiceAdmin, TokenServiceError, wait_ready

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


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.create_ca(directory)
    serving = pki.issue_cert(
        ca, directory, stem="tokenservice", common_name="tokenservice", hosts=("127.0.0.1",)
    )
    return Tls(ca.cert_file, serving)


@pytest.fixture(scope="module")
def kube() -> SaSigner:
    return SaSigner(KUBE_ISSUER, "kube-key-1")


@pytest.fixture(scope="module")
def forger() -> SaSigner:
    """Claims to be the cluster, with the cluster's kid, but holds another key."""
    return SaSigner(KUBE_ISSUER, "kube-key-1")


@pytest.fixture(scope="module")
def oidc_issuer(tls: Tls) -> Iterator[OidcIssuer]:
    issuer = OidcIssuer(tls.serving)
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[ReadyInfo]:
    workdir = tmp_path_factory.mktemp("tokenservice")
    extra = [
        f"--registry-service={REGISTRY_SERVICE}",
        f"--registry-audience={REGISTRY_AUDIENCE}",
        f"--admin-password={ADMIN_PASSWORD}",
    ]
    with running_service(workdir, tls, state_dir=workdir / "state", extra=extra) as ready:
        yield ready


def _client(base_url: str, tls: Tls) -> httpx2.Client:
    return httpx2.Client(base_url=base_url, verify=tls.context(), trust_env=False, timeout=10)


@pytest.fixture(scope="module")
def admin(service: ReadyInfo, tls: Tls) -> Iterator[TokenServiceAdmin]:
    with TokenServiceAdmin.from_ready(service, tls.ca_file) as client:
        yield client


@pytest.fixture
def sts(service: ReadyInfo, tls: Tls) -> Iterator[httpx2.Client]:
    with _client(service.sts_url, tls) as client:
        yield client


@pytest.fixture
def registry(service: ReadyInfo, tls: Tls) -> Iterator[httpx2.Client]:
    realm = httpx2.URL(service.registry_realm)
    with _client(f"{realm.scheme}://{realm.host}:{realm.port}", tls) as client:
        yield client


@pytest.fixture(autouse=True)
def _fresh_service_state(admin: TokenServiceAdmin) -> Iterator[None]:
    yield
    admin.clear_faults()
    admin.reset_stats()
    admin.set_lifetime(LIFETIME)


@pytest.fixture
def identity(admin: TokenServiceAdmin, kube: SaSigner) -> Iterator[str]:
    uid = admin.create_identity(
        name="kind-pull-secrets", issuer=KUBE_ISSUER, subject=SUBJECT, issuer_keys=kube.jwks()
    )
    yield uid
    with contextlib.suppress(TokenServiceError):
        admin.delete_identity(uid)


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


# -- exchange ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["query", "json"])
def test_exchange_issues_an_es256_token_for_the_identity(
    form: str, sts: httpx2.Client, service: ReadyInfo, kube: SaSigner, identity: str
) -> None:
    response = exchange(sts, identity, kube.token(), form=form)

    assert response.status_code == 200, response.text
    body = response.json()
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256"
    key = sts_public_keys(sts)[header["kid"]]
    claims = jwt.decode(
        body["token"], key.key, algorithms=["ES256"], audience="cgr.dev", issuer=service.issuer_url
    )
    assert claims["sub"] == identity
    assert claims["aud"] == "cgr.dev"
    assert claims["exp"] - claims["iat"] == LIFETIME
    assert abs(claims["iat"] - time.time()) < 10
    assert claims["nbf"] == claims["iat"]
    assert claims["jti"]
    assert body["expiry"] == rfc3339(claims["exp"])


def test_discovery_document_names_the_issuer_and_its_keys(
    sts: httpx2.Client, service: ReadyInfo
) -> None:
    config = sts.get("/.well-known/openid-configuration").json()

    assert config["issuer"] == service.issuer_url
    assert config["jwks_uri"] == f"{service.issuer_url}/.well-known/jwks.json"
    assert [k.algorithm_name for k in sts_public_keys(sts)] == ["ES256"]


def test_lifetime_changes_at_runtime(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_lifetime(90)

    claims = unverified_claims(exchange(sts, identity, kube.token()).json()["token"])

    assert claims["exp"] - claims["iat"] == 90


@pytest.mark.parametrize(
    ("case", "status", "code", "cause"),
    [
        ("expired", 401, "unauthenticated", "expired"),
        ("forged", 401, "unauthenticated", "signature"),
        ("unknown_kid", 401, "unauthenticated", "key id"),
        ("other_issuer", 401, "unauthenticated", "issuer"),
        ("garbage", 401, "unauthenticated", "not a JWT"),
        ("other_subject", 403, "permission_denied", "subject"),
        ("other_audience", 403, "permission_denied", "audience"),
    ],
)
def test_exchange_rejects_a_bad_service_account_token(
    case: str,
    status: int,
    code: str,
    cause: str,
    sts: httpx2.Client,
    kube: SaSigner,
    forger: SaSigner,
    identity: str,
) -> None:
    token = {
        "expired": kube.token(exp_in=-120),
        "forged": forger.token(),
        "unknown_kid": SaSigner(KUBE_ISSUER, "kube-key-2", forger.key).token(),
        "other_issuer": kube.token(iss="https://container.googleapis.com/v1/x"),
        "garbage": "definitely-not-a-jwt",
        "other_subject": kube.token(sub="system:serviceaccount:default:default"),
        "other_audience": kube.token(aud=["cgr.dev"]),
    }[case]

    response = exchange(sts, identity, token)

    assert_error(response, status, code, cause)
    assert token not in response.text


def test_exchange_without_bearer_is_unauthenticated(sts: httpx2.Client, identity: str) -> None:
    assert_error(exchange(sts, identity, None), 401, "unauthenticated", "bearer")


def test_exchange_for_unknown_identity_is_not_found(sts: httpx2.Client, kube: SaSigner) -> None:
    response = exchange(sts, f"{'0' * 40}/{'1' * 16}", kube.token())

    assert_error(response, 404, "not_found", "identity")


@pytest.mark.parametrize("missing", ["aud", "identity"])
def test_exchange_without_a_parameter_is_a_bad_request(
    missing: str, sts: httpx2.Client, kube: SaSigner, identity: str
) -> None:
    params = {"aud": "cgr.dev", "identity": identity}
    del params[missing]

    response = sts.get(
        "/sts/exchange", params=params, headers={"Authorization": f"Bearer {kube.token()}"}
    )

    assert_error(response, 400, "invalid_argument", missing)


def test_identity_without_pull_role_is_denied(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner
) -> None:
    uid = admin.create_identity(
        name="no-roles", issuer=KUBE_ISSUER, subject=SUBJECT, issuer_keys=kube.jwks(), roles=()
    )

    assert_error(exchange(sts, uid, kube.token()), 403, "permission_denied", "registry.pull")


@pytest.mark.parametrize(
    ("pattern", "subject", "status"),
    [
        ("system:serviceaccount:pull-secret-updater:.*", SUBJECT, 200),
        ("system:serviceaccount:pull-secret-updater:.*", "system:serviceaccount:x:controller", 403),
        ("controller", SUBJECT, 403),  # the pattern must match the whole subject
        (re.escape(SUBJECT), SUBJECT, 200),
    ],
)
def test_subject_pattern_must_match_the_whole_subject(
    pattern: str,
    subject: str,
    status: int,
    sts: httpx2.Client,
    admin: TokenServiceAdmin,
    kube: SaSigner,
) -> None:
    uid = admin.create_identity(
        name="gke-pull-secrets",
        issuer=KUBE_ISSUER,
        subject_pattern=pattern,
        issuer_keys=kube.jwks(),
    )

    assert exchange(sts, uid, kube.token(sub=subject)).status_code == status


def test_identity_audience_replaces_the_default(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner
) -> None:
    uid = admin.create_identity(
        name="own-aud",
        issuer=KUBE_ISSUER,
        subject=SUBJECT,
        audience="sts.local",
        issuer_keys=kube.jwks(),
    )

    assert exchange(sts, uid, kube.token(aud=["sts.local"])).status_code == 200
    assert exchange(sts, uid, kube.token(aud=[SA_AUDIENCE])).status_code == 403


def test_deleted_identity_is_not_found(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.delete_identity(identity)

    assert_error(exchange(sts, identity, kube.token()), 404, "not_found", identity)
    assert identity not in [i["uid"] for i in admin.list_identities()]


def test_identity_without_keys_uses_oidc_discovery_and_follows_rotation(
    sts: httpx2.Client, admin: TokenServiceAdmin, oidc_issuer: OidcIssuer
) -> None:
    uid = admin.create_identity(name="gke", issuer=oidc_issuer.url, subject=SUBJECT)

    assert exchange(sts, uid, oidc_issuer.signer.token()).status_code == 200
    oidc_issuer.rotate()
    assert exchange(sts, uid, oidc_issuer.signer.token()).status_code == 200


def test_unreachable_issuer_is_unavailable(sts: httpx2.Client, admin: TokenServiceAdmin) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        issuer = f"https://127.0.0.1:{unused.getsockname()[1]}"
        uid = admin.create_identity(name="gone", issuer=issuer, subject=SUBJECT)
        token = SaSigner(issuer, "k").token()

        assert_error(exchange(sts, uid, token), 503, "unavailable", issuer)


# -- admin API --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "cause"),
    [
        ({"subject": SUBJECT, "subject_pattern": ".*"}, "exactly one"),
        ({}, "exactly one"),
        ({"subject_pattern": "("}, "regular expression"),
        ({"subject": SUBJECT, "issuer_keys": "{not json"}, "issuer_keys"),
        ({"subject": SUBJECT, "issuer_keys": {"keys": []}}, "issuer_keys"),
        ({"subject": SUBJECT, "issuer": "kubernetes"}, "OIDC discovery"),
    ],
)
def test_invalid_identity_is_refused_with_the_cause(
    fields: Json, cause: str, admin: TokenServiceAdmin
) -> None:
    arguments: Json = {"name": "bad", "issuer": KUBE_ISSUER, **fields}

    with pytest.raises(TokenServiceError) as raised:
        admin.create_identity(**arguments)

    assert (raised.value.status, raised.value.code) == (400, "invalid_argument")
    assert cause in raised.value.message


def test_created_identity_has_a_chainguard_like_uid(
    admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    assert UID_FORMAT.fullmatch(identity)
    listed = {i["uid"]: i for i in admin.list_identities()}
    assert listed[identity]["subject"] == SUBJECT
    assert listed[identity]["issuer_keys"] == kube.jwks()


def test_admin_api_requires_the_admin_token(service: ReadyInfo, tls: Tls) -> None:
    intruder = TokenServiceAdmin(service.admin_url, "wrong", tls.ca_file)
    with intruder, pytest.raises(TokenServiceError) as raised:
        intruder.stats()

    assert raised.value.status == 401


def test_stats_count_exchanges_per_identity_until_reset(
    sts: httpx2.Client,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    kube: SaSigner,
    identity: str,
) -> None:
    admin.reset_stats()
    token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)
    exchange(sts, identity, kube.token())
    exchange(sts, identity, kube.token(sub="someone-else"))
    admin.set_fault("status", count=1)
    exchange(sts, identity, kube.token())
    registry.get("/registry/token", auth=("_token", token))

    stats = admin.stats()

    assert stats["exchanges"] == {identity: {"ok": 2, "error": 2}}
    assert stats["registry_tokens"] == 1
    admin.reset_stats()
    assert admin.stats()["exchanges"] == {}


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(503, "unavailable"), (500, "internal")])
def test_status_fault_answers_that_status_for_count_exchanges(
    status: int,
    code: str,
    sts: httpx2.Client,
    admin: TokenServiceAdmin,
    kube: SaSigner,
    identity: str,
) -> None:
    admin.set_fault("status", status=status, count=2)

    for _ in range(2):
        assert_error(exchange(sts, identity, kube.token()), status, code, "fault")
    assert exchange(sts, identity, kube.token()).status_code == 200


def test_slow_fault_delays_the_answer(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_fault("slow", delay=0.5, count=1)

    started = time.monotonic()
    response = exchange(sts, identity, kube.token())

    assert time.monotonic() - started >= 0.5
    assert response.status_code == 200


def test_malformed_fault_answers_a_body_that_is_not_json(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_fault("malformed")

    response = exchange(sts, identity, kube.token())

    assert response.status_code == 200
    with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error
        response.json()


def test_expired_fault_issues_a_correctly_signed_expired_token(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_fault("expired")

    token = exchange(sts, identity, kube.token()).json()["token"]

    key = sts_public_keys(sts)[jwt.get_unverified_header(token)["kid"]]
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, key.key, algorithms=["ES256"], audience="cgr.dev", leeway=60)


def test_no_exp_fault_issues_a_signed_token_without_exp(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_fault("no_exp")

    body = exchange(sts, identity, kube.token()).json()

    key = sts_public_keys(sts)[jwt.get_unverified_header(body["token"])["kid"]]
    claims = jwt.decode(body["token"], key.key, algorithms=["ES256"], audience="cgr.dev")
    assert "exp" not in claims
    assert "expiry" not in body


def test_garbage_token_fault_answers_a_token_that_is_not_a_jwt(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    admin.set_fault("garbage_token")

    response = exchange(sts, identity, kube.token())

    assert response.status_code == 200
    with pytest.raises(jwt.DecodeError):
        jwt.get_unverified_header(response.json()["token"])


def test_refuse_fault_refuses_connections_until_cleared(
    sts: httpx2.Client,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    service: ReadyInfo,
    kube: SaSigner,
    identity: str,
) -> None:
    admin.set_fault("refuse")

    with pytest.raises(ConnectionRefusedError):
        connect(service.port)
    assert registry.get("/healthz").status_code == 200
    admin.clear_faults()
    assert exchange(sts, identity, kube.token()).status_code == 200


def test_refuse_fault_cuts_open_connections(
    sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner, identity: str
) -> None:
    assert exchange(sts, identity, kube.token()).status_code == 200

    admin.set_fault("refuse")

    with pytest.raises(httpx2.TransportError):
        exchange(sts, identity, kube.token())


def test_fault_with_duration_ends_by_itself(admin: TokenServiceAdmin, service: ReadyInfo) -> None:
    admin.set_fault("refuse", duration=0.3)
    with pytest.raises(ConnectionRefusedError):
        connect(service.port)

    time.sleep(0.6)

    connect(service.port)


@pytest.mark.parametrize(
    ("mode", "options", "cause"),
    [
        ("flaky", {}, "mode"),
        ("refuse", {"count": 1}, "count"),
        ("status", {"status": 200}, "status"),
    ],
)
def test_invalid_fault_is_refused(
    mode: str, options: dict[str, Any], cause: str, admin: TokenServiceAdmin
) -> None:
    with pytest.raises(TokenServiceError) as raised:
        admin.set_fault(mode, **options)

    assert raised.value.status == 400
    assert cause in raised.value.message


# -- registry token endpoint ------------------------------------------------------------------


def registry_token(
    client: httpx2.Client, auth: tuple[str, str] | None, *, actions: str = "pull,push"
) -> httpx2.Response:
    params = {
        "service": REGISTRY_SERVICE,
        "scope": f"repository:{REPOSITORY}:{actions}",
        "account": "_token",
    }
    return client.get("/registry/token", params=params, auth=auth)


def test_registry_token_for_an_sts_token_grants_pull_only(
    sts: httpx2.Client, registry: httpx2.Client, service: ReadyInfo, kube: SaSigner, identity: str
) -> None:
    sts_token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)

    response = registry_token(registry, ("_token", sts_token))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"]
    assert 0 < body["expires_in"] <= 300
    header = jwt.get_unverified_header(body["token"])
    assert header["kid"] == libtrust_kid(Path(service.registry_cert))
    assert len(header["kid"].split(":")) == 12
    cert = x509.load_pem_x509_certificate(Path(service.registry_cert).read_bytes())
    claims = jwt.decode(
        body["token"],
        cert.public_key(),  # type: ignore[arg-type]
        algorithms=[header["alg"]],
        audience=REGISTRY_SERVICE,
        issuer=service.registry_issuer,
    )
    assert claims["aud"] == REGISTRY_SERVICE
    assert claims["sub"] == identity
    assert claims["access"] == [{"type": "repository", "name": REPOSITORY, "actions": ["pull"]}]
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert dt.datetime.fromisoformat(body["issued_at"]).timestamp() == claims["iat"]


def test_registry_token_never_outlives_the_sts_token(
    sts: httpx2.Client,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    kube: SaSigner,
    identity: str,
) -> None:
    admin.set_lifetime(60)
    sts_token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)

    body = registry_token(registry, ("_token", sts_token)).json()

    assert body["expires_in"] <= 60


def test_registry_token_is_also_served_on_the_sts_listener(
    sts: httpx2.Client, kube: SaSigner, identity: str
) -> None:
    sts_token = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)

    assert registry_token(sts, ("_token", sts_token)).status_code == 200


@pytest.mark.parametrize(
    "case", ["expired", "forged", "other_audience", "wrong_username", "garbage", "anonymous"]
)
def test_registry_token_endpoint_challenges_bad_credentials(
    case: str,
    sts: httpx2.Client,
    registry: httpx2.Client,
    admin: TokenServiceAdmin,
    kube: SaSigner,
    identity: str,
) -> None:
    auth: tuple[str, str] | None
    if case == "expired":
        admin.set_fault("expired", count=1)
        auth = ("_token", exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE))
    elif case == "forged":
        genuine = exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE)
        kid = jwt.get_unverified_header(genuine)["kid"]
        other_key = ec.generate_private_key(ec.SECP256R1())
        forged = jwt.encode(unverified_claims(genuine), other_key, "ES256", headers={"kid": kid})
        auth = ("_token", forged)
    elif case == "other_audience":
        auth = ("_token", exchanged_token(sts, identity, kube, aud="other.example"))
    elif case == "wrong_username":
        auth = ("pull", exchanged_token(sts, identity, kube, aud=REGISTRY_AUDIENCE))
    elif case == "garbage":
        auth = ("_token", "not-a-token")
    else:
        auth = None

    response = registry_token(registry, auth)

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert response.json()["code"] == "unauthenticated"


def test_registry_admin_may_push(registry: httpx2.Client) -> None:
    response = registry_token(registry, ("admin", ADMIN_PASSWORD))

    claims = unverified_claims(response.json()["token"])
    assert claims["sub"] == "admin"
    assert claims["access"][0]["actions"] == ["pull", "push"]
    assert registry_token(registry, ("admin", "guess")).status_code == 401


# -- persistence ------------------------------------------------------------------------------


def test_identities_and_keys_survive_a_restart(tmp_path: Path, tls: Tls, kube: SaSigner) -> None:
    state = tmp_path / "state"
    extra = [
        "--issuer-url=https://sts.test",
        f"--registry-service={REGISTRY_SERVICE}",
        f"--registry-audience={REGISTRY_AUDIENCE}",
    ]
    with running_service(tmp_path, tls, state_dir=state, extra=extra) as first:
        with TokenServiceAdmin.from_ready(first, tls.ca_file) as admin:
            uid = admin.create_identity(
                name="kind", issuer=KUBE_ISSUER, subject=SUBJECT, issuer_keys=kube.jwks()
            )
        with _client(first.sts_url, tls) as sts:
            old_keys = sts.get("/.well-known/jwks.json").json()
            old_token = exchanged_token(sts, uid, kube, aud=REGISTRY_AUDIENCE)
        old_cert = Path(first.registry_cert).read_bytes()

    with running_service(tmp_path, tls, state_dir=state, extra=extra) as second:
        with _client(second.sts_url, tls) as sts:
            assert sts.get("/.well-known/jwks.json").json() == old_keys
            assert exchange(sts, uid, kube.token()).status_code == 200
            assert registry_token(sts, ("_token", old_token)).status_code == 200
        assert Path(second.registry_cert).read_bytes() == old_cert


# -- chainctl ---------------------------------------------------------------------------------


def chainctl_env(service: ReadyInfo, tls: Tls) -> dict[str, str]:
    return {
        chainctl.ENV_ADMIN_URL: service.admin_url,
        chainctl.ENV_ADMIN_TOKEN: service.admin_token,
        chainctl.ENV_CA_FILE: str(tls.ca_file),
    }


@pytest.fixture
def run_chainctl(
    service: ReadyInfo,
    tls: Tls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, str, str]]:
    """chainctl in this process (starting one costs a second); returns (status, out, err)."""
    for name, value in chainctl_env(service, tls).items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            status = chainctl.main(args)
        except SystemExit as e:  # usage errors, from argparse
            status = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_chainctl_creates_an_identity_with_the_documented_command(
    service: ReadyInfo, tls: Tls, sts: httpx2.Client, admin: TokenServiceAdmin, kube: SaSigner
) -> None:
    created = subprocess.run(
        [
            sys.executable, "-m", "devstack.chainctl",
            "iam", "identities", "create", "kind-pull-secrets",
            f"--issuer-keys={json.dumps(kube.jwks())}",
            f"--identity-issuer={KUBE_ISSUER}",
            f"--subject={SUBJECT}",
            "--role=registry.pull",
        ],
        cwd=REPO,
        env={**os.environ, **chainctl_env(service, tls)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip

    assert created.returncode == 0, created.stderr
    uid = created.stdout.removesuffix("\n")
    assert UID_FORMAT.fullmatch(uid), created.stdout
    assert exchange(sts, uid, kube.token()).status_code == 200
    admin.delete_identity(uid)


def test_chainctl_lists_and_deletes_identities(
    run_chainctl: Callable[..., tuple[int, str, str]], identity: str
) -> None:
    assert identity in run_chainctl("iam", "identities", "list")[1]
    assert run_chainctl("iam", "identities", "delete", identity) == (0, "", "")
    assert identity not in run_chainctl("iam", "identities", "list")[1]


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["--subject-pattern=("], "regular expression"),
        (["--subject=a", "--subject-pattern=b"], "not allowed with"),
        ([], "required"),
    ],
)
def test_chainctl_reports_an_error_on_one_line(
    args: list[str], cause: str, run_chainctl: Callable[..., tuple[int, str, str]]
) -> None:
    create = ["iam", "identities", "create", "bad", f"--identity-issuer={KUBE_ISSUER}"]
    status, out, err = run_chainctl(*create, *args, "--role=registry.pull")

    assert status == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert cause in err
