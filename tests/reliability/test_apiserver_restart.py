"""The API server goes away and comes back; the controller misses nothing and does not stampede.

Two gaps: a plain restart (watches are cut and resumed), and a restart during which etcd is
written to and compacted, so the resourceVersion the controller resumes from is gone and it
must list again (410 Gone). Secrets are created and annotated right after the API server is
back, while the controller is still reconnecting with backoff.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable

import httpx2
import pytest

from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start, unique
from tests.reliability.support import exchanges, figure, log_records

pytestmark = pytest.mark.stack

#: Generous: the controller's watch retries back off up to 30 s while the server is away.
RECONNECT_TIMEOUT = 60.0


def churn_and_compact_etcd(stack: LocalStack, *, writes: int = 50) -> int:
    """Advance etcd's revision with keys outside the API server's prefix, then compact."""
    control_plane = stack.control_plane
    with httpx2.Client(timeout=10.0) as etcd:
        for i in range(writes):
            key = base64.b64encode(f"/psu-reliability/churn/{i}".encode()).decode()
            value = base64.b64encode(uuid.uuid4().bytes).decode()
            etcd.post(f"{control_plane.etcd_url}/v3/kv/put", json={"key": key, "value": value})
    return control_plane.compact_etcd()


@pytest.mark.parametrize("compact", [False, True], ids=["restart", "restart-with-compaction"])
def test_secrets_changed_while_the_apiserver_was_away_are_filled_without_a_storm(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    new_identity: Callable[[str], str], compact: bool,
) -> None:  # fmt: skip
    identities = [new_identity("gap"), new_identity("gap")]
    variant = "compaction" if compact else "restart"
    controller = start_controller(f"gap-{variant}")
    filled = [cluster.namespace("gap") for _ in range(2)]
    for ns in filled:
        cluster.create_pull_secret(ns, identities[0])
    tokens = {ns: cluster.wait_filled(ns) for ns in filled}
    annotated_later = cluster.namespace("gap")
    cluster.create_pull_secret(annotated_later, None)
    counted_from = exchanges(stack, identities)

    control_plane = stack.control_plane
    stopped, went_down = time.monotonic(), time.time()
    if compact:
        control_plane.apiserver.stop()
        churn_and_compact_etcd(stack)
        control_plane.start_apiserver()
    else:
        control_plane.restart_apiserver()
    back = time.monotonic()
    figure(f"apiserver[{variant}] time the API server was away", back - stopped, "s")

    created = cluster.create_pull_secrets(
        {unique(f"gap-new-{i}"): uid for i, uid in enumerate(identities)}
    )
    cluster.annotate(annotated_later, identities[1])
    for ns in [*created, annotated_later]:
        cluster.wait_filled(ns, timeout=RECONNECT_TIMEOUT)
    figure(f"apiserver[{variant}] API server back -> every new Secret filled",
           time.monotonic() - back, "s")  # fmt: skip

    time.sleep(2)  # a storm, if there is one, starts with the relist
    assert [cluster.token(ns) for ns in filled] == [tokens[ns] for ns in filled]
    after = exchanges(stack, identities) - counted_from
    figure(f"apiserver[{variant}] exchanges after the gap ({len(identities)} identities)", after)
    assert after <= len(identities)
    assert controller.process.running()
    records = log_records(controller)
    assert [r["event"] for r in records].count("starting") == 1, "the controller restarted"
    relists = [r for r in records if r["event"] == "relisting Secrets" and r["at"] >= went_down]
    figure(f"apiserver[{variant}] relists after the gap", len(relists))
    if compact:
        assert relists, "the resourceVersion was compacted away, yet no relist happened"
