"""The security model, checked against the real stack.

- Least privilege: the shipped RBAC lets the controller's ServiceAccount touch only Secrets
  with the managed name (and only through a name field selector when listing or watching),
  its Events and its own Lease. Shown with real requests carrying its token.
- Nothing leaks: after a workload of fills, refreshes, faults and bad input, no token the
  token service ever issued and none of the controller's own ServiceAccount tokens appears in
  anything the controller emitted (its logs, Events, annotations, metrics), nor in the audit log.
- The token service is reached over verified TLS only: a controller trusting another CA
  fails closed and says why.
- The confused deputy: with a policy that grants an identity to labelled namespaces only, a
  Secret asking for it elsewhere is never filled, and no exchange is even attempted for it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from devstack import pki
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start, eventually, unique
from tests.reliability.support import LAST_ERROR, MANAGED, Api, exchanges, figure

pytestmark = pytest.mark.stack

LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"


# -- least privilege ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def as_controller(stack: LocalStack, installed: str) -> Iterator[httpx2.Client]:
    """An HTTP client that presents the controller ServiceAccount's token."""
    token = stack.control_plane.service_account_token(NAMESPACE, SERVICE_ACCOUNT)
    with httpx2.Client(
        base_url=stack.control_plane.server,
        verify=pki.trust(stack.ca_file),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def rbac_namespace(stack: LocalStack, installed: str) -> str:
    """A namespace holding the managed Secret and another one, for the RBAC checks."""
    cluster = ClusterHelper(stack)
    ns = cluster.namespace("rbac")
    cluster.create_pull_secret(ns, None)
    cluster.kubectl("-n", ns, "create", "secret", "generic", "db-password", "--from-literal=p=x")
    return ns


def secret_body(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}}


def lease_body(name: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {}}  # fmt: skip


DENIED: list[Any] = [
    pytest.param("GET", "/api/v1/secrets", None, None, id="list-secrets-everywhere"),
    pytest.param("GET", "/api/v1/namespaces/{ns}/secrets", None, None, id="list-secrets-in-ns"),
    pytest.param(
        "GET",
        "/api/v1/secrets",
        {"fieldSelector": "metadata.name=db-password"},
        None,
        id="list-secrets-of-another-name",
    ),
    pytest.param("GET", "/api/v1/secrets", {"watch": "true"}, None, id="watch-secrets-everywhere"),
    pytest.param(
        "GET", "/api/v1/namespaces/{ns}/secrets", {"watch": "true"}, None, id="watch-secrets-in-ns"
    ),
    pytest.param(
        "GET", "/api/v1/namespaces/{ns}/secrets/db-password", None, None, id="get-another-secret"
    ),
    pytest.param(
        "PUT",
        "/api/v1/namespaces/{ns}/secrets/db-password",
        None,
        lambda ns: secret_body(ns, "db-password"),
        id="update-another-secret",
    ),
    pytest.param(
        "DELETE",
        "/api/v1/namespaces/{ns}/secrets/pull-secret",
        None,
        None,
        id="delete-the-managed-secret",
    ),
    pytest.param(
        "POST",
        "/api/v1/namespaces/{ns}/secrets",
        None,
        lambda ns: secret_body(ns, "pull-secret-2"),
        id="create-a-secret",
    ),
    pytest.param(
        "GET", "/api/v1/namespaces/{ns}/configmaps/anything", None, None, id="get-a-configmap"
    ),
    pytest.param("GET", "/api/v1/namespaces/{ns}/configmaps", None, None, id="list-configmaps"),
    pytest.param("GET", "/api/v1/namespaces", None, None, id="list-namespaces"),
    pytest.param("GET", "/api/v1/namespaces/{ns}", None, None, id="get-a-namespace"),
    pytest.param(
        "PUT",
        LEASES + "/someone-else",
        None,
        lambda ns: lease_body("someone-else"),
        id="update-another-lease",
    ),
    pytest.param("GET", LEASES + "/someone-else", None, None, id="get-another-lease"),
    pytest.param("DELETE", LEASES + "/pull-secret-updater", None, None, id="delete-its-lease"),
    pytest.param(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default/token",
        None,
        lambda ns: {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        id="token-for-another-serviceaccount",
    ),
]


@pytest.mark.parametrize(("method", "path", "params", "body"), DENIED)
def test_the_controller_account_is_refused_anything_beyond_its_role(
    as_controller: httpx2.Client, rbac_namespace: str, method: str, path: str,
    params: dict[str, str] | None, body: Callable[[str], dict[str, Any]] | None,
) -> None:  # fmt: skip
    response = as_controller.request(
        method,
        path.format(ns=rbac_namespace),
        params=params,
        json=body(rbac_namespace) if body else None,
    )
    assert response.status_code == 403, response.text[:300]
    assert response.json()["reason"] == "Forbidden"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        pytest.param(
            "/api/v1/secrets", {"fieldSelector": "metadata.name=pull-secret"}, id="list-by-name"
        ),
        pytest.param(
            "/api/v1/secrets",
            {"fieldSelector": "metadata.name=pull-secret", "watch": "true", "timeoutSeconds": "1"},
            id="watch-by-name",
        ),
        pytest.param("/api/v1/namespaces/{ns}/secrets/pull-secret", None, id="get-by-name"),
    ],
)
def test_the_controller_account_may_read_the_managed_secrets_by_name(
    as_controller: httpx2.Client, rbac_namespace: str, path: str, params: dict[str, str] | None
) -> None:
    # The control for the table above: the same token, the same client, allowed requests.
    response = as_controller.get(path.format(ns=rbac_namespace), params=params)
    assert response.status_code == 200, response.text[:300]


# -- TLS ------------------------------------------------------------------------------------


def test_a_token_service_certificate_from_another_ca_fails_closed(
    cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], tmp_path: Path,
) -> None:  # fmt: skip
    other = pki.create_ca(tmp_path, name="some other CA")
    controller = start_controller("wrong-ca", env={"PSU_CA_BUNDLE": str(other.cert_file)})
    ns = cluster.namespace("wrong-ca")
    # A new identity: for one that other Secrets hold a token of, none needs to be exchanged.
    cluster.create_pull_secret(ns, new_identity("wrong-ca"))
    error = eventually(lambda: api.annotations(api.secret(ns)).get(LAST_ERROR),
                       what="the error status")  # fmt: skip
    assert "certificate" in error
    assert "could not be verified" in error
    # The token service's keys are fetched first, over the same TLS: nothing can be verified,
    # so nothing is exchanged (README, troubleshooting).
    assert "VerificationUnavailable" in api.warnings(ns)
    time.sleep(2)
    assert api.token(api.secret(ns)) is None
    assert controller.process.running()


# -- the confused deputy ---------------------------------------------------------------------


NAMESPACE_READER = "psu-reliability-read-namespaces"


@pytest.fixture
def may_read_namespaces(stack: LocalStack, installed: str) -> Iterator[None]:
    """What a namespaceSelector policy needs beyond the shipped RBAC: get on namespaces."""
    kubectl = stack.control_plane.kubectl
    kubectl("create", "clusterrole", NAMESPACE_READER, "--verb=get", "--resource=namespaces")
    kubectl("create", "clusterrolebinding", NAMESPACE_READER, f"--clusterrole={NAMESPACE_READER}",
            f"--serviceaccount={NAMESPACE}:{SERVICE_ACCOUNT}")  # fmt: skip
    try:
        yield
    finally:
        kubectl("delete", "clusterrolebinding", NAMESPACE_READER, "--ignore-not-found")
        kubectl("delete", "clusterrole", NAMESPACE_READER, "--ignore-not-found")


def test_a_policy_keeps_an_identity_out_of_unlabelled_namespaces(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    new_identity: Callable[[str], str], may_read_namespaces: None, tmp_path: Path,
) -> None:  # fmt: skip
    identity = new_identity("payments")
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"rules": [{
        "identities": [identity], "namespaceSelector": {"matchLabels": {"team": "payments"}},
    }]}))  # fmt: skip
    controller = start_controller("policy-selector", env={"PSU_POLICY_FILE": str(policy)})

    elsewhere = cluster.namespace("not-payments")
    cluster.create_pull_secret(elsewhere, identity)
    error = eventually(lambda: api.annotations(api.secret(elsewhere)).get(LAST_ERROR),
                       what="the policy error")  # fmt: skip
    time.sleep(3)
    assert "may not be used in namespace" in error
    assert "PolicyDenied" in api.warnings(elsewhere)
    assert api.token(api.secret(elsewhere)) is None
    assert exchanges(stack, [identity]) == 0, "a token was asked for on a denied Secret's behalf"

    payments = cluster.namespace("payments", labels={"team": "payments"})
    cluster.create_pull_secret(payments, identity)
    cluster.wait_filled(payments)
    assert api.token(api.secret(elsewhere)) is None
    assert controller.process.running()


# -- nothing leaks ---------------------------------------------------------------------------


def run_representative_workload(
    stack: LocalStack, cluster: ClusterHelper, api: Api, identity: str, tmp_path: Path
) -> None:
    """Fills, refreshes (tokens live 6 s), each kind of bad answer, bad input, a pull."""
    namespaces = cluster.create_pull_secrets({unique(f"leak-{i}"): identity for i in range(3)})
    tokens = {ns: cluster.wait_filled(ns) for ns in namespaces}
    assert cluster.pull(cluster.docker_config(namespaces[0]), tmp_path) == 0
    bad = cluster.namespace("leak-bad")
    cluster.create_pull_secret(bad, "0" * 40 + "/" + "0" * 16)  # no such identity
    admin = stack.token_admin()
    for mode in ("garbage_token", "expired", "no_exp", "malformed", "status", "refuse"):
        admin.set_fault(mode)
        time.sleep(1.5)
    admin.clear_faults()
    for ns in namespaces:
        cluster.wait_filled(ns, other_than=tokens[ns], timeout=60)  # generous: a slow machine
    eventually(lambda: api.annotations(api.secret(bad)).get(LAST_ERROR), what="the bad input")


def needles(stack: LocalStack) -> dict[str, str]:
    """What must never be found, each with a label that does not reveal it."""
    found: dict[str, str] = {}

    def add(token: str, label: str) -> None:
        found[token] = label
        if token.count(".") == 2:
            found[token.rsplit(".", 1)[1]] = f"signature of {label}"

    for i, token in enumerate(stack.token_admin().issued()):
        add(token, f"issued token #{i}")
        found[base64.b64encode(f"_token:{token}".encode()).decode()] = f"auth of issued token #{i}"
    controllers = stack.workdir / "controllers"
    for path in sorted(controllers.glob("*/oidc/oidc-token")):
        add(path.read_text().strip(), f"projected token of {path.parent.parent.name}")
    for path in sorted(controllers.glob("*/kubeconfig")):
        config = yaml.safe_load(path.read_text())
        add(str(config["users"][0]["user"]["token"]), f"API token of {path.parent.name}")
    return found


def find(secrets: dict[str, str], texts: dict[str, str]) -> list[str]:
    return [
        f"{label} in {where}"
        for needle, label in secrets.items()
        for where, text in texts.items()
        if needle in text
    ]


def test_no_token_appears_in_anything_the_controller_emitted(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str], tmp_path: Path,
) -> None:  # fmt: skip
    token_lifetime(6)
    controller = start_controller("leak-scan")
    run_representative_workload(stack, cluster, api, new_identity("leak"), tmp_path)

    emitted: dict[str, str] = {"metrics of leak-scan": controller.metrics()}
    controller.stop()  # its last log lines are flushed
    for path in sorted((stack.workdir / "controllers").rglob("*.log")):
        emitted[f"log {path.relative_to(stack.workdir)}"] = path.read_text(errors="replace")
    emitted["Events"] = cluster.kubectl("get", "events", "-A", "-o", "json")
    managed = api.managed(MANAGED)
    emitted["annotations of the managed Secrets"] = json.dumps(
        {
            f"{s['metadata']['namespace']}/{s['metadata']['name']}": api.annotations(s)
            for s in managed
        }
    )
    emitted["audit log"] = stack.control_plane.audit_log.read_text(errors="replace")

    secrets = needles(stack)
    started = time.monotonic()
    leaks = find(secrets, emitted)
    figure("leak scan: secrets searched for", len(secrets))
    figure("leak scan: bytes searched", sum(len(text) for text in emitted.values()))
    figure("leak scan: controller logs searched",
           sum(1 for where in emitted if where.startswith("log ")))  # fmt: skip
    figure("leak scan: search time", time.monotonic() - started, "s")
    assert not leaks, "\n".join(leaks[:20])

    # The scan finds what it looks for where it is meant to be: in the Secrets' data.
    held = {f"{s['metadata']['namespace']}": json.dumps(api.docker_config(s)) for s in managed}
    assert find(secrets, held), "the scan does not even find the tokens in the Secrets"
    assert all(token in secrets for s in managed if (token := api.token(s))), (
        "a token in a Secret is missing from the token service's list of issued tokens"
    )
