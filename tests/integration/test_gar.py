"""The Google provider against the real API server and the local Google (STS and IAM
Credentials that check what Google checks), with an Artifact Registry that takes only the
access tokens that Google issued. What every cloud provider does alike (a refused provider, a
planted credential, short lifetimes, throttling, namespace-scoped refusals) is in
test_clouds.py.

- A Secret asking for cgr.dev and Artifact Registry (impersonating a service account) gets both
  entries, and each pulls; one STS exchange and one generateAccessToken serve all the Secrets
  of a service account. Without a service account, the federated token itself is written.
- A service account without the controller's binding: IAM's PERMISSION_DENIED, nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually, unique
from tests.integration.clouds import (
    CONTROLLER_SUBJECT,
    DEADLINE,
    GAR,
    GoogleIdentity,
    ask_gar,
    entry_of,
    new_provider,
    password_of,
    start_with,
)

pytestmark = pytest.mark.stack

FILLED = "gar.pull-secret-updater.chainguard.dev/filled-identity"


@pytest.fixture
def controller_identity(stack: LocalStack) -> Callable[[], tuple[str, str]]:
    """A provider admitting the controller's ServiceAccount, and a service account its
    principal may impersonate; returns both."""

    def make() -> tuple[str, str]:
        identity = GAR.puller(stack)
        assert identity.email is not None
        return identity.provider, identity.email

    return make


def test_one_secret_gets_a_cgr_and_a_gar_entry_and_pulls_from_both(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
    controller_identity: Callable[[], tuple[str, str]], tmp_path: Path,
) -> None:  # fmt: skip
    provider, email = controller_identity()
    host = stack.gcp.registry_host
    start_with(GAR, stack, start_controller, "gar-both")
    namespaces = [cluster.namespace("gar-both") for _ in range(3)]
    for ns in namespaces:
        cluster.create_pull_secret(ns, installed)
        ask_gar(cluster, ns, GoogleIdentity(provider, email), host)

    for ns in namespaces:
        eventually(partial(entry_of, cluster, ns, host), timeout=DEADLINE,
                   what=f"the Artifact Registry entry of {ns}")  # fmt: skip
        cluster.wait_filled(ns)
    entry = entry_of(cluster, namespaces[0], host)
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
    assert GAR.pull(stack, entry, tmp_path) == 0
    chainguard = cluster.docker_config(namespaces[0])["auths"][stack.registry.host]
    assert cluster.pull({"auths": {stack.registry.host: chainguard}}, tmp_path) == 0
    assert all(password_of(entry_of(cluster, ns, host) or {}) == (user, password)
               for ns in namespaces)  # fmt: skip
    assert (stack.gcp.exchanges(provider), stack.gcp.generations(email)) == (1, 1)


def test_without_a_service_account_the_federated_token_is_written_and_pulls(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_identity: Callable[[], tuple[str, str]], tmp_path: Path,
) -> None:  # fmt: skip
    provider, _ = controller_identity()
    host = stack.gcp.registry_host
    start_with(GAR, stack, start_controller, "gar-federated")
    ns = cluster.namespace("gar-federated")
    cluster.create_pull_secret(ns, None)
    ask_gar(cluster, ns, GoogleIdentity(provider), host)
    entry = eventually(partial(entry_of, cluster, ns, host), timeout=DEADLINE, what="filled")
    assert isinstance(entry, dict)
    issued = {item["token"]: item for item in stack.gcp.tokens()}
    token = issued[password_of(entry)[1]]
    assert token["service_account"] is None
    assert token["provider"] == provider
    assert cluster.annotations(ns)[FILLED] == provider
    assert GAR.pull(stack, entry, tmp_path) == 0


def test_a_service_account_without_the_binding_is_refused_with_iams_words(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    provider = new_provider(stack, [CONTROLLER_SUBJECT])
    email = stack.gcp.create_service_account(unique("unbound")[:30])
    host = stack.gcp.registry_host
    start_with(GAR, stack, start_controller, "gar-unbound")
    ns = cluster.namespace("gar-unbound")
    cluster.create_pull_secret(ns, None)
    ask_gar(cluster, ns, GoogleIdentity(provider, email), host)
    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                       what="last-error")  # fmt: skip
    assert "403 PERMISSION_DENIED" in error
    assert "ya29." not in error
    assert host not in cluster.docker_config(ns).get("auths", {})
