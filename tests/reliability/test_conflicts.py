"""Another writer edits the same Secret while the controller refreshes it; nobody's edit is lost.

The other writer behaves like a well-mannered client: read, modify, write back with the
resourceVersion it read, and on 409 read again. It changes its own registry entry in
`.dockerconfigjson` and a label, many times, while tokens live six seconds and are refreshed
every few seconds. The controller's merge patch carries a resourceVersion precondition too, so
the outcome must hold both: the writer's last entry and label, and a valid token of ours.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest

from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Json, Start, eventually
from tests.reliability.support import MANAGED, Api, claims, figure, metric

pytestmark = pytest.mark.stack

OTHER_REGISTRY = "registry.example.com"
WRITES = 45
PACE = 0.05
#: Between the writer's read and its write, so that refreshes land in between and cause 409s.
THINK = 0.1


def write_other_entry(api: Api, namespace: str, sequence: int) -> tuple[int, str | None]:
    """One read-modify-write of the writer's entry and label; returns (conflicts, token seen)."""
    conflicts = 0
    while True:
        secret = api.secret(namespace)
        assert secret is not None
        config = api.docker_config(secret)
        auth = base64.b64encode(f"writer:{sequence}".encode()).decode()
        config.setdefault("auths", {})[OTHER_REGISTRY] = {"auth": auth, "sequence": sequence}
        secret["data"][".dockerconfigjson"] = base64.b64encode(json.dumps(config).encode()).decode()
        secret["metadata"].setdefault("labels", {})["writer-sequence"] = str(sequence)
        time.sleep(THINK)
        response = api.http.put(f"/api/v1/namespaces/{namespace}/secrets/{MANAGED}", json=secret)
        if response.status_code == 409:
            conflicts += 1
            continue
        response.raise_for_status()
        return conflicts, api.token(secret)


def test_a_concurrent_writer_and_the_refreshes_both_keep_their_changes(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
) -> None:  # fmt: skip
    token_lifetime(6)
    identity = new_identity("conflict")
    controller = start_controller("conflicts")
    ns = cluster.namespace("conflict")
    cluster.create_pull_secret(ns, identity)
    cluster.wait_filled(ns)

    writer_conflicts, seen = 0, set()
    started = time.monotonic()
    for sequence in range(WRITES):
        conflicts, token = write_other_entry(api, ns, sequence)
        writer_conflicts += conflicts
        seen.add(token)
        time.sleep(PACE)
    figure("conflicts: writer's writes", WRITES)
    figure("conflicts: seconds the writer ran", time.monotonic() - started, "s")
    figure("conflicts: 409s the writer retried", writer_conflicts)
    figure("conflicts: tokens the controller wrote meanwhile", len(seen))
    ours = metric(controller, "pull_secret_updater_secret_writes_total", outcome="conflict")
    figure("conflicts: 409s the controller re-read after", int(ours))
    assert len(seen) >= 2, "no refresh happened while the writer wrote: nothing was tested"

    def valid() -> Json | None:
        """The Secret, once it holds a token of ours that has not expired."""
        looked_at = time.time()
        secret = api.secret(ns)
        return secret if float((claims(api.token(secret)) or {})["exp"]) > looked_at else None

    # Tokens live 6 s: on a slow machine the one in place may just have run out. The
    # controller must keep supplying them after the conflicts.
    secret = eventually(valid, timeout=30, what="a valid token in the Secret")
    config = api.docker_config(secret)
    assert config["auths"][OTHER_REGISTRY]["sequence"] == WRITES - 1
    assert secret["metadata"]["labels"]["writer-sequence"] == str(WRITES - 1)
    token = api.token(secret)
    assert token in stack.token_admin().issued("sts"), "the token is not one the service issued"
    assert (claims(token) or {})["sub"] == identity
    assert controller.process.running()
