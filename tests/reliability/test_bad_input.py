"""Bad input, and Secrets the controller cannot finish, beyond what tests/integration covers.

For each case: a clear message (the Event reason and the words of `last-error`, or a log line
where no Event can be recorded), the process keeps running, nothing loops (writes and
exchanges over a few seconds stay bounded), and a healthy Secret created alongside is filled.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from devstack.cluster import SERVICE_ACCOUNT_ISSUER, KubectlError
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper, Start, apply_all, eventually, pull_secret_manifest
from tests.reliability.support import (
    LAST_ERROR,
    MANAGED,
    Api,
    audit_records,
    claims,
    exchanges,
    figure,
    log_records,
    metric,
)

pytestmark = pytest.mark.stack

#: How long a Secret is watched for a hot loop once its failure has been reported.
WINDOW = 4.0
#: Writes or exchanges per second that no backoff in these settings would reach.
HOT = 1.0
SECRET_LIMIT = 1024 * 1024  # bytes of data a Secret may hold (the API server's limit)


@dataclass(frozen=True)
class Watched:
    writes: int
    exchanges: int


def watch_for_a_hot_loop(
    stack: LocalStack, api: Api, namespace: str, identity: str | None, *, name: str = MANAGED
) -> Watched:
    """Resource-version changes of the Secret and exchanges for `identity` over WINDOW."""
    counted_from = exchanges(stack, [identity] if identity else [])
    versions = {api.resource_version(api.secret(namespace, name))}
    deadline = time.monotonic() + WINDOW
    while time.monotonic() < deadline:
        time.sleep(0.2)
        versions.add(api.resource_version(api.secret(namespace, name)))
    return Watched(
        writes=len(versions) - 1,
        exchanges=exchanges(stack, [identity] if identity else []) - counted_from,
    )


def filled(api: Api, namespace: str) -> dict[str, Any] | None:
    secret = api.secret(namespace)
    return secret if api.token(secret) else None


@pytest.fixture
def healthy(cluster: ClusterHelper, new_identity: Callable[[str], str]) -> Callable[[], str]:
    """Creates a healthy Secret in a namespace of its own, all with one identity."""
    identity = new_identity("healthy")

    def create() -> str:
        ns = cluster.namespace("healthy")
        cluster.create_pull_secret(ns, identity)
        return ns

    return create


def unknown_identity() -> str:
    return f"{secrets.token_hex(20)}/{secrets.token_hex(8)}"


def rejecting_identity(stack: LocalStack) -> str:
    """An identity that trusts another ServiceAccount: the token service answers 403."""
    return stack.token_admin().create_identity(
        name=f"other-sa-{secrets.token_hex(3)}",
        issuer=SERVICE_ACCOUNT_ISSUER,
        subject="system:serviceaccount:other:sa",
        issuer_keys=json.dumps(stack.control_plane.jwks()),
        roles=["registry.pull"],
    )


@pytest.mark.parametrize(
    ("case", "reason", "words"),
    [
        pytest.param(
            "overlong", "BadAnnotation", ("300 characters", "256"), id="overlong-annotation"
        ),
        pytest.param("empty", "BadAnnotation", ("is empty",), id="empty-annotation"),
        pytest.param(
            "rejected", "ExchangeFailed", ("403", "does not match"), id="identity-rejects-us"
        ),
        pytest.param("unknown", "ExchangeFailed", ("404", "not found"), id="unknown-identity"),
        pytest.param(
            "garbage", "ExchangeFailed", ("cannot be trusted", "not a JWT"), id="garbage-token"
        ),
    ],
)
def test_bad_input_is_reported_once_and_not_retried_hot(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    healthy: Callable[[], str], new_identity: Callable[[str], str],
    case: str, reason: str, words: tuple[str, ...],
) -> None:  # fmt: skip
    controller = start_controller(f"bad-{case}")
    cluster.wait_filled(healthy())
    identity = {
        "overlong": "a" * 300,
        "empty": "",
        "rejected": rejecting_identity(stack),
        "unknown": unknown_identity(),
        "garbage": new_identity("garbage"),
    }[case]
    admin = stack.token_admin()
    if case == "garbage":
        admin.set_fault("garbage_token")
    try:
        ns = cluster.namespace("bad")
        apply_all(cluster, [pull_secret_manifest(ns, identity)])
        alongside = healthy()
        error = eventually(lambda: api.annotations(api.secret(ns)).get(LAST_ERROR),
                           what="the error status")  # fmt: skip
        cluster.wait_filled(alongside)
        watched = watch_for_a_hot_loop(stack, api, ns, identity)
    finally:
        admin.clear_faults()
    figure(f"bad input[{case}] writes to the Secret in {WINDOW:g} s after the report",
           watched.writes)  # fmt: skip
    figure(f"bad input[{case}] exchanges in those {WINDOW:g} s", watched.exchanges)
    assert all(word in error for word in words), error
    assert reason in api.warnings(ns)
    assert watched.writes <= 1
    assert watched.exchanges <= WINDOW * HOT
    assert api.token(api.secret(ns)) is None
    assert controller.process.running()


def test_a_secret_too_full_for_the_token_reports_the_failed_write(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    healthy: Callable[[], str], installed: str,
) -> None:  # fmt: skip
    controller = start_controller("bad-too-large")
    cluster.wait_filled(healthy())
    ns = cluster.namespace("large")
    # The data fits with room for a few hundred bytes; the token entry needs about 1.5 KB.
    filler = SECRET_LIMIT - len("{}") - 300
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": MANAGED, "namespace": ns, "annotations": {
            "pull-secret-updater.chainguard.dev/identity": installed}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {
            ".dockerconfigjson": base64.b64encode(b"{}").decode(),
            "filler": base64.b64encode(b"x" * filler).decode(),
        },
    }  # fmt: skip
    since = time.time()
    api.http.post(f"/api/v1/namespaces/{ns}/secrets", json=body).raise_for_status()
    alongside = healthy()
    error = eventually(lambda: api.annotations(api.secret(ns)).get(LAST_ERROR),
                       what="the error status")  # fmt: skip
    cluster.wait_filled(alongside)
    watched = watch_for_a_hot_loop(stack, api, ns, installed)
    attempts = [
        r for r in audit_records(stack, since=since)
        if r.resource == "secrets" and r.namespace == ns and r.verb == "patch" and r.code >= 400
    ]  # fmt: skip
    figure("bad input[too-large] refused writes of the token since creation", len(attempts))
    figure(f"bad input[too-large] writes to the Secret in {WINDOW:g} s after the report",
           watched.writes)  # fmt: skip
    assert "writing the Secret failed" in error
    assert "Too long" in error or "1048576" in error, error
    assert "WriteFailed" in api.warnings(ns)
    assert watched.writes <= 1
    assert len(attempts) <= (time.time() - since) * HOT + 2
    assert api.token(api.secret(ns)) is None
    assert controller.process.running()


def test_a_secret_deleted_and_recreated_during_its_refresh_gets_filled(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    token_lifetime: Callable[[int], None], new_identity: Callable[[str], str],
) -> None:  # fmt: skip
    token_lifetime(6)  # refreshed every few seconds
    identity = new_identity("recreated")
    controller = start_controller("bad-recreated")
    ns = cluster.namespace("recreated")
    cluster.create_pull_secret(ns, identity)
    cluster.wait_filled(ns)
    old = api.secret(ns)
    assert old is not None
    admin = stack.token_admin()
    admin.set_fault("slow", delay=1.5)  # the refresh's exchange now takes 1.5 s
    try:
        eventually(lambda: identity in admin.stats()["in_flight"], timeout=30, interval=0.05,
                   what="the refresh's exchange")  # fmt: skip
        api.http.delete(f"/api/v1/namespaces/{ns}/secrets/{MANAGED}").raise_for_status()
        recreated = pull_secret_manifest(ns, identity)
        api.http.post(f"/api/v1/namespaces/{ns}/secrets", json=recreated).raise_for_status()

        def refilled() -> tuple[float, dict[str, Any]] | None:
            looked_at = time.time()
            secret = filled(api, ns)
            return (looked_at, secret) if secret else None

        seen_at, new = eventually(refilled, timeout=30, what="the recreated Secret filled")
    finally:
        admin.clear_faults()
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert float((claims(api.token(new)) or {})["exp"]) > seen_at, "filled with an expired token"
    assert LAST_ERROR not in api.annotations(new)
    watched = watch_for_a_hot_loop(stack, api, ns, None)
    figure(f"bad input[recreated] writes in {WINDOW:g} s after the refill", watched.writes)
    assert watched.writes <= 2  # a refresh every few seconds at most
    # The refresh of the deleted incarnation ends in a 409 or a 404, never in a write.
    events = [r["event"] for r in log_records(controller)]
    figure("bad input[recreated] refreshes that found the Secret gone (404)",
           events.count("Secret deleted before it could be filled"))  # fmt: skip
    conflicts = metric(controller, "pull_secret_updater_secret_writes_total", outcome="conflict")
    figure("bad input[recreated] refreshes that found it replaced (409)", int(conflicts))
    assert controller.process.running()


def test_a_secret_in_a_terminating_namespace_causes_no_crash_or_loop(
    stack: LocalStack, cluster: ClusterHelper, api: Api, start_controller: Start,
    healthy: Callable[[], str], installed: str,
) -> None:  # fmt: skip
    controller = start_controller("bad-terminating")
    ns = cluster.namespace("terminating")
    cluster.create_pull_secret(ns, None)
    # There is no namespace controller here: the namespace stays Terminating for good.
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    eventually(lambda: json.loads(cluster.kubectl("get", "namespace", ns, "-o", "json"))
               ["status"]["phase"] == "Terminating", what="the namespace to terminate")  # fmt: skip
    with pytest.raises(KubectlError, match="terminated"):
        cluster.create_pull_secret(ns, installed, name="another")
    since = time.time()
    cluster.annotate(ns, installed)  # an update is still allowed there
    alongside = healthy()
    cluster.wait_filled(alongside)
    # Writing to an object that exists is still allowed there; only creating one is not.
    cluster.wait_filled(ns)
    watched = watch_for_a_hot_loop(stack, api, ns, installed)
    figure(f"bad input[terminating] writes to the Secret in {WINDOW:g} s after the fill",
           watched.writes)  # fmt: skip
    assert watched.writes <= 1
    assert watched.exchanges <= WINDOW * HOT
    unrecorded = [
        r for r in log_records(controller)
        if r["event"] == "could not record an Event" and r.get("namespace") == ns
        and r["at"] >= since
    ]  # fmt: skip
    assert unrecorded, "no log line says why the Secret's Event is missing"
    assert controller.process.running()
