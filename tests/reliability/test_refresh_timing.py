"""Short-lived tokens are refreshed early enough that a Secret never holds an expired one.

The settings promise it: refresh_margin must be at least exchange_timeout, because "a refresh
started at the margin must be able to finish before the token expires". Here tokens live 12 s,
the margin is 6 s, the exchange timeout 4 s, and every exchange takes 2.5 s, well within that
timeout; the refresh fraction alone would come too late (85-95 % of the lifetime), so it is
the margin that must start each refresh, 6 s after issue, to end 3.5 s before the expiry.

These are twice the usual test timings (tests/conftest.py): what is shown is the rule, and a
loaded machine gets seconds rather than fractions of one for everything around the exchange
(waking up on time, verifying, writing).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start
from tests.reliability.support import Api, claims, figure

pytestmark = pytest.mark.stack

LIFETIME = 12
EXCHANGE_DELAY = 2.5
TIMINGS = {
    "PSU_REFRESH_MARGIN": "6",
    "PSU_EXCHANGE_TIMEOUT": "4",
    "PSU_REFRESH_FRACTION": "0.9",
    "PSU_REFRESH_JITTER": "0.05",
}
SAMPLED = 20.0  # more than two refresh cycles (6 s + 2.5 s each)


def test_a_secret_never_holds_an_expired_token_while_the_service_answers_in_time(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
) -> None:  # fmt: skip
    token_lifetime(LIFETIME)
    controller = start_controller("short-lifetimes", env=TIMINGS)
    ns = cluster.namespace("short")
    cluster.create_pull_secret(ns, new_identity("short"))
    cluster.wait_filled(ns)
    admin = stack.token_admin()
    admin.set_fault("slow", delay=EXCHANGE_DELAY)
    samples, expired, worst = 0, 0, 0.0
    held: dict[str, float] = {}  # each token seen, with its expiry
    least_left = float(LIFETIME)  # the least time a token had left when its successor was seen
    try:
        deadline = time.monotonic() + SAMPLED
        while time.monotonic() < deadline:
            # Compared with the time before the read: a slow answer is no expired token.
            looked_at = time.time()
            token = api.token(api.secret(ns))
            assert token is not None
            expires = float((claims(token) or {})["exp"])
            if token not in held:
                if held:
                    least_left = min(least_left, list(held.values())[-1] - looked_at)
                held[token] = expires
            late = looked_at - expires
            samples += 1
            if late >= 0:
                expired, worst = expired + 1, max(worst, late)
            time.sleep(0.05)
    finally:
        admin.clear_faults()
    figure(f"short lifetimes: samples with an expired token (of {samples})", expired)
    figure("short lifetimes: longest time a Secret held an expired token", worst, "s")
    figure(f"short lifetimes: least time left on a token when replaced ({len(held) - 1} times)",
           least_left, "s")  # fmt: skip
    assert len(held) >= 2, "no refresh while sampling: nothing was tested"
    assert controller.process.running()
    assert expired == 0
