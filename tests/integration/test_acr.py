"""The ACR provider against the real API server and the local Azure (Entra ID's federated
credentials and ACR's OAuth endpoints), with a registry that takes only the refresh tokens
the stand-in issued for it. What every cloud provider does alike (an app that does not trust
the controller, a planted credential, short lifetimes, namespace-scoped refusals) is in
test_clouds.py.

- A Secret asking for ACR gets its entry, which pulls; one Entra token request and one
  exchange serve all the Secrets of an app and registry; the entry expires with the refresh
  token's own `exp`.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import jwt
import pytest

from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually
from tests.integration.clouds import ACR, DEADLINE, entry_of, password_of, start_with

pytestmark = pytest.mark.stack

FILLED = "acr.pull-secret-updater.chainguard.dev/filled-identity"


def test_secrets_asking_for_acr_are_filled_from_one_exchange_and_pull(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, tmp_path: Path,
) -> None:  # fmt: skip
    app = ACR.puller(stack)
    host = ACR.host(stack)
    start_with(ACR, stack, start_controller, "acr-filled")
    namespaces = [cluster.namespace("acr-filled") for _ in range(3)]
    for ns in namespaces:
        cluster.create_pull_secret(ns, None)
        ACR.ask(cluster, ns, app)

    entries = [
        eventually(partial(entry_of, cluster, ns, host), timeout=DEADLINE, what=f"{ns} filled")
        for ns in namespaces
    ]
    user, password = password_of(entries[0])
    assert user == ACR.username
    issued = {item["token"]: item for item in stack.azure.refresh_tokens()}
    assert issued[password]["client_id"] == app.client_id, "a refresh token issued for it"
    annotations = cluster.annotations(namespaces[0])
    assert annotations[FILLED] == f"{stack.azure.tenant}/{app.client_id}"
    assert LAST_ERROR not in annotations
    expires = annotations["pull-secret-updater.chainguard.dev/expires-at"]
    exp = jwt.decode(password, options={"verify_signature": False})["exp"]
    assert expires == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp)), "its own exp"
    assert ACR.pull(stack, entries[0], tmp_path) == 0
    assert all(password_of(e) == (user, password) for e in entries)
    assert (stack.azure.tokens(app.client_id), stack.azure.exchanges(app.client_id)) == (1, 1)
