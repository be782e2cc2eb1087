"""Events about Secrets: repeats aggregate into one Event, and failures never escape."""

from __future__ import annotations

import lightkube
import pytest
from lightkube.resources.core_v1 import Event

from pull_secret_updater.kube import EventRecorder, SecretObject, SecretRef, get_secret
from tests.helpers import LogEvents
from tests.kube.support import create_secret

pytestmark = pytest.mark.stack


async def _secret(admin: lightkube.AsyncClient, namespace: str) -> SecretObject:
    await create_secret(admin, namespace=namespace, name="pull-secret", data={"k": b"v"})
    secret = await get_secret(admin, namespace=namespace, name="pull-secret")
    assert secret is not None
    return secret


async def _events(admin: lightkube.AsyncClient, namespace: str) -> list[Event]:
    return [e async for e in admin.list(Event, namespace=namespace)]


async def test_a_repeated_event_is_one_event_with_a_count(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    secret = await _secret(admin, namespace)
    recorder = EventRecorder(admin, instance="replica-1")

    for _ in range(2):
        await recorder.emit(secret=secret, type="Warning", reason="Failed", message="no token")

    (event,) = await _events(admin, namespace)
    assert event.count == 2
    assert event.involvedObject.kind == "Secret"
    assert event.involvedObject.name == "pull-secret"
    assert event.involvedObject.uid == secret.uid
    assert event.involvedObject.resourceVersion == secret.resource_version
    assert (event.type, event.reason, event.message) == ("Warning", "Failed", "no token")
    assert event.source is not None
    assert event.source.component == "pull-secret-updater"
    assert (event.reportingComponent, event.reportingInstance) == (
        "pull-secret-updater",
        "replica-1",
    )
    assert event.firstTimestamp is not None
    assert event.lastTimestamp is not None
    assert event.lastTimestamp >= event.firstTimestamp


async def test_a_different_message_or_an_old_repeat_is_a_new_event(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    secret = await _secret(admin, namespace)
    now = [0.0]
    recorder = EventRecorder(admin, instance="replica-1", clock=lambda: now[0])

    await recorder.emit(secret=secret, type="Normal", reason="Filled", message="a")
    await recorder.emit(secret=secret, type="Normal", reason="Filled", message="b")
    now[0] += 601  # past the aggregation window
    await recorder.emit(secret=secret, type="Normal", reason="Filled", message="a")

    events = await _events(admin, namespace)
    assert sorted((e.message, e.count) for e in events) == [("a", 1), ("a", 1), ("b", 1)]


async def test_a_long_message_is_truncated(admin: lightkube.AsyncClient, namespace: str) -> None:
    secret = await _secret(admin, namespace)
    await EventRecorder(admin, instance="r").emit(
        secret=secret, type="Warning", reason="Failed", message="x" * 5000
    )
    (event,) = await _events(admin, namespace)
    assert event.message is not None
    assert len(event.message) == 1024


async def test_a_failed_event_is_logged_not_raised(
    admin: lightkube.AsyncClient, logged: LogEvents
) -> None:
    recorder = EventRecorder(admin, instance="r")
    missing = SecretRef(namespace="no-such-namespace", name="pull-secret", uid="u")

    await recorder.emit(secret=missing, type="Warning", reason="Failed", message="m")

    (record,) = [e for e in logged if e["event"] == "could not record an Event"]
    assert record["log_level"] == "warning"
    assert (record["namespace"], record["name"]) == ("no-such-namespace", "pull-secret")
    assert record["error_class"] == "NotFound"


async def test_background_events_are_all_written_by_the_time_the_recorder_closes(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    secret = await _secret(admin, namespace)
    recorder = EventRecorder(admin, instance="replica-1")

    for i in range(12):
        recorder.emit_soon(secret=secret, type="Normal", reason="Filled", message=f"fill {i}")
    assert recorder.waiting == 12  # nothing written before the loop runs the sender
    await recorder.aclose()

    assert recorder.waiting == 0
    events = await _events(admin, namespace)
    assert sorted(str(e.message) for e in events) == sorted(f"fill {i}" for i in range(12))
    assert recorder.dropped == 0


async def test_background_events_past_the_queue_bound_are_dropped_and_counted(
    admin: lightkube.AsyncClient, namespace: str, logged: LogEvents
) -> None:
    secret = await _secret(admin, namespace)
    dropped: list[int] = []
    recorder = EventRecorder(
        admin, instance="replica-1", max_queued=3, on_dropped=lambda: dropped.append(1)
    )

    for i in range(5):
        recorder.emit_soon(secret=secret, type="Normal", reason="Filled", message=f"n{i}")
    await recorder.aclose()

    assert sorted(str(e.message) for e in await _events(admin, namespace)) == ["n0", "n1", "n2"]
    assert recorder.dropped == 2
    assert len(dropped) == 2
    (warning,) = [r for r in logged if "dropped" in r["event"]]
    assert warning["dropped"] == 1
