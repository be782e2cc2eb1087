"""The controller against the real API server and token service, one behaviour per test.

What must happen eventually is waited for with generous deadlines; what must not happen is
shown by counts and by order (which tokens were issued, who took the Lease how), not by
racing the test's clock. Times are printed as figures (pytest -s).
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from tests.helpers import (
    LAST_ERROR,
    ClusterHelper,
    NewIdentity,
    Start,
    apply_all,
    eventually,
    pull_secret_manifest,
    unique,
)
from tests.reliability.support import figure, gaps, issued_since, log_records

pytestmark = pytest.mark.stack

#: For what must happen eventually: far beyond what it should take, even on a loaded machine.
DEADLINE = 60.0
#: One worker reconciles the queue in order: a Secret queued last is done last.
ONE_WORKER = {"PSU_WORKERS": "1"}


def _wait_leading(controller: ControllerProcess) -> None:
    eventually(lambda: "became leader; reconciling every managed Secret"
               in [r["event"] for r in log_records(controller)], timeout=DEADLINE,
               what=f"{controller.name} to lead")  # fmt: skip


def _fill_sentinel(cluster: ClusterHelper, new_identity: NewIdentity) -> None:
    """Create a Secret (of an identity of its own) and wait until it is filled: with
    ONE_WORKER, every Secret queued before it has then been reconciled, to the end."""
    sentinel = cluster.namespace("sentinel")
    cluster.create_pull_secret(sentinel, new_identity("sentinel"))
    cluster.wait_filled(sentinel, timeout=DEADLINE)


def _event_counts(cluster: ClusterHelper, namespace: str) -> list[tuple[str, str, int]]:
    """(type, reason, count) of each Event in `namespace` (repeats are counted, not added)."""
    return sorted((e["type"], e["reason"], int(e.get("count") or 1))
                  for e in cluster.events(namespace))  # fmt: skip


def test_fifty_secrets_sharing_two_identities_cost_two_exchanges_per_window(
    cluster: ClusterHelper, start_controller: Start, token_lifetime: Callable[[int], None],
    new_identity: NewIdentity,
) -> None:  # fmt: skip
    lifetime = 30
    token_lifetime(lifetime)
    identities = [new_identity("shared") for _ in range(2)]
    owners = {unique(f"fifty-{i}"): identities[i % 2] for i in range(50)}
    namespaces = cluster.create_pull_secrets(owners)
    start_controller()
    first = cluster.wait_all_filled(namespaces, timeout=DEADLINE)
    # One refresh window later every Secret holds a newer token.
    second = cluster.wait_all_filled(namespaces, other_than=first, timeout=DEADLINE)

    # Counted by the tokens themselves, not within a window of the test's clock: each
    # identity's first token is what its 25 Secrets held after the fill, its second what they
    # held after the refresh, and any later one is the next refresh, a refresh interval later
    # (at least 56 % of the lifetime, the refresh fraction less its jitter).
    served = [cluster.exchanges(uid) for uid in identities]
    issued = issued_since(cluster.stack, identities)
    for uid, count in zip(identities, served, strict=True):
        assert count <= len(issued[uid]), f"{uid}: a failed exchange"
        assert len(issued[uid]) >= 2
        assert all(gap >= math.floor(lifetime * 0.56) for gap in gaps(issued[uid][1:]))
    assert first == {ns: issued[uid][0].token for ns, uid in owners.items()}
    assert second == {ns: issued[uid][1].token for ns, uid in owners.items()}


def test_other_registry_entries_and_keys_are_kept(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
) -> None:  # fmt: skip
    start_controller()
    ns = cluster.namespace("others")
    other_entry = {"auth": "dXNlcjpwYXNz", "email": "a@b.c"}
    other = {"auths": {"registry.example.com": other_entry}, "credHelpers": {"gcr.io": "gcloud"}}
    cluster.create_pull_secret(ns, installed, config=json.dumps(other))
    cluster.wait_filled(ns)
    config = cluster.docker_config(ns)
    assert config["auths"]["registry.example.com"] == other_entry
    assert config["credHelpers"] == other["credHelpers"]
    assert set(config["auths"]) == {"registry.example.com", stack.registry.host}


def test_a_secret_in_a_namespace_created_after_start_is_filled(
    cluster: ClusterHelper, start_controller: Start, installed: str, tmp_path: Path
) -> None:
    start_controller()
    ns = cluster.namespace("late")
    cluster.create_pull_secret(ns, installed)
    cluster.wait_filled(ns)
    assert cluster.pull(cluster.docker_config(ns), tmp_path) == 0
    eventually(lambda: "Filled" in cluster.event_reasons(ns), what="the Filled Event")
    assert LAST_ERROR not in cluster.annotations(ns)


def test_the_controller_account_cannot_read_a_secret_of_another_name(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start
) -> None:
    controller = start_controller()
    ns = cluster.namespace("forbidden")
    cluster.kubectl("-n", ns, "create", "secret", "generic", "db-password", "--from-literal=p=x")
    denied = stack.control_plane.kubectl(
        f"--kubeconfig={controller.kubeconfig}", "-n", ns, "get", "secret", "db-password",
        check=False,
    )  # fmt: skip
    assert denied == ""
    for verb in ("get", "list"):
        out = cluster.kubectl(
            "auth", "can-i", verb, "secrets/db-password", "-n", ns,
            "--as=system:serviceaccount:pull-secret-updater:controller", check=False,
        )  # fmt: skip
        assert out.strip() == "no"
    assert cluster.kubectl(
        "auth", "can-i", "update", "secrets/pull-secret", "-n", ns,
        "--as=system:serviceaccount:pull-secret-updater:controller",
    ).strip() == "yes"  # fmt: skip


def test_the_policy_denies_an_identity_outside_its_namespaces(
    cluster: ClusterHelper, start_controller: Start, new_identity: NewIdentity, tmp_path: Path
) -> None:
    installed = new_identity("policy")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n- identities: ['{installed}']\n  namespaces: ['allowed-*']\n")
    start_controller(env={"PSU_POLICY_FILE": str(policy)})
    allowed, denied = cluster.namespace("allowed"), cluster.namespace("denied")
    before = cluster.exchanges(installed)
    cluster.create_pull_secret(denied, installed)
    cluster.create_pull_secret(allowed, installed)
    cluster.wait_filled(allowed)
    error = eventually(lambda: cluster.annotations(denied).get(LAST_ERROR), what="policy error")
    assert "may not be used in namespace" in error
    eventually(lambda: "PolicyDenied" in cluster.event_reasons(denied), what="the Warning")
    assert cluster.token(denied) is None
    assert cluster.exchanges(installed) - before == 1, "only the allowed Secret costs one"


@pytest.mark.parametrize(
    ("secret_type", "config", "annotation", "reason"),
    [
        pytest.param("Opaque", "{}", None, "WrongType", id="wrong-type"),
        # The API server itself refuses a dockerconfigjson Secret whose value is not a JSON
        # object; what it lets through and the controller must handle is a wrong shape inside.
        pytest.param(None, '{"auths": "text"}', None, "MalformedDockerConfig", id="auths-string"),
        pytest.param(
            None, '{"auths": {"x.io": 5}}', None, "MalformedDockerConfig", id="entry-not-object"
        ),
        pytest.param(None, '{"auths": []}', None, "MalformedDockerConfig", id="auths-list"),
        pytest.param(None, "{}", " ", "BadAnnotation", id="whitespace-annotation"),
        pytest.param(None, "{}", "bad identity!", "BadAnnotation", id="invalid-characters"),
    ],
)
def test_bad_input_gets_a_warning_and_no_hot_loop(
    cluster: ClusterHelper, start_controller: Start, new_identity: NewIdentity,
    secret_type: str | None, config: str, annotation: str | None, reason: str,
) -> None:  # fmt: skip
    identity = new_identity("bad")  # no other Secret uses it: its exchanges are this test's
    controller = start_controller(env=ONE_WORKER)
    _wait_leading(controller)
    ns = cluster.namespace("bad")
    apply_all(cluster, [pull_secret_manifest(
        ns, annotation if annotation is not None else identity, config=config,
        secret_type=secret_type or "kubernetes.io/dockerconfigjson",
    )])  # fmt: skip
    eventually(lambda: reason in cluster.event_reasons(ns), timeout=DEADLINE,
               what=f"a {reason} Event")  # fmt: skip
    if reason == "WrongType":
        # config/'s admission policy keeps the controller off Secrets of another type, its
        # status annotations included: the Event is the report.
        assert LAST_ERROR not in cluster.annotations(ns)
    else:
        error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), what="an error status")
        assert "eyJ" not in error
    version = (cluster.secret(ns) or {})["metadata"]["resourceVersion"]
    # No hot loop: by the time a Secret created now is filled, the controller has also handled
    # the watch event of its own status write, which is what would start a loop of writes.
    _fill_sentinel(cluster, new_identity)
    assert (cluster.secret(ns) or {})["metadata"]["resourceVersion"] == version
    data = (cluster.secret(ns) or {}).get("data", {})
    assert base64.b64decode(next(iter(data.values()))).decode() == config, "content changed"
    assert _event_counts(cluster, ns) == [("Warning", reason, 1)], "reported more than once"
    assert cluster.exchanges(identity) == 0
    # Looked at once, or twice when the watch brought its status write before the write's
    # answer (the second time writes and reports nothing).
    looks = [r for r in log_records(controller)
             if r["event"] == "Secret not filled" and r.get("namespace") == ns]  # fmt: skip
    assert 1 <= len(looks) <= 2, f"looked at {len(looks)} times"
    assert controller.process.running()


def test_an_exchange_failure_keeps_the_token_reports_and_recovers(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: NewIdentity,
) -> None:  # fmt: skip
    token_lifetime(12)
    installed = new_identity("outage")  # no long-lived token cached for it
    start_controller()
    ns = cluster.namespace("outage")
    cluster.create_pull_secret(ns, installed)
    token = cluster.wait_filled(ns)
    stack.token_admin().set_fault("status", status=503)
    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                       what="the error status")  # fmt: skip
    assert "503" in error
    assert cluster.token(ns) == token, "a failed refresh changed the credential"
    eventually(lambda: "ExchangeFailed" in cluster.event_reasons(ns), what="the Warning")
    stack.token_admin().clear_faults()
    cluster.wait_filled(ns, other_than=token, timeout=DEADLINE)
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), what="the error to clear")


def test_a_restarted_controller_does_not_mint_again(
    cluster: ClusterHelper, start_controller: Start, new_identity: NewIdentity
) -> None:
    # An identity of its own: Secrets of earlier tests may legitimately need new tokens.
    identity = new_identity("restart")
    first = start_controller("first")
    namespaces = [cluster.namespace("restart") for _ in range(3)]
    for ns in namespaces:
        cluster.create_pull_secret(ns, identity)
    tokens = [cluster.wait_filled(ns) for ns in namespaces]
    first.stop()
    before = cluster.exchanges(identity)
    events = {ns: _event_counts(cluster, ns) for ns in namespaces}
    second = start_controller("second", env=ONE_WORKER)
    # Once it leads it queues every Secret; a Secret created after that is filled only once
    # the worker has reconciled them all.
    _wait_leading(second)
    _fill_sentinel(cluster, new_identity)
    assert cluster.exchanges(identity) == before
    assert [cluster.token(ns) for ns in namespaces] == tokens
    assert {ns: _event_counts(cluster, ns) for ns in namespaces} == events
    assert not [r for r in log_records(second)
                if r["event"] == "token written" and r.get("namespace") in namespaces]  # fmt: skip


def test_the_tokenrequest_source_fills_too(
    cluster: ClusterHelper, start_controller: Start, installed: str
) -> None:
    start_controller(env={"PSU_TOKEN_SOURCE": "tokenrequest", "PSU_TOKEN_PATH": "/nonexistent"})
    ns = cluster.namespace("tokenrequest")
    cluster.create_pull_secret(ns, installed)
    cluster.wait_filled(ns)


def _holder(stack: LocalStack) -> str:
    out = stack.control_plane.kubectl(
        "-n", "pull-secret-updater", "get", "lease", "pull-secret-updater", "-o", "json"
    )  # fmt: skip
    lease = json.loads(out)
    return str(lease["spec"].get("holderIdentity") or "")


def test_a_standby_takes_over_when_the_leader_dies(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
) -> None:  # fmt: skip
    a = start_controller("replica-a")
    eventually(lambda: _holder(stack).startswith("replica-a"), timeout=DEADLINE,
               what="replica-a to lead")  # fmt: skip
    b = start_controller("replica-b")
    ns = cluster.namespace("failover")
    cluster.create_pull_secret(ns, installed)
    cluster.wait_filled(ns)
    assert _holder(stack).startswith("replica-a")

    a.kill()
    killed = time.monotonic()
    eventually(lambda: _holder(stack).startswith("replica-b"), timeout=DEADLINE,
               what="takeover")  # fmt: skip
    figure("failover: leader killed -> the standby holds the Lease",
           time.monotonic() - killed, "s")  # fmt: skip
    late = cluster.namespace("failover")
    cluster.create_pull_secret(late, installed)
    cluster.wait_filled(late)
    assert b.process.running()

    # A graceful stop releases the Lease: a new replica takes it at its first attempt, where
    # an unreleased one would have made it wait for the Lease to expire.
    b.stop()
    assert "released the leader Lease" in [r["event"] for r in log_records(b)]
    c = start_controller("replica-c")
    stopped = time.monotonic()
    eventually(lambda: _holder(stack).startswith("replica-c"), timeout=DEADLINE,
               what="handover")  # fmt: skip
    figure("failover: replica-c started -> it holds the released Lease",
           time.monotonic() - stopped, "s")  # fmt: skip
    events = [r["event"] for r in log_records(c)]
    assert "waiting for the leader Lease" not in events, "replica-c had to wait for the Lease"
    assert c.process.running()


def test_metrics_and_probes_report_the_state(
    cluster: ClusterHelper, start_controller: Start, new_identity: NewIdentity
) -> None:
    identity = new_identity("metrics")
    # The shortest-lived token in the cluster, so the earliest expiry is this Secret's; still
    # too long-lived to be refreshed during the test.
    cluster.stack.token_admin().set_identity_lifetime(identity, 300)
    controller = start_controller()
    ns = cluster.namespace("metrics")
    cluster.create_pull_secret(ns, identity)
    token = cluster.wait_filled(ns)
    claims = jwt.decode(token, options={"verify_signature": False})

    def sample(name: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(controller.metrics()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    assert sample("pull_secret_updater_exchanges_total", provider="chainguard",
                  outcome="success") == 1  # fmt: skip
    # No label holds what a tenant wrote: no identity, namespace or Secret name.
    scraped = controller.metrics()
    assert identity not in scraped
    assert ns not in scraped
    # Gauges are refreshed every couple of seconds.
    eventually(lambda: (sample("pull_secret_updater_managed_secrets") or 0) >= 1,
               what="the managed Secrets gauge")  # fmt: skip
    assert sample("pull_secret_updater_leader") == 1
    assert (sample("pull_secret_updater_exchange_duration_seconds_count") or 0) >= 1

    def expiry_agrees() -> bool:
        """The gauge is the token's exp less the time of its last update, which came after
        the token was issued (iat) and before the scrape."""
        gauge = sample("pull_secret_updater_earliest_expiry_seconds")
        scraped = time.time()
        return (
            gauge is not None and claims["exp"] - scraped <= gauge <= claims["exp"] - claims["iat"]
        )

    # Until the controller has this Secret in its gauge, the gauge tells of other Secrets.
    eventually(expiry_agrees, what=f"the expiry gauge to agree with the token's exp "
               f"{claims['exp']} (iat {claims['iat']})")  # fmt: skip
    assert token not in controller.metrics()
    with httpx2.Client(timeout=5) as client:
        assert client.get(f"{controller.metrics_url}/healthz").status_code == 200
        assert client.get(f"{controller.metrics_url}/readyz").status_code == 200
