"""A token service outage shorter than the tokens' remaining lifetime costs the users nothing.

Each fault the local token service can inject is held from just before the Secrets' refresh
point until every Secret has reported it for a while, then cleared. Tokens live 40 s and are
refreshed after 22-28 % of that, so the outage starts well before the refresh point even on a
slow machine, and ends long before expiry: the credential in place when the fault went in
must stay, unexpired, the retries must back off, the failure must be visible (Warning Event,
`last-error`), and the first retry after the recovery must bring every Secret a fresh token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start, eventually
from tests.reliability.support import (
    LAST_ERROR,
    Api,
    attempted_exchanges,
    claims,
    exchanges,
    exchanges_logged,
    figure,
)

pytestmark = pytest.mark.stack

LIFETIME = 40
#: Refresh after 22-28 % of the lifetime: 8.8-11.2 s after issue, so the fault goes in first.
REFRESH = {"PSU_REFRESH_FRACTION": "0.25", "PSU_REFRESH_JITTER": "0.03"}
REFRESH_MARGIN = 3.0  # PSU_REFRESH_MARGIN in tests/conftest.py
#: For the recovery: one backoff cap (4 s) and the retry itself, with room for a slow machine.
RECOVERY_DEADLINE = 30.0
#: How long the fault stays on after every Secret has reported it, so retries pile up.
HOLD_AFTER_REPORTED = 2.0
HOT_LOOP_INTERVAL = 0.1


def failed_exchanges(controller: ControllerProcess, identities: list[str]) -> int:
    """Exchanges the controller attempted for these identities that did not succeed."""
    logged = exchanges_logged(controller, identities)
    return sum(1 for record in logged if record.get("outcome") != "success")


@pytest.mark.parametrize(
    ("mode", "options", "words"),
    [
        pytest.param("refuse", {}, ("could not reach",), id="refused-connections"),
        pytest.param("status", {"status": 503}, ("503",), id="503"),
        # Slower than PSU_EXCHANGE_TIMEOUT (2 s): the controller gives up on each answer.
        pytest.param("slow", {"delay": 5.0}, ("timed out", "did not answer"), id="slow"),
        pytest.param("malformed", {}, ("not JSON",), id="malformed-json"),
        pytest.param("expired", {}, ("expired",), id="expired-token"),
        pytest.param("no_exp", {}, ("no exp",), id="token-without-exp"),
        pytest.param("garbage_token", {}, ("cannot be trusted",), id="garbage-token"),
    ],
)
def test_an_outage_keeps_valid_tokens_backs_off_reports_and_recovers(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
    mode: str, options: dict[str, Any], words: tuple[str, ...],
) -> None:  # fmt: skip
    token_lifetime(LIFETIME)
    identities = [new_identity("outage"), new_identity("outage")]
    namespaces = [f"outage-{mode.replace('_', '-')}-{i}-{time.time_ns() % 10**6}" for i in range(3)]
    owners = dict(zip(namespaces, [identities[0], identities[0], identities[1]], strict=True))
    cluster.create_pull_secrets(owners)
    controller = start_controller(f"outage-{mode}", env=REFRESH)
    for ns in namespaces:
        cluster.wait_filled(ns)

    admin = stack.token_admin()
    admin.set_fault(mode, **options)
    injected = time.monotonic()
    # The credentials in place when the outage began: normally the first ones, unless the
    # machine was slow enough for a refresh to come first (then those stay instead).
    before = {ns: api.token(api.secret(ns)) for ns in namespaces}
    # The outage must end before the refresh margin before the first of them expires.
    end_by = min(float((claims(t) or {})["exp"]) for t in before.values()) - REFRESH_MARGIN
    figure(f"outage[{mode}] first token issued -> fault injected",
           time.time() - min(float((claims(t) or {})["iat"]) for t in before.values()),
           "s")  # fmt: skip
    attempted_from = attempted_exchanges(controller, identities)
    served_from = exchanges(stack, identities)
    reported: dict[str, float] = {}
    errors: dict[str, str] = {}
    versions: dict[str, set[str]] = {ns: set() for ns in namespaces}
    try:
        while len(reported) < len(namespaces) or (
            time.monotonic() - max(reported.values()) < HOLD_AFTER_REPORTED
        ):
            assert time.time() < end_by - HOLD_AFTER_REPORTED, (
                f"not every Secret reported the fault in time: {errors}"
            )
            for ns in namespaces:
                looked_at = time.time()
                secret = api.secret(ns)
                versions[ns].add(api.resource_version(secret))
                token = api.token(secret)
                assert token == before[ns], f"{ns}: the credential changed during the outage"
                assert float((claims(token) or {})["exp"]) > looked_at, "the token expired"
                error = api.annotations(secret).get(LAST_ERROR)
                if error is not None:
                    reported.setdefault(ns, time.monotonic())
                    errors[ns] = error
            time.sleep(0.2)
        during = attempted_exchanges(controller, identities) - attempted_from
        served = exchanges(stack, identities) - served_from
        window = time.monotonic() - injected
    finally:
        admin.clear_faults()
    cleared = time.monotonic()
    failed_before = failed_exchanges(controller, identities)

    hot_loop = len(namespaces) * window / HOT_LOOP_INTERVAL
    # NB: the controller's own count includes attempts a refused connection kept from the service.
    figure(f"outage[{mode}] exchanges attempted during a {window:.1f} s outage (3 Secrets)", during)
    figure(f"outage[{mode}] exchanges seen by the token service in that time", served)
    assert 0 < during < hot_loop / 4, f"{during} exchanges in {window:.1f}s: no backoff"
    # Status writes and Events: one each per Secret, unless the message changes per attempt.
    writes = sum(len(v) - 1 for v in versions.values())
    warnings = sum(len(api.warnings(ns)) for ns in namespaces)
    figure(f"outage[{mode}] status writes to the 3 Secrets during the outage", writes)
    figure(f"outage[{mode}] Warning Events for the 3 Secrets", warnings)
    assert writes < hot_loop / 4, f"{writes} status writes in {window:.1f}s"
    for ns, error in errors.items():
        assert any(word in error for word in words), f"{ns}: unclear last-error {error!r}"
        assert "eyJ" not in error
        assert api.warned(ns, "ExchangeFailed")

    recovered: dict[str, float] = {}

    def all_fresh() -> bool:
        for ns in namespaces:
            if ns in recovered:
                continue
            secret = api.secret(ns)
            token = api.token(secret)
            if token != before[ns] and LAST_ERROR not in api.annotations(secret):
                assert float((claims(token) or {})["exp"]) > time.time()
                recovered[ns] = time.monotonic() - cleared
        return len(recovered) == len(namespaces)

    eventually(all_fresh, timeout=RECOVERY_DEADLINE, interval=0.1,
               what="every Secret refreshed and its error cleared")  # fmt: skip
    figure(f"outage[{mode}] recovery after the fault cleared (slowest of 3)",
           max(recovered.values()), "s")  # fmt: skip
    # The first retry after the recovery succeeded: the only failures since are of exchanges
    # that were already under way (one per identity at most, as exchanges are shared).
    assert failed_exchanges(controller, identities) - failed_before <= len(identities)
    assert controller.process.running()


#: The backoff of a default install (1 s doubling up to 300 s), under which the growing waits
#: of a long outage would carry the retries past the expiry.
DEFAULT_BACKOFF = {"PSU_BACKOFF_BASE": "1", "PSU_BACKOFF_CAP": "300"}
BRIDGE_LIFETIME = 60
#: Refresh after 7-13 % of the lifetime (4-8 s after issue): about 45 s of outage follow.
BRIDGE_REFRESH = {"PSU_REFRESH_FRACTION": "0.1", "PSU_REFRESH_JITTER": "0.03"}
#: The outage ends this long before the first of the tokens in place expires.
ENDS_BEFORE_EXPIRY = 10.0
#: Identities with one Secret each: nothing but its own retries can refresh it in time.
ALONE = 3
#: The Secrets of the shared identity: the first to get a token brings it to the others.
SHARED = 6


def test_an_outage_ending_shortly_before_expiry_is_bridged_before_any_token_expires(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
) -> None:  # fmt: skip
    """Refreshes fail from the refresh point until 10 s before expiry, six or more attempts
    each. The waits of the backoff alone would by then be 16-32 s, and for a Secret alone
    with its identity the next try would miss that last 10 s more often than not (about 60 %
    of the time). The retries close in on the expiry instead: no Secret ever holds an expired
    token, and the six Secrets of one identity share one new token."""
    token_lifetime(BRIDGE_LIFETIME)
    suffix = time.time_ns() % 10**6
    alone = {f"bridge-alone-{i}-{suffix}": new_identity("bridge") for i in range(ALONE)}
    shared_identity = new_identity("bridge")
    shared = {f"bridge-shared-{i}-{suffix}": shared_identity for i in range(SHARED)}
    owners = alone | shared
    identities = sorted(set(owners.values()))
    cluster.create_pull_secrets(owners)
    controller = start_controller("bridge", env={**BRIDGE_REFRESH, **DEFAULT_BACKOFF})
    for ns in owners:
        cluster.wait_filled(ns)

    admin = stack.token_admin()
    admin.set_fault("status", status=503)
    injected = time.monotonic()
    attempted_from = attempted_exchanges(controller, identities)
    before = {ns: api.token(api.secret(ns)) for ns in owners}
    expiry = {ns: float((claims(t) or {})["exp"]) for ns, t in before.items()}
    end_at = min(expiry.values()) - ENDS_BEFORE_EXPIRY
    reported: set[str] = set()
    try:
        while time.time() < end_at:
            for ns in owners:
                secret = api.secret(ns)
                assert api.token(secret) == before[ns], f"{ns}: changed during the outage"
                if LAST_ERROR in api.annotations(secret):
                    reported.add(ns)
            time.sleep(0.2)
        # Nothing succeeds while the fault is on: the count to compare with comes from now.
        served_from = {uid: exchanges(stack, [uid], outcomes=["ok"]) for uid in identities}
        during = attempted_exchanges(controller, identities) - attempted_from
        window = time.monotonic() - injected
    finally:
        admin.clear_faults()
    assert time.time() < min(expiry.values()) - ENDS_BEFORE_EXPIRY / 2, (
        "the outage ended too late to test anything: the machine is too slow for this test"
    )
    assert reported == set(owners), "every Secret tried and failed during the outage"
    figure(f"bridged outage: exchanges attempted in {window:.0f} s ({len(owners)} Secrets)",
           during)  # fmt: skip
    assert during < len(owners) * window / HOT_LOOP_INTERVAL / 4, "no backoff"

    refreshed: dict[str, tuple[float, float]] = {}  # when, and the validity the old had left
    while len(refreshed) < len(owners):
        for ns in set(owners) - set(refreshed):
            looked_at = time.time()
            token = api.token(api.secret(ns))
            if token != before[ns]:
                refreshed[ns] = (looked_at, expiry[ns] - looked_at)
            else:
                assert looked_at < expiry[ns], f"{ns} held an expired token: no retry came"
        time.sleep(0.1)
    figure("bridged outage: least validity left when a Secret was seen refreshed",
           min(left for _, left in refreshed.values()), "s")  # fmt: skip
    seen = [when for ns, (when, _) in refreshed.items() if ns in shared]
    figure(f"bridged outage: first to last of the {SHARED} Secrets of one identity seen refreshed",
           max(seen) - min(seen), "s")  # fmt: skip
    assert len({api.token(api.secret(ns)) for ns in shared}) == 1, "one new token, shared"
    for uid in identities:
        assert exchanges(stack, [uid], outcomes=["ok"]) - served_from[uid] == 1, uid
    assert controller.process.running()
