"""The Google provider against the real API server and the local Google (STS and IAM
Credentials that check what Google checks), with an Artifact Registry that takes only the
access tokens that Google issued.

- A Secret asking for cgr.dev and Artifact Registry (impersonating a service account) gets both
  entries, and each pulls; one STS exchange and one generateAccessToken serve all the Secrets
  of a service account. Without a service account, the federated token itself is written.
- A provider whose attribute condition does not admit the controller: STS's
  unauthorized_client in `last-error` and a Warning, nothing written; once admitted, filled.
- IAM Credentials' throttling is retried with backoff until it passes.
- A planted `oauth2accesstoken` credential (a real token this controller did not obtain, or a
  made-up one) is replaced.
- Short-lived tokens are refreshed before they expire, from the answer's expireTime.
- Namespace-scoped: a provider admitting one namespace's ServiceAccount refuses another's.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from devstack.controller import NAMESPACE, SERVICE_ACCOUNT
from devstack.registry import TEST_IMAGE_REPOSITORY, TEST_IMAGE_TAG, skopeo_inspect
from devstack.stack import LocalStack
from pull_secret_updater.providers.gar import DEFAULT_AUDIENCE
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually, unique
from tests.integration.test_namespace_scoped import (  # noqa: F401 (fixtures)
    SCOPED,
    SCOPED_SA,
    as_controller,
    namespace_scoped,
)
from tests.reliability.support import exchanges_logged
from tests.stack.gcp_support import Workload, refresh, sdk_credentials

pytestmark = pytest.mark.stack

PROVIDER = "gar.pull-secret-updater.chainguard.dev/workload-identity-provider"
SERVICE_ACCOUNT_KEY = "gar.pull-secret-updater.chainguard.dev/service-account"
REGISTRIES = "gar.pull-secret-updater.chainguard.dev/registries"
FILLED = "gar.pull-secret-updater.chainguard.dev/filled-identity"
CONTROLLER_SUBJECT = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
DEADLINE = 60.0


def gar_env(stack: LocalStack, name: str, **fields: object) -> dict[str, str]:
    """The environment that adds the Google provider, reading the controller's projected token
    of audience sts.googleapis.com (see `ControllerProcess.token_file`)."""
    token = stack.workdir / "controllers" / name / "tokens" / DEFAULT_AUDIENCE / "token"
    section = {
        "kind": "gar",
        "sts_endpoint": stack.gcp.endpoint,
        "iamcredentials_endpoint": stack.gcp.endpoint,
        "ca_bundle": str(stack.ca_file),
        "token_path": str(token),
        **fields,
    }
    return {"PSU_PROVIDERS": json.dumps([section])}


def start_with_gar(
    start_controller: Start, stack: LocalStack, name: str, env: dict[str, str] | None = None
) -> Any:
    return start_controller(
        name, env={**gar_env(stack, name), **(env or {})}, audiences=(DEFAULT_AUDIENCE,)
    )


def ask_gar(
    cluster: ClusterHelper, namespace: str, provider: str, host: str, email: str | None = None
) -> None:
    extra = [f"{SERVICE_ACCOUNT_KEY}={email}"] if email else []
    cluster.kubectl("-n", namespace, "annotate", "--overwrite", "secret", "pull-secret",
                    f"{PROVIDER}={provider}", f"{REGISTRIES}={host}", *extra)  # fmt: skip


def gar_entry(cluster: ClusterHelper, namespace: str, host: str) -> dict[str, Any] | None:
    entry = cluster.docker_config(namespace).get("auths", {}).get(host)
    return entry if isinstance(entry, dict) else None


def password_of(entry: dict[str, Any]) -> tuple[str, str]:
    if "password" in entry:
        return str(entry["username"]), str(entry["password"])
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


def gar_pull(stack: LocalStack, entry: dict[str, Any], tmp_path: Path) -> int:
    """skopeo inspect of the Artifact Registry's test image with `entry` as the credentials,
    by the registry's address (its name resolves only while a node runs)."""
    address = stack.gcp.registry.address
    authfile = tmp_path / f"{unique('gar-auth')}.json"
    user, password = password_of(entry)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {address: {"auth": auth}}}))
    return skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=f"{address}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}",
        authfile=authfile,
        ca_file=stack.ca_file,
    ).returncode


def new_provider(stack: LocalStack, subjects: list[str]) -> str:
    return stack.gcp.create_pool_provider(
        unique("kube")[:32], allowed_audiences=[DEFAULT_AUDIENCE], allowed_subjects=subjects
    )


@pytest.fixture
def controller_identity(stack: LocalStack) -> Callable[[], tuple[str, str]]:
    """A provider admitting the controller's ServiceAccount, and a service account its
    principal may impersonate; returns both."""

    def make() -> tuple[str, str]:
        provider = new_provider(stack, [CONTROLLER_SUBJECT])
        email = stack.gcp.create_service_account(unique("puller")[:30])
        stack.gcp.bind(email, stack.gcp.principal(CONTROLLER_SUBJECT))
        return provider, email

    return make


def test_one_secret_gets_a_cgr_and_a_gar_entry_and_pulls_from_both(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
    controller_identity: Callable[[], tuple[str, str]], tmp_path: Path,
) -> None:  # fmt: skip
    provider, email = controller_identity()
    host = stack.gcp.registry_host
    start_with_gar(start_controller, stack, "gar-both")
    namespaces = [cluster.namespace("gar-both") for _ in range(3)]
    for ns in namespaces:
        cluster.create_pull_secret(ns, installed)
        ask_gar(cluster, ns, provider, host, email)

    for ns in namespaces:
        eventually(partial(gar_entry, cluster, ns, host), timeout=DEADLINE,
                   what=f"the Artifact Registry entry of {ns}")  # fmt: skip
        cluster.wait_filled(ns)
    entry = gar_entry(cluster, namespaces[0], host)
    assert entry is not None
    user, password = password_of(entry)
    assert user == "oauth2accesstoken"
    issued = {item["token"]: item for item in stack.gcp.tokens()}
    assert issued[password]["service_account"] == email
    assert issued[password]["principal"] == stack.gcp.principal(CONTROLLER_SUBJECT)
    annotations = cluster.annotations(namespaces[0])
    assert annotations[FILLED] == email
    assert annotations["pull-secret-updater.chainguard.dev/filled-identity"] == installed
    assert LAST_ERROR not in annotations
    assert gar_pull(stack, entry, tmp_path) == 0
    chainguard = cluster.docker_config(namespaces[0])["auths"][stack.registry.host]
    assert cluster.pull({"auths": {stack.registry.host: chainguard}}, tmp_path) == 0
    assert all(password_of(gar_entry(cluster, ns, host) or {}) == (user, password)
               for ns in namespaces)  # fmt: skip
    assert (stack.gcp.exchanges(provider), stack.gcp.generations(email)) == (1, 1)


def test_without_a_service_account_the_federated_token_is_written_and_pulls(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_identity: Callable[[], tuple[str, str]], tmp_path: Path,
) -> None:  # fmt: skip
    provider, _ = controller_identity()
    host = stack.gcp.registry_host
    start_with_gar(start_controller, stack, "gar-federated")
    ns = cluster.namespace("gar-federated")
    cluster.create_pull_secret(ns, None)
    ask_gar(cluster, ns, provider, host)
    entry = eventually(partial(gar_entry, cluster, ns, host), timeout=DEADLINE, what="filled")
    assert isinstance(entry, dict)
    issued = {item["token"]: item for item in stack.gcp.tokens()}
    token = issued[password_of(entry)[1]]
    assert token["service_account"] is None
    assert token["provider"] == provider
    assert cluster.annotations(ns)[FILLED] == provider
    assert gar_pull(stack, entry, tmp_path) == 0


def test_a_provider_that_does_not_admit_the_controller_is_refused_with_stss_words(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    provider = new_provider(stack, ["system:serviceaccount:elsewhere:someone"])
    host = stack.gcp.registry_host
    start_with_gar(start_controller, stack, "gar-refused")
    ns = cluster.namespace("gar-refused")
    cluster.create_pull_secret(ns, None)
    ask_gar(cluster, ns, provider, host)

    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                       what="last-error")  # fmt: skip
    assert "unauthorized_client" in error
    assert "attribute condition" in error
    assert "eyJ" not in error
    assert "ya29." not in error
    assert host not in cluster.docker_config(ns).get("auths", {}), "nothing was written"
    warnings = [e for e in cluster.events(ns) if e["type"] == "Warning"]
    assert any("unauthorized_client" in e["message"] for e in warnings)

    stack.gcp.allow_subject(provider, CONTROLLER_SUBJECT)
    eventually(lambda: gar_entry(cluster, ns, host), timeout=DEADLINE, what="filled once admitted")
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), timeout=DEADLINE,
               what="last-error cleared")  # fmt: skip


def test_a_service_account_without_the_binding_is_refused_with_iams_words(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    provider = new_provider(stack, [CONTROLLER_SUBJECT])
    email = stack.gcp.create_service_account(unique("unbound")[:30])
    host = stack.gcp.registry_host
    start_with_gar(start_controller, stack, "gar-unbound")
    ns = cluster.namespace("gar-unbound")
    cluster.create_pull_secret(ns, None)
    ask_gar(cluster, ns, provider, host, email)
    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                       what="last-error")  # fmt: skip
    assert "403 PERMISSION_DENIED" in error
    assert "ya29." not in error
    assert host not in cluster.docker_config(ns).get("auths", {})


def test_throttling_is_retried_with_backoff_until_it_passes(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_identity: Callable[[], tuple[str, str]],
) -> None:  # fmt: skip
    provider, email = controller_identity()
    host = stack.gcp.registry_host
    ns = cluster.namespace("gar-throttled")
    cluster.create_pull_secret(ns, None)
    ask_gar(cluster, ns, provider, host, email)
    stack.gcp.set_fault("throttle", api="iamcredentials")
    try:
        controller = start_with_gar(start_controller, stack, "gar-throttled")
        error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                           what="the throttling reported")  # fmt: skip
        assert "429 RESOURCE_EXHAUSTED" in error
        started = time.monotonic()
        time.sleep(6)
        tried = len(exchanges_logged(controller, [email]))
        window = time.monotonic() - started + 6
    finally:
        stack.gcp.clear_faults()
    # Backoff: base 0.5 s, doubling, capped at 4 s (the tests' settings).
    assert 2 <= tried <= window, f"{tried} attempts in {window:.0f} s"
    eventually(lambda: gar_entry(cluster, ns, host), timeout=DEADLINE, what="filled")
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), timeout=DEADLINE,
               what="last-error cleared")  # fmt: skip
    assert stack.gcp.generations(email) == 1


def test_a_planted_google_credential_is_replaced_even_a_real_one(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_identity: Callable[[], tuple[str, str]], tmp_path: Path,
) -> None:  # fmt: skip
    provider, email = controller_identity()
    host = stack.gcp.registry_host
    # A genuine token of the service account, obtained outside the controller with Google's
    # SDK (as anyone holding a token of the controller's ServiceAccount could): valid, and
    # still not ours to keep.
    token_file = tmp_path / "token"
    token_file.write_text(stack.control_plane.service_account_token(
        NAMESPACE, SERVICE_ACCOUNT, audience=DEFAULT_AUDIENCE))  # fmt: skip
    workload = Workload(NAMESPACE, SERVICE_ACCOUNT, provider, email)
    planted = refresh(stack, sdk_credentials(stack, workload, token_file))
    assert gar_pull(stack, {"username": "oauth2accesstoken", "password": planted}, tmp_path) == 0

    start_with_gar(start_controller, stack, "gar-planted")
    for candidate in (planted, "ya29.made-up"):
        ns = cluster.namespace("gar-planted")
        auth = base64.b64encode(f"oauth2accesstoken:{candidate}".encode()).decode()
        config = json.dumps({"auths": {host: {"auth": auth}}})
        cluster.create_pull_secret(ns, None, config=config)
        ask_gar(cluster, ns, provider, host, email)

        def replaced(ns: str = ns, candidate: str = candidate) -> dict[str, Any] | None:
            entry = gar_entry(cluster, ns, host)
            return entry if entry is not None and password_of(entry)[1] != candidate else None

        entry = eventually(replaced, timeout=DEADLINE, what="the planted credential replaced")
        assert isinstance(entry, dict)
        assert gar_pull(stack, entry, tmp_path) == 0


def test_short_lived_tokens_are_refreshed_before_they_expire(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_identity: Callable[[], tuple[str, str]],
) -> None:  # fmt: skip
    provider, email = controller_identity()
    host = stack.gcp.registry_host
    stack.gcp.set_lifetimes(access_token=40)
    try:
        start_with_gar(start_controller, stack, "gar-short")
        ns = cluster.namespace("gar-short")
        cluster.create_pull_secret(ns, None)
        ask_gar(cluster, ns, provider, host, email)
        first = eventually(lambda: gar_entry(cluster, ns, host), timeout=DEADLINE, what="filled")
        filled_at = time.time()
        expires = cluster.annotations(ns)["pull-secret-updater.chainguard.dev/expires-at"]

        def refreshed() -> dict[str, Any] | None:
            entry = gar_entry(cluster, ns, host)
            assert time.time() < filled_at + 40, "the token expired before its refresh"
            return entry if entry is not None and entry != first else None

        eventually(refreshed, timeout=50, what="a new token before the first expires")
        assert cluster.annotations(ns)["pull-secret-updater.chainguard.dev/expires-at"] > expires
    finally:
        stack.gcp.set_lifetimes()


@pytest.mark.usefixtures("namespace_scoped")
def test_a_provider_admitting_one_namespace_is_refused_to_another_by_google_itself(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    host = stack.gcp.registry_host
    team_a, team_b = cluster.namespace("gar-team-a"), cluster.namespace("gar-team-b")
    for ns in (team_a, team_b):
        cluster.kubectl("-n", ns, "create", "serviceaccount", SCOPED_SA)
    provider = new_provider(stack, [f"system:serviceaccount:{team_a}:{SCOPED_SA}"])
    start_with_gar(start_controller, stack, "gar-scoped", env=SCOPED)
    for ns in (team_a, team_b):
        cluster.create_pull_secret(ns, None)
        ask_gar(cluster, ns, provider, host)

    eventually(lambda: gar_entry(cluster, team_a, host), timeout=DEADLINE, what="team-a filled")
    error = eventually(lambda: cluster.annotations(team_b).get(LAST_ERROR), timeout=DEADLINE,
                       what="team-b refused")  # fmt: skip
    assert "unauthorized_client" in error
    assert host not in cluster.docker_config(team_b).get("auths", {})
    assert stack.gcp.exchanges(provider, "error") >= 1
