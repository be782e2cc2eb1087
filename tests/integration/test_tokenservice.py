"""The local token service, run as a real process and judged over real HTTPS.

The service-account tokens here come from an RSA key and JWKS made in the test, which is what
kube-apiserver's issuer amounts to for the STS: a key ID, an RS256 signature, and claims.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from devstack import chainctl
from devstack.tokenservice import ReadyInfo, TokenServiceAdmin, TokenServiceError
from tests.integration.tokenservice_support import (
    ADMIN_PASSWORD,
    KUBE_ISSUER,
    LIFETIME,
    REGISTRY_AUDIENCE,
    REGISTRY_SERVICE,
    REPO,
    REPOSITORY,
    SA_AUDIENCE,
    SUBJECT,
    UID_FORMAT,
    Json,
    OidcIssuer,
    SaSigner,
    Tls,
    assert_error,
    client_for,
    connect,
    exchange,
    exchanged_token,
    libtrust_kid,
    registry_token,
    rfc3339,
    running_service,
    sts_public_keys,
    unverified_claims,
)

pytestmark = pytest.mark.usefixtures("fresh_service_state")


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


# -- registry token endpoint ------------------------------------------------------------------


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
        with client_for(first.sts_url, tls) as sts:
            old_keys = sts.get("/.well-known/jwks.json").json()
            old_token = exchanged_token(sts, uid, kube, aud=REGISTRY_AUDIENCE)
        old_cert = Path(first.registry_cert).read_bytes()

    with running_service(tmp_path, tls, state_dir=state, extra=extra) as second:
        with client_for(second.sts_url, tls) as sts:
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
