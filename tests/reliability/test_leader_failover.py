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

Nothing here is a race against the test's clock. A takeover is waited for with a generous
deadline, and how it happened is read from the audit log: after a kill, the standby took the
Lease no sooner than a lease duration after the last renewal, and within a bounded number of
its own attempts; after a graceful stop, the old leader logged the release and the standby
took the Lease at its next attempt, while the last renewal (made with a lease far longer than
any slow machine needs) was still in force. The times are printed as figures.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Json, Start, eventually, unique
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
#: For the graceful stop: a takeover within this long after the last renewal proves a release.
LONG_LEASE = 30
LIFETIME = 6  # tokens are refreshed every few seconds: the leader is always about to write
EXCHANGE_DELAY = 1.5
#: For what must happen eventually (a takeover, a refresh): far beyond what it should take.
DEADLINE = 60.0
#: Audit times are wall-clock, the elector's waits monotonic: allow for the clock's slewing.
CLOCK_SLEW = 0.05


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


def lease_writes(records: list[AuditRecord]) -> list[AuditRecord]:
    """The successful writes of the Lease (acquisitions, renewals, a release), in order."""
    return sorted(
        (r for r in records
         if r.resource == "leases" and r.verb in ("create", "update") and r.code in (200, 201)),
        key=lambda r: r.received,
    )  # fmt: skip


def lease_reads(records: list[AuditRecord], *, after: float, until: float) -> int:
    """How many times the Lease was read in that span: one per attempt of a standby."""
    return sum(
        1
        for r in records
        if r.resource == "leases" and r.verb == "get" and after < r.received <= until
    )


def first_acquisition(records: list[AuditRecord]) -> float:
    """When the replica's first successful Lease write (its takeover) was received."""
    taken = lease_writes(records)
    assert taken, "the replica never wrote the Lease"
    return taken[0].received


def managed_secrets(cluster: ClusterHelper, identity: str, count: int) -> list[str]:
    return cluster.create_pull_secrets({unique(f"failover-{i}"): identity for i in range(count)})


def two_replicas(
    stack: LocalStack, start_controller: Start, prefix: str, env: dict[str, str] | None = None
) -> tuple[ControllerProcess, ControllerProcess]:
    first = start_controller(f"{prefix}-a", env=env)
    eventually(lambda: leads(stack, first), timeout=DEADLINE, what=f"{first.name} to lead")
    second = start_controller(f"{prefix}-b", env=env)
    return first, second


@pytest.mark.parametrize("how", ["kill", "graceful-stop"])
def test_the_standby_takes_over_and_the_old_leader_wrote_only_before(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str], how: str,
) -> None:  # fmt: skip
    token_lifetime(LIFETIME)
    since = time.time()
    # A killed leader's Lease has to expire: a short one. A released one must not have to.
    env = {"PSU_LEASE_DURATION": str(LONG_LEASE)} if how == "graceful-stop" else None
    old, new = two_replicas(stack, start_controller, f"failover-{how}", env)
    namespaces = managed_secrets(cluster, new_identity("failover"), 3)
    for ns in namespaces:
        cluster.wait_filled(ns, timeout=DEADLINE)  # the old leader's writes

    ended = time.time()
    if how == "kill":
        old.kill()
    else:
        old.stop()
    eventually(lambda: leads(stack, new), timeout=DEADLINE, what="the takeover")
    taken_over = cluster.token(namespaces[0])  # the new leader refreshes it
    cluster.wait_filled(namespaces[0], other_than=taken_over, timeout=DEADLINE)

    records = audit_records(stack, since=since)
    old_records, new_records = by(records, old), by(records, new)
    acquired = first_acquisition(new_records)
    old_writes, new_writes = secret_writes(old_records), secret_writes(new_records)
    assert old_writes, "the old leader wrote nothing: nothing was tested"
    assert new_writes, "the new leader wrote nothing"
    assert max(w.completed for w in old_writes) < acquired, "the old leader wrote after takeover"
    assert min(w.received for w in new_writes) >= acquired, "the standby wrote before leading"

    old_leases = lease_writes(old_records)
    figure(f"failover[{how}] process end -> standby holds the Lease", acquired - ended, "s")
    if how == "kill":
        last_renewal = old_leases[-1]
        figure(f"failover[{how}] last renewal by the old leader -> takeover",
               acquired - last_renewal.received, "s")  # fmt: skip
        # Not before the Lease expired: the standby times it from when it saw the renewal,
        # which was after the renewal was received.
        assert acquired - last_renewal.received >= LEASE_DURATION - CLOCK_SLEW, (
            "the standby took over a Lease that had not expired"
        )
        # Nor much later: its attempts are at least a retry period apart, so there are at most
        # this many from the one that saw the last renewal (or the one after, if a read was
        # answered with the record before it) to the one that took over; fewer on a slow
        # machine, never more. Waiting a second lease duration would take twice as many.
        attempts = lease_reads(new_records, after=last_renewal.completed, until=acquired)
        figure(f"failover[{how}] standby attempts from the last renewal to the takeover",
               attempts)  # fmt: skip
        assert attempts <= LEASE_DURATION / RETRY_PERIOD + 3
    else:
        events = [r["event"] for r in log_records(old)]
        assert "released the leader Lease" in events, "the old leader did not release the Lease"
        release, last_renewal = old_leases[-1], old_leases[-2]
        figure(f"failover[{how}] release by the old leader -> takeover",
               acquired - release.received, "s")  # fmt: skip
        assert release.received < acquired
        # Taken over while the old leader's last renewal was still in force: only a release
        # allows that.
        assert acquired - last_renewal.received < LONG_LEASE, "the Lease expired instead"
        # At the standby's next attempt after the release (two if one crossed it).
        attempts = lease_reads(new_records, after=release.completed, until=acquired)
        figure(f"failover[{how}] standby attempts from the release to the takeover", attempts)
        assert attempts <= 2
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
        cluster.wait_filled(ns, timeout=DEADLINE)
    admin = stack.token_admin()
    # Exchanges now take 1.5 s (within the 2 s exchange timeout): stop the leader while one
    # is open, so that the exchange, and the write that would follow it, are in flight.
    admin.set_fault("slow", delay=EXCHANGE_DELAY)
    eventually(lambda: set(admin.stats()["in_flight"]) & set(identities), timeout=DEADLINE,
               interval=0.05, what="an exchange by the leader")  # fmt: skip
    exchanged = metric(old, "pull_secret_updater_exchanges_total")
    written_before = metric(old, "pull_secret_updater_secret_writes_total")
    paused = time.time()
    os.kill(old.process.pid, signal.SIGSTOP)
    try:
        eventually(lambda: leads(stack, new), timeout=DEADLINE, what="the takeover")
        written = {ns: cluster.token(ns) for ns in namespaces}
        cluster.wait_filled(namespaces[0], other_than=written[namespaces[0]],
                            timeout=DEADLINE)  # fmt: skip
    finally:
        resumed = time.time()
        os.kill(old.process.pid, signal.SIGCONT)
    figure("paused leader: seconds it was stopped", resumed - paused, "s")

    def stepped_down() -> list[Json]:
        return [r for r in log_records(old) if r["at"] >= resumed
                and r["event"] == "stopped leading"]  # fmt: skip

    # Its own clock tells it its renewal is overdue.
    noticed = eventually(stepped_down, timeout=DEADLINE,
                         what="the resumed leader to notice it lost the Lease")  # fmt: skip
    figure("paused leader: SIGCONT -> it logs that it stopped leading",
           noticed[0]["at"] - resumed, "s")  # fmt: skip
    # A follower never exchanges, so what the old leader finished after resuming was in flight.
    in_flight = eventually(
        lambda: metric(old, "pull_secret_updater_exchanges_total") - exchanged,
        timeout=DEADLINE,
        what="the end of the exchange the leader was stopped in (none: the case was not tested)",
    )  # fmt: skip
    figure("paused leader: exchanges in flight when it was stopped", int(in_flight))
    time.sleep(LIFETIME * 2 / 3)  # the old leader's due work comes up: it must not act on it
    admin.clear_faults()

    logs = [r for r in log_records(old) if r["at"] >= resumed]
    assert not [r for r in logs if r["event"] == "token written"], "wrote after resuming"
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

    def all_valid() -> bool:
        looked_at = time.time()
        return all(float((claims(cluster.token(ns)) or {})["exp"]) > looked_at
                   for ns in namespaces)  # fmt: skip

    # The new leader keeps every Secret supplied.
    eventually(all_valid, timeout=DEADLINE, what="a valid token in every Secret")
    assert old.process.running()
    assert new.process.running()
