"""What every cloud provider (ECR, Artifact Registry, ACR) does alike, against the real API
server and each cloud's local stand-in (see `clouds.Cloud`); what is a cloud's own is in its
test_<kind>.py.

- An identity that does not trust the controller: the cloud's refusal in `last-error` and a
  Warning, no token in either, nothing issued or written; once it trusts the controller,
  filled.
- A planted credential (a genuine one this controller did not obtain, with the vendor's SDK,
  or a made-up one) is replaced.
- Short-lived credentials are refreshed before they expire.
- Throttling (ECR's, IAM Credentials') is retried with backoff until it passes.
- Namespace-scoped: an identity trusting one namespace's ServiceAccount is refused for another
  by the cloud itself.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually
from tests.integration.clouds import (
    CLOUDS,
    CONTROLLER_SUBJECT,
    DEADLINE,
    EXPIRES_AT,
    THROTTLED,
    Cloud,
    entry_of,
    planted_config,
    replaced_entry,
    start_with,
)
from tests.integration.test_namespace_scoped import (  # noqa: F401 (fixtures)
    SCOPED,
    SCOPED_SA,
    as_controller,
    namespace_scoped,
)
from tests.reliability.support import exchanges_logged

pytestmark = pytest.mark.stack

#: What must never show in an error or an Event: a JWT, a Google access token.
TOKEN_PREFIXES = ("eyJ", "ya29.")


@pytest.fixture(params=CLOUDS, ids=lambda cloud: cloud.kind)
def cloud(request: pytest.FixtureRequest) -> Cloud[Any]:
    return request.param  # type: ignore[no-any-return]


def test_an_identity_that_does_not_trust_the_controller_is_refused_in_the_clouds_words(
    cloud: Cloud[Any], stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    identity = cloud.trusting(stack, "system:serviceaccount:elsewhere:someone")
    host = cloud.host(stack)
    start_with(cloud, stack, start_controller, f"{cloud.kind}-refused")
    ns = cluster.namespace(f"{cloud.kind}-refused")
    cluster.create_pull_secret(ns, None)
    cloud.ask(cluster, ns, identity)

    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                       what="last-error")  # fmt: skip
    for word in cloud.refusal:
        assert word in error
    for prefix in TOKEN_PREFIXES:
        assert prefix not in error
    assert host not in cluster.docker_config(ns).get("auths", {}), "nothing was written"
    assert cloud.issued(stack, identity) == 0, "nothing was issued"
    warnings = [e for e in cluster.events(ns) if e["type"] == "Warning"]
    assert any(cloud.refusal[0] in e["message"] for e in warnings)
    assert all(p not in e["message"] for e in warnings for p in TOKEN_PREFIXES)
    assert cloud.refused_calls(stack, identity) >= 1

    # The identity is made to trust the controller: the Secret is filled, the error cleared.
    cloud.trust(stack, identity, CONTROLLER_SUBJECT)
    eventually(lambda: entry_of(cluster, ns, host), timeout=DEADLINE, what="filled once trusted")
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), timeout=DEADLINE,
               what="last-error cleared")  # fmt: skip


def test_a_planted_credential_is_replaced_even_a_genuine_one(
    cloud: Cloud[Any], stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    tmp_path: Path,
) -> None:  # fmt: skip
    identity = cloud.puller(stack)
    host = cloud.host(stack)
    # Valid, and still not ours to keep.
    planted = cloud.genuine(stack, identity, tmp_path)
    assert cloud.pull(stack, {"username": cloud.username, "password": planted}, tmp_path) == 0

    start_with(cloud, stack, start_controller, f"{cloud.kind}-planted")
    for candidate in (planted, cloud.made_up):
        ns = cluster.namespace(f"{cloud.kind}-planted")
        config = planted_config(host, cloud.username, candidate)
        cluster.create_pull_secret(ns, None, config=config)
        cloud.ask(cluster, ns, identity)
        replaced = eventually(
            partial(replaced_entry, cluster, ns, host, candidate),
            timeout=DEADLINE,
            what="the planted credential replaced",
        )
        assert isinstance(replaced, dict)
        assert cloud.pull(stack, replaced, tmp_path) == 0


def test_short_lived_credentials_are_refreshed_before_they_expire(
    cloud: Cloud[Any], stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    identity = cloud.puller(stack)
    host = cloud.host(stack)
    lifetime = cloud.short_lifetime
    cloud.set_lifetime(stack, lifetime)
    try:
        start_with(cloud, stack, start_controller, f"{cloud.kind}-short")
        ns = cluster.namespace(f"{cloud.kind}-short")
        cluster.create_pull_secret(ns, None)
        cloud.ask(cluster, ns, identity)
        first = eventually(lambda: entry_of(cluster, ns, host), timeout=DEADLINE, what="filled")
        filled_at = time.time()
        expires = cluster.annotations(ns)[EXPIRES_AT]

        def refreshed() -> dict[str, Any] | None:
            entry = entry_of(cluster, ns, host)
            assert time.time() < filled_at + lifetime, "the credential expired before its refresh"
            return entry if entry is not None and entry != first else None

        eventually(refreshed, timeout=lifetime + 10,
                   what="a new credential before the first expires")  # fmt: skip
        assert cluster.annotations(ns)[EXPIRES_AT] > expires
    finally:
        cloud.set_lifetime(stack, None)


@pytest.mark.parametrize("cloud", THROTTLED, ids=lambda cloud: cloud.kind)
def test_throttling_is_retried_with_backoff_until_it_passes(
    cloud: Cloud[Any], stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    throttled = cloud.throttled
    assert throttled is not None
    identity = cloud.puller(stack)
    host = cloud.host(stack)
    ns = cluster.namespace(f"{cloud.kind}-throttled")
    cluster.create_pull_secret(ns, None)
    cloud.ask(cluster, ns, identity)
    cloud.standin(stack).set_fault("throttle", api=throttled.api)
    try:
        controller = start_with(cloud, stack, start_controller, f"{cloud.kind}-throttled")
        error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                           what="the throttling reported")  # fmt: skip
        assert throttled.words in error
        started = time.monotonic()
        time.sleep(6)
        tried = len(exchanges_logged(controller, [cloud.want_identity(stack, identity)]))
        window = time.monotonic() - started + 6
    finally:
        cloud.standin(stack).clear_faults()
    # Backoff: base 0.5 s, doubling, capped at 4 s (the tests' settings), so a handful of
    # attempts in the window, not the hundreds of a retry loop.
    assert 2 <= tried <= window, f"{tried} attempts in {window:.0f} s"
    eventually(lambda: entry_of(cluster, ns, host), timeout=DEADLINE, what="filled")
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), timeout=DEADLINE,
               what="last-error cleared")  # fmt: skip
    assert cloud.issued(stack, identity) == 1
    assert any(throttled.words in e["message"] for e in cluster.events(ns))


@pytest.mark.usefixtures("namespace_scoped")
def test_an_identity_trusting_one_namespace_is_refused_to_another_by_the_cloud_itself(
    cloud: Cloud[Any], stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    host = cloud.host(stack)
    team_a = cluster.namespace(f"{cloud.kind}-team-a")
    team_b = cluster.namespace(f"{cloud.kind}-team-b")
    for ns in (team_a, team_b):
        cluster.kubectl("-n", ns, "create", "serviceaccount", SCOPED_SA)
    identity = cloud.trusting(stack, f"system:serviceaccount:{team_a}:{SCOPED_SA}")
    start_with(cloud, stack, start_controller, f"{cloud.kind}-scoped", env=SCOPED)
    for ns in (team_a, team_b):
        cluster.create_pull_secret(ns, None)
        cloud.ask(cluster, ns, identity)

    eventually(lambda: entry_of(cluster, team_a, host), timeout=DEADLINE, what="team-a filled")
    error = eventually(lambda: cluster.annotations(team_b).get(LAST_ERROR), timeout=DEADLINE,
                       what="team-b refused")  # fmt: skip
    assert cloud.refusal[0] in error
    assert host not in cluster.docker_config(team_b).get("auths", {})
    assert cloud.refused_calls(stack, identity) >= 1
