"""Short-lived tokens are refreshed early enough that a Secret never holds an expired one.

The settings promise it: refresh_margin must be at least exchange_timeout, because "a refresh
started at the margin must be able to finish before the token expires". Here tokens live 6 s
(the controller accepts anything above PSU_MIN_TOKEN_LIFETIME, 4 s), the margin is 3 s and
every exchange takes 1.5 s, well within the 2 s exchange timeout: each refresh should start
3 s after issue and end half-way between that and the expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start
from tests.reliability.support import Api, claims, figure

pytestmark = pytest.mark.stack

LIFETIME = 6
EXCHANGE_DELAY = 1.5
SAMPLED = 11.0  # more than one refresh cycle (5 s + 1.5 s)


def test_a_secret_never_holds_an_expired_token_while_the_service_answers_in_time(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
) -> None:  # fmt: skip
    token_lifetime(LIFETIME)
    controller = start_controller("short-lifetimes")
    ns = cluster.namespace("short")
    cluster.create_pull_secret(ns, new_identity("short"))
    cluster.wait_filled(ns)
    admin = stack.token_admin()
    admin.set_fault("slow", delay=EXCHANGE_DELAY)
    samples, expired, worst = 0, 0, 0.0
    try:
        deadline = time.monotonic() + SAMPLED
        while time.monotonic() < deadline:
            token_claims = claims(api.token(api.secret(ns))) or {}
            late = time.time() - float(token_claims["exp"])
            samples += 1
            if late >= 0:
                expired, worst = expired + 1, max(worst, late)
            time.sleep(0.05)
    finally:
        admin.clear_faults()
    figure(f"short lifetimes: samples with an expired token (of {samples})", expired)
    figure("short lifetimes: longest time a Secret held an expired token", worst, "s")
    assert controller.process.running()
    assert expired == 0
