"""The local stack itself, against its real processes: what every other test relies on."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import httpx2
import jwt
import pytest

from devstack import pki
from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.controller import install_manifests
from devstack.registry import skopeo_inspect
from devstack.stack import SA_AUDIENCE, LocalStack
from tests.helpers import pull_refusal

pytestmark = pytest.mark.stack


def _apply(stack: LocalStack, manifest: dict[str, object]) -> None:
    stack.control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _bearer_client(stack: LocalStack, token: str) -> httpx2.Client:
    return httpx2.Client(
        base_url=stack.control_plane.server,
        verify=pki.trust(stack.ca_file),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )


def test_apiserver_is_ready_and_serves_oidc_discovery(stack: LocalStack) -> None:
    with stack.control_plane.admin.client() as client:
        assert client.get("/readyz").text == "ok"
        discovery = client.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == SERVICE_ACCOUNT_ISSUER
    jwks = json.loads(stack.control_plane.kubectl("get", "--raw", "/openid/v1/jwks"))
    assert [key["kty"] for key in jwks["keys"]] == ["RSA"]


def test_validating_admission_policy_api_is_served(stack: LocalStack) -> None:
    resources = stack.control_plane.kubectl(
        "api-resources", "--api-group=admissionregistration.k8s.io"
    )
    assert "validatingadmissionpolicies" in resources


def test_token_request_token_verifies_against_the_cluster_jwks(stack: LocalStack) -> None:
    stack.control_plane.kubectl("create", "namespace", "jwks-check")
    stack.control_plane.kubectl("create", "serviceaccount", "sa", "-n", "jwks-check")
    token = stack.control_plane.service_account_token("jwks-check", "sa", audience=SA_AUDIENCE)
    jwks = jwt.PyJWKSet.from_dict(stack.control_plane.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(
        token,
        key=next(k for k in jwks.keys if k.key_id == kid),
        algorithms=["RS256"],
        audience=SA_AUDIENCE,
        issuer=SERVICE_ACCOUNT_ISSUER,
    )
    assert claims["sub"] == "system:serviceaccount:jwks-check:sa"


@pytest.fixture(scope="module")
def confined_sa(stack: LocalStack) -> str:
    """A ServiceAccount allowed get/list/watch only on Secrets named pull-secret, everywhere."""
    cp = stack.control_plane
    cp.kubectl("create", "namespace", "confined")
    cp.kubectl("create", "serviceaccount", "reader", "-n", "confined")
    _apply(
        stack,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "pull-secret-reader"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["pull-secret"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
    )
    _apply(
        stack,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "pull-secret-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "pull-secret-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "confined"}],
        },
    )
    for ns in ("team-a", "team-b"):
        cp.kubectl("create", "namespace", ns)
        for name in ("pull-secret", "other-secret"):
            cp.kubectl("create", "secret", "generic", name, "-n", ns, "--from-literal=k=v")
    return cp.service_account_token("confined", "reader")


def test_resource_names_confine_a_service_account_to_its_secrets(
    stack: LocalStack, confined_sa: str
) -> None:
    with _bearer_client(stack, confined_sa) as client:
        for ns in ("team-a", "team-b"):
            assert client.get(f"/api/v1/namespaces/{ns}/secrets/pull-secret").status_code == 200
            assert client.get(f"/api/v1/namespaces/{ns}/secrets/other-secret").status_code == 403
        listed = client.get(
            "/api/v1/secrets", params={"fieldSelector": "metadata.name=pull-secret"}
        )
        assert listed.status_code == 200
        assert {i["metadata"]["namespace"] for i in listed.json()["items"]} >= {"team-a", "team-b"}
        assert client.get("/api/v1/secrets").status_code == 403
        assert (
            client.get(
                "/api/v1/secrets", params={"fieldSelector": "metadata.name=other-secret"}
            ).status_code
            == 403
        )
        assert (
            client.put("/api/v1/namespaces/team-a/secrets/pull-secret", json={}).status_code == 403
        )


def test_resource_names_allow_a_cluster_wide_watch_by_name(
    stack: LocalStack, confined_sa: str
) -> None:
    with _bearer_client(stack, confined_sa) as client:
        rv = client.get(
            "/api/v1/secrets", params={"fieldSelector": "metadata.name=pull-secret"}
        ).json()["metadata"]["resourceVersion"]
        stack.control_plane.kubectl(
            "annotate", "secret", "pull-secret", "-n", "team-b", "touched=yes"
        )
        params = {
            "fieldSelector": "metadata.name=pull-secret",
            "watch": "true",
            "resourceVersion": rv,
            "timeoutSeconds": "5",
        }
        with client.stream("GET", "/api/v1/secrets", params=params) as response:
            assert response.status_code == 200
            first = json.loads(next(response.iter_lines()))
        assert first["type"] == "MODIFIED"
        assert first["object"]["metadata"]["namespace"] == "team-b"
        denied = client.get("/api/v1/secrets", params={**params, "fieldSelector": ""})
        assert denied.status_code == 403


# -- the token service, with the cluster's own tokens ----------------------------------------


@pytest.fixture(scope="module")
def identity(stack: LocalStack) -> str:
    install_manifests(stack)
    return stack.create_kind_identity()


def _exchange(stack: LocalStack, sa_token: str, uid: str) -> httpx2.Response:
    with httpx2.Client(verify=pki.trust(stack.ca_file), timeout=10.0) as client:
        return client.post(
            f"{stack.token_service.url}/sts/exchange",
            params={"aud": stack.registry.host, "identity": uid},
            headers={"Authorization": f"Bearer {sa_token}"},
        )


def test_exchange_with_the_controllers_token_returns_a_registry_token(
    stack: LocalStack, identity: str
) -> None:
    sa_token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=SA_AUDIENCE
    )
    response = _exchange(stack, sa_token, identity)
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert claims["aud"] == stack.registry.host
    assert claims["iss"] == stack.token_service.url
    assert claims["exp"] - claims["iat"] == stack.token_lifetime


@pytest.mark.parametrize(
    ("namespace", "sa", "audience", "seconds", "status"),
    [
        pytest.param("confined", "reader", SA_AUDIENCE, 3600, 403, id="wrong-subject"),
        pytest.param(
            "pull-secret-updater", "controller", "other-audience", 3600, 403, id="wrong-audience"
        ),
    ],
)
def test_exchange_refuses_tokens_the_identity_does_not_trust(
    stack: LocalStack,
    identity: str,
    confined_sa: str,
    namespace: str,
    sa: str,
    audience: str,
    seconds: int,
    status: int,
) -> None:
    sa_token = stack.control_plane.service_account_token(
        namespace, sa, audience=audience, seconds=seconds
    )
    response = _exchange(stack, sa_token, identity)
    assert response.status_code == status
    assert set(response.json()) >= {"code", "message"}


def test_exchange_refuses_a_forged_token(stack: LocalStack, identity: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    real = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=SA_AUDIENCE
    )
    claims = jwt.decode(real, options={"verify_signature": False})
    header = jwt.get_unverified_header(real)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": header["kid"]})
    assert _exchange(stack, forged, identity).status_code == 401


def test_exchange_refuses_an_expired_token(stack: LocalStack, identity: str) -> None:
    # TokenRequest's minimum lifetime is 10 minutes, so age a real token's claims instead
    # and check the service rejects it for expiry, not for the signature.
    real = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=SA_AUDIENCE
    )
    header, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] = int(time.time()) - 60
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = _exchange(stack, f"{header}.{tampered_payload}.{signature}", identity)
    assert response.status_code == 401


def test_exchange_for_an_unknown_identity_is_not_found(stack: LocalStack, identity: str) -> None:
    sa_token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=SA_AUDIENCE
    )
    unknown = f"{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}/{uuid.uuid4().hex[:16]}"
    assert _exchange(stack, sa_token, unknown).status_code == 404


# -- the registry, pulled from the way kubelet pulls with a pull Secret ------------------------


def _authfile(tmp_path: Path, registry: str, token: str) -> Path:
    auth = base64.b64encode(f"_token:{token}".encode()).decode()
    path = tmp_path / "auth.json"
    path.write_text(
        json.dumps({"auths": {registry: {"username": "_token", "password": token, "auth": auth}}})
    )
    return path


def _pull(stack: LocalStack, authfile: Path) -> int:
    return skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=stack.registry.image,
        authfile=authfile,
        ca_file=stack.ca_file,
    ).returncode


def test_registry_pull_works_with_a_fresh_token_and_fails_without_one(
    stack: LocalStack, identity: str, tmp_path: Path
) -> None:
    sa_token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=SA_AUDIENCE
    )
    token = _exchange(stack, sa_token, identity).json()["token"]
    assert _pull(stack, _authfile(tmp_path, stack.registry.host, token)) == 0
    assert (
        pull_refusal(stack, _authfile(tmp_path, stack.registry.host, "not-a-token"))
        == "bearer token is not a JWT"
    )


def test_registry_pull_fails_with_an_expired_or_forged_token(
    stack: LocalStack, identity: str, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    admin = stack.token_admin()
    sa_token = stack.control_plane.service_account_token(
        "pull-secret-updater", "controller", audience=SA_AUDIENCE
    )
    admin.set_fault("expired")
    try:
        expired = _exchange(stack, sa_token, identity).json()["token"]
    finally:
        admin.clear_faults()
    assert (
        pull_refusal(stack, _authfile(tmp_path, stack.registry.host, expired))
        == "token has expired"
    )

    good = _exchange(stack, sa_token, identity).json()["token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(good)["kid"]},
    )
    assert (
        pull_refusal(stack, _authfile(tmp_path, stack.registry.host, forged))
        == "token signature does not verify"
    )
