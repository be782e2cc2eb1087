"""Namespace-scoped identities: the controller exchanges a token of `pull-secret-updater` in
the Secret's own namespace, so an identity that trusts one namespace is useless to another.

With `PSU_TOKEN_SUBJECT=namespace` and the RBAC of `config/namespace-scoped/` (applied here as
a user would; it shares the ClusterRole's name with `config/`, so applying it adds the
`serviceaccounts/token` rule, and `config/` is applied again afterwards), and no policy file:

- a namespace's Secret of the identity trusting that namespace is filled, and pulls;
- the same identity asked for in another namespace is refused by the token service itself
  (403), which the Secret's `last-error` and a Warning say, and no token is written;
- a namespace without the ServiceAccount is told to create it, and is filled once it does;
- the controller's ServiceAccount may request tokens for that one ServiceAccount name only;
- with its own token and no policy choice at all, the controller refuses to start.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jwt
import pytest

from devstack import pki
from devstack.binaries import REPO
from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT, ControllerProcess, install_manifests
from devstack.stack import SA_AUDIENCE, LocalStack
from tests.helpers import IDENTITY, LAST_ERROR, ClusterHelper, Json, Start, eventually, unique

pytestmark = pytest.mark.stack

SCOPED_SA = "pull-secret-updater"
SCOPED = {"PSU_TOKEN_SUBJECT": "namespace", "PSU_ALLOW_ANY_IDENTITY": "false"}
#: Long enough for several retries (backoff capped at 4 s in the tests' settings).
SETTLE = 5.0


def token_rule_present(stack: LocalStack) -> bool:
    role = json.loads(stack.control_plane.kubectl("get", "clusterrole", "pull-secret-updater",
                                                  "-o", "json"))  # fmt: skip
    return any("serviceaccounts/token" in rule.get("resources", []) for rule in role["rules"])


@pytest.fixture(scope="module")
def as_controller(stack: LocalStack, installed: str) -> Iterator[httpx2.Client]:
    """Requests as the controller's ServiceAccount (a TokenRequest token)."""
    token = stack.control_plane.service_account_token(NAMESPACE, SERVICE_ACCOUNT)
    with httpx2.Client(
        base_url=stack.control_plane.server, verify=pki.trust(stack.ca_file),
        headers={"Authorization": f"Bearer {token}"}, timeout=10.0,
    ) as client:  # fmt: skip
        yield client


def request_token(client: httpx2.Client, namespace: str, name: str) -> httpx2.Response:
    return client.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"audiences": [SA_AUDIENCE], "expirationSeconds": 600}},
    )  # fmt: skip


@pytest.fixture(scope="module")
def namespace_scoped(
    stack: LocalStack, installed: str, as_controller: httpx2.Client
) -> Iterator[None]:
    """config/namespace-scoped/ applied; config/ again afterwards, and checked to be back."""
    stack.control_plane.kubectl("apply", "-k", str(REPO / "config" / "namespace-scoped"))
    assert token_rule_present(stack)
    try:
        yield
    finally:
        install_manifests(stack)
        assert not token_rule_present(stack), "config/ did not take the token rule away"
        probe = ClusterHelper(stack).namespace("rbac-restored")
        stack.control_plane.kubectl("-n", probe, "create", "serviceaccount", SCOPED_SA)
        assert request_token(as_controller, probe, SCOPED_SA).status_code == 403


@pytest.fixture
def retire(stack: LocalStack) -> Iterator[list[str]]:
    """Namespaces whose pull Secret loses its identity annotation after the test, so the
    controllers of later tests do not keep retrying what this one left failing."""
    namespaces: list[str] = []
    yield namespaces
    for ns in namespaces:
        stack.control_plane.kubectl("-n", ns, "annotate", "secret", "pull-secret",
                                    f"{IDENTITY}-", check=False)  # fmt: skip


def tenant_namespace(cluster: ClusterHelper, prefix: str, *, with_account: bool = True) -> str:
    ns = cluster.namespace(prefix)
    if with_account:
        cluster.kubectl("-n", ns, "create", "serviceaccount", SCOPED_SA)
    return ns


def namespace_identity(stack: LocalStack, namespace: str) -> str:
    """An identity trusting only `namespace`'s pull-secret-updater, as chainctl creates it."""
    with stack.token_admin() as admin:
        return admin.create_identity(
            name=unique(f"scoped-{namespace}"),
            issuer=SERVICE_ACCOUNT_ISSUER,
            subject=f"system:serviceaccount:{namespace}:{SCOPED_SA}",
            audience=SA_AUDIENCE,
            issuer_keys=json.dumps(stack.control_plane.jwks()),
            roles=["registry.pull"],
        )


def exchange_counts(stack: LocalStack, identity: str) -> dict[str, int]:
    with stack.token_admin() as admin:
        counts: dict[str, int] = admin.stats()["exchanges"].get(identity, {"ok": 0, "error": 0})
    return counts


def warnings(cluster: ClusterHelper, namespace: str) -> list[Json]:
    return [e for e in cluster.events(namespace) if e.get("type") == "Warning"]


def test_an_identity_is_filled_in_its_own_namespace_and_refused_in_another(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, namespace_scoped: None,
    retire: list[str], tmp_path: Path,
) -> None:  # fmt: skip
    a, b = tenant_namespace(cluster, "scoped-a"), tenant_namespace(cluster, "scoped-b")
    identity_a, identity_b = namespace_identity(stack, a), namespace_identity(stack, b)
    start_controller("scoped", env=SCOPED)
    retire += [a, b]
    cluster.create_pull_secret(a, identity_a)
    cluster.create_pull_secret(b, identity_a)  # b asks for a's identity

    token = cluster.wait_filled(a)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == identity_a
    assert cluster.pull(cluster.docker_config(a), tmp_path) == 0

    error = eventually(lambda: cluster.annotations(b).get(LAST_ERROR), what="b's last-error")
    assert "403" in error, error
    assert "permission_denied" in error, error
    assert f"system:serviceaccount:{b}:{SCOPED_SA}" in error, "the error does not say whose"
    assert eventually(lambda: [w for w in warnings(cluster, b) if w["reason"] == "ExchangeFailed"],
                      timeout=10, what="a Warning in b")  # fmt: skip
    eventually(lambda: exchange_counts(stack, identity_a)["error"] >= 2, timeout=15,
               what="a retry of b's exchange")  # fmt: skip
    assert cluster.token(b) is None
    assert exchange_counts(stack, identity_a)["ok"] == 1, "b obtained a's identity"
    assert exchange_counts(stack, identity_b) == {"ok": 0, "error": 0}
    assert cluster.token(a) == token


def test_a_namespace_without_the_service_account_is_told_to_create_it(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, namespace_scoped: None,
    retire: list[str],
) -> None:  # fmt: skip
    ns = tenant_namespace(cluster, "scoped-no-sa", with_account=False)
    identity = namespace_identity(stack, ns)
    start_controller("scoped-no-sa", env=SCOPED)
    retire.append(ns)
    cluster.create_pull_secret(ns, identity)

    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), what="the last-error")
    assert f"kubectl create serviceaccount {SCOPED_SA} -n {ns}" in error, error
    assert eventually(lambda: warnings(cluster, ns), timeout=10, what="a Warning")
    assert cluster.token(ns) is None
    assert exchange_counts(stack, identity) == {"ok": 0, "error": 0}

    cluster.kubectl("-n", ns, "create", "serviceaccount", SCOPED_SA)
    cluster.wait_filled(ns, timeout=40)
    assert LAST_ERROR not in cluster.annotations(ns)


def test_the_controller_may_request_tokens_only_for_the_fixed_service_account(
    cluster: ClusterHelper, as_controller: httpx2.Client, namespace_scoped: None
) -> None:
    ns = tenant_namespace(cluster, "scoped-rbac")
    cluster.kubectl("-n", ns, "create", "serviceaccount", "builder")
    for name in ("default", "builder"):
        refused = request_token(as_controller, ns, name)
        assert refused.status_code == 403, f"{name}: {refused.text[:300]}"
        assert refused.json()["reason"] == "Forbidden"
    allowed = request_token(as_controller, ns, SCOPED_SA)
    assert allowed.status_code == 201, allowed.text[:300]
    claims = jwt.decode(allowed.json()["status"]["token"], options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{ns}:{SCOPED_SA}"


@pytest.mark.parametrize("allow_any", [None, "false"], ids=["unset", "false"])
def test_the_controller_refuses_to_start_with_its_own_token_and_no_policy_choice(
    stack: LocalStack, installed: str, allow_any: str | None
) -> None:
    controller = ControllerProcess(stack, name=unique("no-policy"))
    env = {k: v for k, v in controller.env.items() if k != "PSU_ALLOW_ANY_IDENTITY"}
    if allow_any is not None:
        env["PSU_ALLOW_ANY_IDENTITY"] = allow_any
    assert "PSU_POLICY_FILE" not in env
    assert "PSU_TOKEN_SUBJECT" not in env
    result = subprocess.run(controller.process.argv, env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip()
    assert "Traceback" not in message, message
    for choice in ("PSU_POLICY_FILE", "PSU_TOKEN_SUBJECT", "PSU_ALLOW_ANY_IDENTITY"):
        assert choice in message, f"{choice} missing from: {message}"
