"""The controller is killed in the middle of a round of refreshes and a new one starts.

Thirty Secrets share three identities, so a refresh round is a burst of writes; the first
replica gets SIGKILL as soon as it has written the first refreshed token, leaving some
Secrets with the new token and some with the old one. The replacement must leave every
Secret with intact JSON and a valid token, and must not exchange more than once per identity
for the round it finishes.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest

from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start, eventually
from tests.reliability.support import Api, claims, exchanges, figure, log_records

pytestmark = pytest.mark.stack

LIFETIME = 20
#: Refresh after 25-35 % of the lifetime (5-7 s): the old tokens outlive the takeover wait.
REFRESH = {"PSU_REFRESH_FRACTION": "0.3", "PSU_REFRESH_JITTER": "0.05"}
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
    counted_from = exchanges(stack, identities)
    tokens = {s["metadata"]["namespace"]: api.token(s) for s in api.managed()}
    done = sum(1 for ns in owners if tokens[ns] != filled[ns])
    figure(f"restart: Secrets refreshed when the controller was killed (of {len(owners)})", done)

    second = start_controller("restart-second", env=REFRESH)

    def all_replaced() -> bool:
        """Every Secret holds a token the replacement obtained (issued after the kill)."""
        secrets = {s["metadata"]["namespace"]: s for s in api.managed()}
        for ns, uid in owners.items():
            token_claims = claims(api.token(secrets[ns])) or {}
            if token_claims.get("sub") != uid or float(token_claims["iat"]) < killed_at:
                return False
            assert float(token_claims["exp"]) > time.time(), f"{ns}: its token expired"
        return True

    eventually(all_replaced, timeout=LIFETIME, what="every Secret refreshed by the replacement")
    figure("restart: kill -> every Secret holds the replacement's token",
           time.monotonic() - killed, "s")  # fmt: skip
    # The round is complete and the next cannot start before 25 % of a lifetime has passed.
    after = exchanges(stack, identities) - counted_from
    figure(f"restart: exchanges by the replacement for that round ({len(identities)} ids)", after)
    assert after <= len(identities)

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
