"""The ACR provider against the real API server and the local Azure (Entra ID's federated
credentials and ACR's OAuth endpoints), with a registry that takes only the refresh tokens
the stand-in issued for it.

- A Secret asking for ACR gets its entry, which pulls; one Entra token request and one
  exchange serve all the Secrets of an app and registry.
- An app with no federated credential for the controller's subject: Entra's AADSTS700213 in
  `last-error` and a Warning, nothing written; the credential added, the Secret is filled.
- Short-lived refresh tokens are refreshed before they expire, from their own `exp`.
- A planted credential (a genuine refresh token this controller did not obtain, or a made-up
  one) is replaced.
- Namespace-scoped: an app trusting one namespace's ServiceAccount is refused for another.
"""

from __future__ import annotations

import base64
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import pytest

from devstack.azure.standin import AUDIENCE
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT
from devstack.registry import TEST_IMAGE_REPOSITORY, TEST_IMAGE_TAG, skopeo_inspect
from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually, unique
from tests.integration.test_namespace_scoped import (  # noqa: F401 (fixtures)
    SCOPED,
    SCOPED_SA,
    as_controller,
    namespace_scoped,
)
from tests.stack.azure_support import SCOPE, Workload, credential, exchange

pytestmark = pytest.mark.stack

PREFIX = "acr.pull-secret-updater.chainguard.dev/"
TENANT_ID, CLIENT_ID, REGISTRY = PREFIX + "tenant-id", PREFIX + "client-id", PREFIX + "registry"
FILLED = PREFIX + "filled-identity"
NIL = "00000000-0000-0000-0000-000000000000"
CONTROLLER_SUBJECT = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
DEADLINE = 60.0


def acr_env(stack: LocalStack, name: str) -> dict[str, str]:
    """The environment that adds the ACR provider, reading the controller's projected token of
    audience api://AzureADTokenExchange (see `ControllerProcess.token_file`)."""
    token = stack.workdir / "controllers" / name / "tokens" / AUDIENCE / "token"
    section = {**stack.azure.section(), "ca_bundle": str(stack.ca_file), "token_path": str(token)}
    return {"PSU_PROVIDERS": json.dumps([section])}


def start_with_acr(
    start_controller: Start, stack: LocalStack, name: str, env: dict[str, str] | None = None
) -> Any:
    return start_controller(
        name, env={**acr_env(stack, name), **(env or {})}, audiences=(AUDIENCE,)
    )


def ask_acr(cluster: ClusterHelper, stack: LocalStack, namespace: str, client_id: str) -> None:
    cluster.kubectl("-n", namespace, "annotate", "--overwrite", "secret", "pull-secret",
                    f"{TENANT_ID}={stack.azure.tenant}", f"{CLIENT_ID}={client_id}",
                    f"{REGISTRY}={stack.azure.registry_host}")  # fmt: skip


def acr_entry(cluster: ClusterHelper, stack: LocalStack, namespace: str) -> dict[str, Any] | None:
    entry = cluster.docker_config(namespace).get("auths", {}).get(stack.azure.registry_host)
    return entry if isinstance(entry, dict) else None


def password_of(entry: dict[str, Any]) -> tuple[str, str]:
    if "password" in entry:
        return str(entry["username"]), str(entry["password"])
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


def acr_pull(stack: LocalStack, entry: dict[str, Any], tmp_path: Path) -> int:
    """skopeo inspect of the ACR registry's test image with `entry` as the credentials, at the
    registry's address (its azurecr.io name resolves only while a node runs)."""
    address = stack.azure.registry.address
    authfile = tmp_path / f"{unique('acr-auth')}.json"
    user, password = password_of(entry)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {address: {"auth": auth}}}))
    return skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=f"{address}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}",
        authfile=authfile,
        ca_file=stack.ca_file,
    ).returncode


def controller_app(stack: LocalStack) -> str:
    """An app that trusts the controller's ServiceAccount, with AcrPull on the registry."""
    return stack.azure.create_puller(unique("puller"), subject=CONTROLLER_SUBJECT)


def test_secrets_asking_for_acr_are_filled_from_one_exchange_and_pull(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, tmp_path: Path,
) -> None:  # fmt: skip
    app = controller_app(stack)
    start_with_acr(start_controller, stack, "acr-filled")
    namespaces = [cluster.namespace("acr-filled") for _ in range(3)]
    for ns in namespaces:
        cluster.create_pull_secret(ns, None)
        ask_acr(cluster, stack, ns, app)

    entries = [
        eventually(partial(acr_entry, cluster, stack, ns), timeout=DEADLINE, what=f"{ns} filled")
        for ns in namespaces
    ]
    user, password = password_of(entries[0])
    assert user == NIL
    issued = {item["token"]: item for item in stack.azure.refresh_tokens()}
    assert issued[password]["client_id"] == app, "a refresh token the stand-in issued for it"
    annotations = cluster.annotations(namespaces[0])
    assert annotations[FILLED] == f"{stack.azure.tenant}/{app}"
    assert LAST_ERROR not in annotations
    expires = annotations["pull-secret-updater.chainguard.dev/expires-at"]
    exp = jwt.decode(password, options={"verify_signature": False})["exp"]
    assert expires == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp)), "its own exp"
    assert acr_pull(stack, entries[0], tmp_path) == 0
    assert all(password_of(e) == (user, password) for e in entries)
    assert (stack.azure.tokens(app), stack.azure.exchanges(app)) == (1, 1)


def test_no_federated_credential_for_the_controller_is_refused_with_entras_code(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    app = stack.azure.create_puller(
        unique("untrusting"), subject="system:serviceaccount:elsewhere:someone"
    )
    start_with_acr(start_controller, stack, "acr-refused")
    ns = cluster.namespace("acr-refused")
    cluster.create_pull_secret(ns, None)
    ask_acr(cluster, stack, ns, app)

    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                       what="last-error")  # fmt: skip
    assert "AADSTS700213" in error
    assert "invalid_client" in error
    assert "eyJ" not in error
    assert acr_entry(cluster, stack, ns) is None, "nothing was written"
    warnings = [e for e in cluster.events(ns) if e["type"] == "Warning"]
    assert any("AADSTS700213" in e["message"] for e in warnings)
    assert all("eyJ" not in e["message"] for e in warnings)
    assert stack.azure.exchanges(app) == 0

    # The app is made to trust the controller: the Secret is filled, the error cleared.
    stack.azure.add_federated_credential(app, subject=CONTROLLER_SUBJECT)
    eventually(lambda: acr_entry(cluster, stack, ns), timeout=DEADLINE, what="filled once trusted")
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), timeout=DEADLINE,
               what="last-error cleared")  # fmt: skip


def test_short_lived_refresh_tokens_are_refreshed_before_they_expire(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    app = controller_app(stack)
    stack.azure.set_lifetimes(refresh_token=30)
    try:
        start_with_acr(start_controller, stack, "acr-short")
        ns = cluster.namespace("acr-short")
        cluster.create_pull_secret(ns, None)
        ask_acr(cluster, stack, ns, app)
        first = eventually(lambda: acr_entry(cluster, stack, ns), timeout=DEADLINE, what="filled")
        filled_at = time.time()
        expires = cluster.annotations(ns)["pull-secret-updater.chainguard.dev/expires-at"]

        def refreshed() -> dict[str, Any] | None:
            entry = acr_entry(cluster, stack, ns)
            assert time.time() < filled_at + 30, "the refresh token expired before its refresh"
            return entry if entry is not None and entry != first else None

        eventually(refreshed, timeout=40, what="a new refresh token before the first expires")
        assert cluster.annotations(ns)["pull-secret-updater.chainguard.dev/expires-at"] > expires
    finally:
        stack.azure.set_lifetimes(refresh_token=0)


def test_a_planted_credential_is_replaced_even_a_genuine_refresh_token(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, tmp_path: Path,
) -> None:  # fmt: skip
    app = controller_app(stack)
    host = stack.azure.registry_host
    # A genuine refresh token for the app, obtained outside the controller (with the Azure
    # SDK and the registry's exchange, as anyone with the controller's token could): valid,
    # and still not ours to keep.
    token_file = tmp_path / "token"
    token_file.write_text(stack.control_plane.service_account_token(
        NAMESPACE, SERVICE_ACCOUNT, audience=AUDIENCE))  # fmt: skip
    workload = Workload(NAMESPACE, SERVICE_ACCOUNT, app)
    access = credential(stack, workload, token_file).get_token(SCOPE).token
    planted = str(exchange(stack, access).json()["refresh_token"])
    assert acr_pull(stack, {"username": NIL, "password": planted}, tmp_path) == 0

    start_with_acr(start_controller, stack, "acr-planted")
    for candidate in (planted, "made-up-refresh-token"):
        ns = cluster.namespace("acr-planted")
        auth = base64.b64encode(f"{NIL}:{candidate}".encode()).decode()
        cluster.create_pull_secret(ns, None, config=json.dumps({"auths": {host: {"auth": auth}}}))
        ask_acr(cluster, stack, ns, app)

        def replaced(ns: str = ns, candidate: str = candidate) -> dict[str, Any] | None:
            entry = acr_entry(cluster, stack, ns)
            return entry if entry is not None and password_of(entry)[1] != candidate else None

        entry = eventually(replaced, timeout=DEADLINE, what="the planted credential replaced")
        assert isinstance(entry, dict)
        assert acr_pull(stack, entry, tmp_path) == 0


@pytest.mark.usefixtures("namespace_scoped")
def test_an_app_trusting_one_namespace_is_refused_to_another_by_entra_itself(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    team_a, team_b = cluster.namespace("acr-team-a"), cluster.namespace("acr-team-b")
    for ns in (team_a, team_b):
        cluster.kubectl("-n", ns, "create", "serviceaccount", SCOPED_SA)
    app = stack.azure.create_puller(
        unique("team-a"), subject=f"system:serviceaccount:{team_a}:{SCOPED_SA}"
    )
    start_with_acr(start_controller, stack, "acr-scoped", env=SCOPED)
    for ns in (team_a, team_b):
        cluster.create_pull_secret(ns, None)
        ask_acr(cluster, stack, ns, app)

    eventually(lambda: acr_entry(cluster, stack, team_a), timeout=DEADLINE, what="team-a filled")
    error = eventually(lambda: cluster.annotations(team_b).get(LAST_ERROR), timeout=DEADLINE,
                       what="team-b refused")  # fmt: skip
    assert "AADSTS700213" in error
    assert acr_entry(cluster, stack, team_b) is None
    assert stack.azure.tokens(app, "error") >= 1
