"""The controller is killed in the middle of a round of refreshes and a new one starts.

Thirty Secrets share three identities, so a refresh round is a burst of writes; the first
replica gets SIGKILL as soon as it has written the first refreshed token, leaving some
Secrets with the new token and some with the old one. The replacement must leave every
Secret with intact JSON and a valid token, never let one expire, and must not exchange more
than once per identity for the round it finishes.

The exchanges are counted from the tokens the token service issued (whose, and when), not in
a window of the test's clock: each identity's tokens since the kill must be at least one
refresh interval apart. A slow machine moves the next round later; it cannot make two
exchanges of one round look like two rounds.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable

import pytest

from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start, eventually
from tests.reliability.support import (
    Api,
    claims,
    exchanges,
    figure,
    gaps,
    issued_mark,
    issued_since,
    log_records,
)

pytestmark = pytest.mark.stack

LIFETIME = 30
#: Refresh after 25-35 % of the lifetime (7.5-10.5 s): the old tokens outlive the takeover wait.
REFRESH = {"PSU_REFRESH_FRACTION": "0.3", "PSU_REFRESH_JITTER": "0.05"}
#: The soonest a token is due again after it was issued (25 % of its lifetime).
REFRESH_INTERVAL = LIFETIME * 0.25
SECRETS_PER_IDENTITY = 10


def refreshed(controller: ControllerProcess) -> int:
    return sum(
        1
        for r in log_records(controller)
        if r["event"] == "token written" and r.get("why") == "due for refresh"
    )


def test_a_controller_killed_mid_refresh_is_replaced_without_damage_or_a_storm(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
) -> None:  # fmt: skip
    token_lifetime(LIFETIME)
    identities = [new_identity("restart") for _ in range(3)]
    owners = {
        f"restart-{i}-{time.time_ns() % 10**8}": identities[i % len(identities)]
        for i in range(SECRETS_PER_IDENTITY * len(identities))
    }
    cluster.create_pull_secrets(owners)
    first = start_controller("restart-first", env=REFRESH)
    filled = {ns: cluster.wait_filled(ns) for ns in owners}

    eventually(lambda: refreshed(first) > 0, timeout=LIFETIME, interval=0.02,
               what="the first refresh")  # fmt: skip
    first.kill()
    killed, killed_at = time.monotonic(), time.time()
    # An exchange the first replica had sent may still be answered: count from after it.
    admin = stack.token_admin()
    eventually(lambda: not set(admin.stats()["in_flight"]) & set(identities), interval=0.05,
               what="the killed replica's exchanges to be answered")  # fmt: skip
    mark = issued_mark(stack)  # every token issued from here on is the replacement's
    counted_from = exchanges(stack, identities)
    held = {s["metadata"]["namespace"]: api.token(s) for s in api.managed()}
    done = sum(1 for ns in owners if held[ns] != filled[ns])
    figure(f"restart: Secrets refreshed when the controller was killed (of {len(owners)})", done)

    second = start_controller("restart-second", env=REFRESH)

    def all_replaced() -> bool:
        """Every Secret holds a token the replacement obtained (issued after the kill)."""
        looked_at = time.time()
        secrets = {s["metadata"]["namespace"]: s for s in api.managed()}
        replaced = True
        for ns, uid in owners.items():
            token_claims = claims(api.token(secrets[ns])) or {}
            assert float(token_claims["exp"]) > looked_at, f"{ns}: its token expired"
            if token_claims.get("sub") != uid or float(token_claims["iat"]) < killed_at:
                replaced = False
        return replaced

    eventually(all_replaced, timeout=LIFETIME * 2, interval=0.5,
               what="every Secret refreshed by the replacement")  # fmt: skip
    figure("restart: kill -> every Secret holds the replacement's token",
           time.monotonic() - killed, "s")  # fmt: skip
    served = exchanges(stack, identities) - counted_from
    issued = issued_since(stack, identities, mark=mark)
    figure(f"restart: exchanges by the replacement so far ({len(identities)} ids)", served)
    # Every exchange the token service answered since the kill issued one of these (none
    # failed) ...
    assert served <= sum(len(tokens) for tokens in issued.values())
    for uid, tokens in issued.items():
        assert tokens, f"{uid}: no exchange since the kill, yet its Secrets were replaced"
        # ... and each identity's are a refresh interval apart: one exchange per round.
        apart = gaps(tokens)
        assert all(gap >= math.floor(REFRESH_INTERVAL) for gap in apart), (
            f"{uid}: tokens issued {apart} s apart by the replacement: more than one per round"
        )
    first_round = sum(1 for tokens in issued.values() for t in tokens
                      if t.issued_at < tokens[0].issued_at + REFRESH_INTERVAL)  # fmt: skip
    figure(f"restart: exchanges by the replacement for that round ({len(identities)} ids)",
           first_round)  # fmt: skip

    for secret in api.managed():
        ns = secret["metadata"]["namespace"]
        if ns not in owners:
            continue
        config = api.docker_config(secret)  # raises if the JSON is damaged
        entry = config["auths"][stack.registry.host]
        assert entry["username"] == "_token"
        expected = base64.b64encode(f"_token:{entry['password']}".encode()).decode()
        assert entry["auth"] == expected, f"{ns}: auth and password disagree"
    assert second.process.running()
