"""Namespace labels are read once per ttl, and those of namespaces nobody asks about any more
do not pile up."""

from __future__ import annotations

from pull_secret_updater.kube.namespaces import SWEEP_MIN, NamespaceLabels
from tests.fakes import FakeClock
from tests.runtime.fakes import FakeApiServer


async def test_labels_are_read_once_per_ttl() -> None:
    server = FakeApiServer()
    server.namespaces["team-a"] = {"team": "a"}
    clock = FakeClock()
    labels = NamespaceLabels(server.client(), ttl=30, clock=clock)
    assert await labels.get("team-a") == {"team": "a"}
    server.namespaces["team-a"] = {"team": "b"}
    clock.now += 29
    assert await labels.get("team-a") == {"team": "a"}
    clock.now += 1
    assert await labels.get("team-a") == {"team": "b"}
    assert server.requests.count(("GET", "/api/v1/namespaces/team-a")) == 2


async def test_namespaces_asked_about_once_are_swept_after_their_ttl() -> None:
    # Namespaces come and go (CI): each is asked about once and never again.
    server = FakeApiServer()
    clock = FakeClock()
    labels = NamespaceLabels(server.client(), ttl=30, clock=clock)
    for n in range(500):
        server.namespaces[f"ci-{n}"] = {"n": str(n)}
        assert await labels.get(f"ci-{n}") == {"n": str(n)}
        clock.now += 1
        assert len(labels) <= SWEEP_MIN
    # Those still within their ttl were kept: asking again reads nothing.
    before = len(server.requests)
    for n in range(480, 500):
        assert await labels.get(f"ci-{n}") == {"n": str(n)}
    assert len(server.requests) == before
