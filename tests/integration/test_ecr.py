"""The ECR provider against the real API server and the local AWS (moto behind a front that
checks what AWS checks), with a registry that takes only the passwords that AWS issued. What
every cloud provider does alike (a refused role, a planted credential, short lifetimes,
throttling, namespace-scoped refusals) is in test_clouds.py.

- A Secret asking for cgr.dev and ECR gets both entries, and each pulls from its registry; one
  AssumeRoleWithWebIdentity and one GetAuthorizationToken serve all the Secrets of a role.
- An ECR outage ending shortly before the passwords expire is bridged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually
from tests.integration.clouds import (
    DEADLINE,
    ECR,
    ask_ecr,
    entry_of,
    password_of,
    start_with,
)
from tests.reliability.support import exchanges_logged

pytestmark = pytest.mark.stack

FILLED = "ecr.pull-secret-updater.chainguard.dev/filled-identity"


@pytest.fixture
def controller_role(stack: LocalStack) -> Callable[[], str]:
    """Creates a role that trusts the controller's ServiceAccount; returns its ARN."""
    return lambda: ECR.puller(stack).arn


def test_one_secret_gets_a_cgr_and_an_ecr_entry_and_pulls_from_both(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
    controller_role: Callable[[], str], tmp_path: Path,
) -> None:  # fmt: skip
    role = controller_role()
    host = stack.aws.registry_host
    start_with(ECR, stack, start_controller, "ecr-both")
    namespaces = [cluster.namespace("ecr-both") for _ in range(3)]
    for ns in namespaces:
        cluster.create_pull_secret(ns, installed)
        ask_ecr(cluster, ns, role, host)

    for ns in namespaces:
        eventually(partial(entry_of, cluster, ns, host), timeout=DEADLINE,
                   what=f"the ECR entry of {ns}")  # fmt: skip
        cluster.wait_filled(ns)
    entry = entry_of(cluster, namespaces[0], host)
    assert entry is not None
    user, password = password_of(entry)
    assert user == "AWS"
    issued = {item["password"]: item for item in stack.aws.passwords()}
    assert issued[password]["role_arn"] == role, "a password the stand-in issued for the role"
    assert issued[password]["account"] == stack.aws.account
    annotations = cluster.annotations(namespaces[0])
    assert annotations[FILLED] == role
    assert annotations["pull-secret-updater.chainguard.dev/filled-identity"] == installed
    assert LAST_ERROR not in annotations
    # Both entries pull from their registries.
    assert ECR.pull(stack, entry, tmp_path) == 0
    chainguard = cluster.docker_config(namespaces[0])["auths"][stack.registry.host]
    assert cluster.pull({"auths": {stack.registry.host: chainguard}}, tmp_path) == 0
    # One exchange (STS then ECR) for the role, however many Secrets ask for it.
    assert all(password_of(entry_of(cluster, ns, host) or {}) == (user, password)
               for ns in namespaces)  # fmt: skip
    assert (stack.aws.assumed(role), stack.aws.authorizations(role)) == (1, 1)


def test_an_ecr_outage_ending_shortly_before_expiry_is_bridged(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_role: Callable[[], str],
) -> None:  # fmt: skip
    """ECR answers 503 from the refresh point until 10 s before the passwords expire, under
    the default backoff (base 1 s, cap 300 s): the retries close in on the expiry, no Secret
    ever holds an expired password, and the three Secrets of the role share one new one."""
    role = controller_role()
    host = stack.aws.registry_host
    lifetime, ends_before = 60, 10.0
    namespaces = [cluster.namespace("ecr-bridge") for _ in range(3)]
    stack.aws.set_ecr_token_lifetime(lifetime)
    try:
        for ns in namespaces:
            cluster.create_pull_secret(ns, None)
            ask_ecr(cluster, ns, role, host)
        env = {"PSU_REFRESH_FRACTION": "0.1", "PSU_REFRESH_JITTER": "0.03",
               "PSU_BACKOFF_BASE": "1", "PSU_BACKOFF_CAP": "300"}  # fmt: skip
        controller = start_with(ECR, stack, start_controller, "ecr-bridge", env=env)
        before = {
            ns: eventually(partial(entry_of, cluster, ns, host), timeout=DEADLINE, what=ns)
            for ns in namespaces
        }
        issued = {item["password"]: item for item in stack.aws.passwords()}
        expiry = min(issued[password_of(entry)[1]]["expires_at"] for entry in before.values())
        stack.aws.set_fault("unavailable", api="ecr")
        try:
            while time.time() < expiry - ends_before:
                for ns in namespaces:
                    assert entry_of(cluster, ns, host) == before[ns], "changed during the outage"
                time.sleep(0.2)
            failed = sum(
                1 for r in exchanges_logged(controller, [role]) if r.get("outcome") != "success"
            )
        finally:
            stack.aws.clear_faults()
        assert time.time() < expiry - ends_before / 2, "the machine is too slow for this test"
        assert failed >= 2, "the controller tried during the outage"

        refreshed: set[str] = set()
        while refreshed != set(namespaces):
            for ns in set(namespaces) - refreshed:
                looked_at = time.time()
                if entry_of(cluster, ns, host) != before[ns]:
                    refreshed.add(ns)
                else:
                    assert looked_at < expiry, f"{ns} held an expired password"
            time.sleep(0.1)
        after = {password_of(entry_of(cluster, ns, host) or {})[1] for ns in namespaces}
        assert len(after) == 1, "the Secrets of the role share one new password"
    finally:
        stack.aws.set_ecr_token_lifetime(None)
