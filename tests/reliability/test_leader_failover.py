"""Two replicas, one writer at a time: proven from the API server's audit log.

Both replicas act as the same ServiceAccount with the same user agent, but each has its own
token, and the audit log records each token's ID (`authentication.kubernetes.io/credential-id`),
so every request can be attributed to the replica that sent it. A replica's first successful
write of the Lease is the moment it took over; every Secret write of the old leader must come
before it.

The paused leader is the case that matters: a process stopped (SIGSTOP) for longer than the
lease, while the other replica takes over, then resumed (SIGCONT). Its own clock tells it its
renewal is overdue, so it must not write a single thing once it runs again, not even the
refresh it was in the middle of when it was stopped.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start, eventually, unique
from tests.reliability.support import (
    CONTROLLER_USER,
    Api,
    AuditRecord,
    audit_records,
    claims,
    controller_jti,
    figure,
    log_records,
    metric,
)

pytestmark = pytest.mark.stack

LEASE_DURATION = 4.0  # PSU_LEASE_DURATION in tests/conftest.py
RETRY_PERIOD = 0.5  # PSU_RETRY_PERIOD
JITTER = 0.2  # kube.leader.JITTER: waits are stretched by up to this share
LIFETIME = 6  # tokens are refreshed every few seconds: the leader is always about to write
EXCHANGE_DELAY = 1.5
#: Slack for scheduling on a shared machine, on top of the protocol's own bound.
SLACK = 1.0


def holder(stack: LocalStack) -> str:
    lease = Api(stack)
    try:
        response = lease.http.get(
            "/apis/coordination.k8s.io/v1/namespaces/pull-secret-updater/leases/pull-secret-updater"
        )
        response.raise_for_status()
        return str(response.json()["spec"].get("holderIdentity") or "")
    finally:
        lease.close()


def leads(stack: LocalStack, replica: ControllerProcess) -> bool:
    return holder(stack).startswith(f"{replica.name}_")


def by(records: list[AuditRecord], replica: ControllerProcess) -> list[AuditRecord]:
    """The requests sent with this replica's token (both replicas are the same user)."""
    jti = controller_jti(replica)
    return [r for r in records if r.user == CONTROLLER_USER and r.jti == jti]


def secret_writes(records: list[AuditRecord]) -> list[AuditRecord]:
    return [r for r in records if r.resource == "secrets" and r.is_write]


def first_acquisition(records: list[AuditRecord]) -> float:
    """When the replica's first successful Lease write (its takeover) was received."""
    taken = [
        r.received
        for r in records
        if r.resource == "leases" and r.verb in ("create", "update") and r.code in (200, 201)
    ]
    assert taken, "the replica never wrote the Lease"
    return min(taken)


def managed_secrets(cluster: ClusterHelper, identity: str, count: int) -> list[str]:
    return cluster.create_pull_secrets({unique(f"failover-{i}"): identity for i in range(count)})


def two_replicas(
    stack: LocalStack, start_controller: Start, prefix: str
) -> tuple[ControllerProcess, ControllerProcess]:
    first = start_controller(f"{prefix}-a")
    eventually(lambda: leads(stack, first), timeout=15, what=f"{first.name} to lead")
    second = start_controller(f"{prefix}-b")
    return first, second


@pytest.mark.parametrize("how", ["kill", "graceful-stop"])
def test_the_standby_takes_over_and_the_old_leader_wrote_only_before(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str], how: str,
) -> None:  # fmt: skip
    token_lifetime(LIFETIME)
    since = time.time()
    old, new = two_replicas(stack, start_controller, f"failover-{how}")
    namespaces = managed_secrets(cluster, new_identity("failover"), 3)
    for ns in namespaces:
        cluster.wait_filled(ns)  # the old leader's writes

    ended = time.time()
    if how == "kill":
        old.kill()
    else:
        old.stop()
    eventually(lambda: leads(stack, new), timeout=LEASE_DURATION * 3, what="the takeover")
    taken_over = cluster.token(namespaces[0])  # the new leader refreshes it
    cluster.wait_filled(namespaces[0], other_than=taken_over, timeout=LIFETIME * 2)

    records = audit_records(stack, since=since)
    old_records, new_records = by(records, old), by(records, new)
    acquired = first_acquisition(new_records)
    old_writes, new_writes = secret_writes(old_records), secret_writes(new_records)
    assert old_writes, "the old leader wrote nothing: nothing was tested"
    assert new_writes, "the new leader wrote nothing"
    assert max(w.completed for w in old_writes) < acquired, "the old leader wrote after takeover"
    assert min(w.received for w in new_writes) >= acquired, "the standby wrote before leading"

    last_renewal = max(
        r.completed for r in old_records if r.resource == "leases" and r.verb == "update"
    )
    figure(f"failover[{how}] process end -> standby holds the Lease", acquired - ended, "s")
    figure(f"failover[{how}] last renewal by the old leader -> takeover",
           acquired - last_renewal, "s")  # fmt: skip
    if how == "kill":
        # The standby sees the last renewal within one (jittered) retry period, waits a lease
        # duration from then, and takes over at its next attempt.
        bound = LEASE_DURATION + 2 * RETRY_PERIOD * (1 + JITTER) + SLACK
        assert acquired - last_renewal <= bound
    else:
        # A released Lease is taken at the standby's next attempt, long before it would expire.
        assert acquired - ended < LEASE_DURATION
    assert new.process.running()


def test_a_paused_leader_writes_nothing_after_it_resumes(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
) -> None:  # fmt: skip
    token_lifetime(LIFETIME)
    since = time.time()
    old, new = two_replicas(stack, start_controller, "paused")
    identities = [new_identity("paused"), new_identity("paused")]
    namespaces = managed_secrets(cluster, identities[0], 2)
    namespaces += managed_secrets(cluster, identities[1], 2)
    for ns in namespaces:
        cluster.wait_filled(ns)
    admin = stack.token_admin()
    # Exchanges now take 1.5 s (within the 2 s exchange timeout): stop the leader while one
    # is open, so that the exchange, and the write that would follow it, are in flight.
    admin.set_fault("slow", delay=EXCHANGE_DELAY)
    eventually(lambda: set(admin.stats()["in_flight"]) & set(identities), timeout=LIFETIME * 2,
               interval=0.05, what="an exchange by the leader")  # fmt: skip
    exchanged = metric(old, "pull_secret_updater_exchanges_total")
    written_before = metric(old, "pull_secret_updater_secret_writes_total")
    paused = time.time()
    os.kill(old.process.pid, signal.SIGSTOP)
    try:
        eventually(lambda: leads(stack, new), timeout=LEASE_DURATION * 3, what="the takeover")
        written = {ns: cluster.token(ns) for ns in namespaces}
        cluster.wait_filled(namespaces[0], other_than=written[namespaces[0]],
                            timeout=LIFETIME * 2)  # fmt: skip
    finally:
        resumed = time.time()
        os.kill(old.process.pid, signal.SIGCONT)
    figure("paused leader: seconds it was stopped", resumed - paused, "s")
    time.sleep(LIFETIME * 2 / 3)  # the old leader's due work comes up: it must not act on it
    admin.clear_faults()

    logs = [r for r in log_records(old) if r["at"] >= resumed]
    assert not [r for r in logs if r["event"] == "token written"], "wrote after resuming"
    stepped_down = [r for r in logs if r["event"] == "stopped leading"]
    assert stepped_down, "the resumed leader did not notice it had lost the Lease"
    figure("paused leader: SIGCONT -> it logs that it stopped leading",
           stepped_down[0]["at"] - resumed, "s")  # fmt: skip
    # A follower never exchanges, so what the old leader finished after resuming was in flight.
    in_flight = metric(old, "pull_secret_updater_exchanges_total") - exchanged
    figure("paused leader: exchanges in flight when it was stopped", int(in_flight))
    assert in_flight >= 1, "the leader was not stopped mid-exchange: the case was not tested"
    assert metric(old, "pull_secret_updater_secret_writes_total") == written_before

    records = audit_records(stack, since=since)
    old_records, new_records = by(records, old), by(records, new)
    acquired = first_acquisition(new_records)
    late = [r for r in old_records if r.is_write and r.received >= resumed]
    assert not late, f"the resumed leader sent writes: {late}"
    old_writes = secret_writes(old_records)
    assert old_writes, "the old leader wrote nothing before it was stopped: nothing was tested"
    assert max(w.completed for w in old_writes) < acquired
    figure("paused leader: SIGSTOP -> the other replica holds the Lease", acquired - paused, "s")

    for ns in namespaces:
        token_claims = claims(cluster.token(ns)) or {}
        assert float(token_claims["exp"]) > time.time(), f"{ns}: no valid token at the end"
    assert old.process.running()
    assert new.process.running()
