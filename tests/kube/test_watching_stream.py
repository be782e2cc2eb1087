"""The watch stream at the HTTP level: bookmarks, errors in the stream, and silent connections.

A silent connection cannot be produced on demand with a real API server, so these tests put
an httpx2 transport in its place; everything above the transport is the real code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator

import httpx2
import lightkube
import pytest
from lightkube import KubeConfig

from pull_secret_updater.kube import Gone, Transient, WatchEvent, list_and_watch, secrets
from pull_secret_updater.kube.secrets import _parse_line, _Seen
from tests.helpers import LogEvents
from tests.kube.support import cancel


def test_a_bookmark_moves_the_position_without_an_event() -> None:
    line = json.dumps(
        {
            "type": "BOOKMARK",
            "object": {
                "kind": "Secret",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "221"},
            },
        }
    )
    assert _parse_line(line) == _Seen("221", None)


def test_an_expired_position_in_the_stream_is_gone() -> None:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "too old resource version: 205 (208)",
        "reason": "Expired",
        "code": 410,
    }
    with pytest.raises(Gone) as caught:
        _parse_line(json.dumps({"type": "ERROR", "object": status}))
    assert caught.value.reason == "Expired"


def test_a_garbled_event_is_a_transient_failure() -> None:
    with pytest.raises(Transient):
        _parse_line('{"type":"ADDED","object":{"metadata":')


class FakeServer:
    """Answers a list, then watches that send `events` and then, if `hang`, go silent."""

    def __init__(self, events: list[dict[str, object]], *, hang: bool = True) -> None:
        self.events = events
        self.hang = hang
        self.requests: list[tuple[bool, str | None]] = []
        self.times: list[float] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        watch = request.url.params.get("watch") == "true"
        self.requests.append((watch, request.url.params.get("resourceVersion")))
        self.times.append(time.monotonic())
        assert request.url.params["fieldSelector"] == "metadata.name=pull-secret"
        if not watch:
            body = {"kind": "SecretList", "metadata": {"resourceVersion": "10"}, "items": []}
            return httpx2.Response(200, json=body)
        first_watch = len(self.requests) == 2
        events = self.events if first_watch or not self.hang else []
        return httpx2.Response(200, stream=_Stream(events, hang=self.hang))

    def client(self) -> lightkube.AsyncClient:
        config = KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": {"server": "http://apiserver.invalid"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
        return lightkube.AsyncClient(config, transport=httpx2.MockTransport(self.handle))


class _Stream(httpx2.AsyncByteStream):
    def __init__(self, events: list[dict[str, object]], *, hang: bool) -> None:
        self._events = events
        self._hang = hang

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield json.dumps(event).encode() + b"\n"
        if self._hang:
            await asyncio.Event().wait()


def _added(resource_version: str) -> dict[str, object]:
    meta = {"name": "pull-secret", "namespace": "ns", "resourceVersion": resource_version}
    return {"type": "ADDED", "object": {"kind": "Secret", "apiVersion": "v1", "metadata": meta}}


async def test_a_silent_watch_is_abandoned_and_resumed_without_a_slow_handler_being_cut(
    monkeypatch: pytest.MonkeyPatch, logged: LogEvents
) -> None:
    monkeypatch.setattr(secrets, "WATCH_GRACE", 0.3)
    server = FakeServer([_added("11")])
    handled: list[WatchEvent] = []

    async def slow_handler(event: WatchEvent) -> None:
        if event.type == "ADDED":
            await asyncio.sleep(1.5)  # longer than the whole watch deadline
        handled.append(event)

    client = server.client()
    task = asyncio.create_task(
        list_and_watch(
            client, name="pull-secret", handler=slow_handler, server_timeout=1, backoff_base=0.1
        )
    )
    try:
        async with asyncio.timeout(30):
            while len(server.requests) < 3:  # noqa: ASYNC110 - the transport is synchronous
                await asyncio.sleep(0.05)
    finally:
        await cancel(task)
        await client.close()

    assert [e.type for e in handled] == ["SYNC", "ADDED"]
    # list, watch from the list, then (after the deadline) a watch from the event: no relist.
    assert server.requests[:3] == [(False, None), (True, "10"), (True, "11")]
    dead = [e for e in logged if e["log_level"] == "warning"]
    assert "connection presumed dead" in dead[0]["error"]


async def test_relisting_slows_down_when_every_watch_is_gone_at_once(logged: LogEvents) -> None:
    expired: dict[str, object] = {
        "type": "ERROR",
        "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
    }
    server = FakeServer([expired], hang=False)
    client = server.client()
    base = 0.4

    async def ignore(event: WatchEvent) -> None:
        pass

    def lists() -> list[float]:
        return [t for (watch, _), t in zip(server.requests, server.times, strict=True) if not watch]

    task = asyncio.create_task(
        list_and_watch(client, name="pull-secret", handler=ignore, backoff_base=base)
    )
    try:
        async with asyncio.timeout(30):
            while len(lists()) < 4:  # noqa: ASYNC110 - the transport is synchronous
                await asyncio.sleep(0.05)
    finally:
        await cancel(task)
        await client.close()

    # What it chose, as it logged it: the first 410 relists at once, then each waits at least
    # half a backoff step (the jitter takes up to half away).
    delays = [e["retry_in_s"] for e in logged if e["event"] == "relisting Secrets"]
    assert delays[0] == 0
    assert all(delay >= base / 2 for delay in delays[1:3])
    # And it did wait so (a slow machine can only stretch the gaps).
    gaps = [b - a for a, b in itertools.pairwise(lists())]
    assert all(gap >= base / 2 for gap in gaps[1:3])
