"""Following the managed Secrets: list, then watch by name across namespaces, and recover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import lightkube
import pytest
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from devstack.stack import LocalStack
from pull_secret_updater.kube import WatchEvent, list_and_watch
from pull_secret_updater.kube.client import http_client
from pull_secret_updater.kube.secrets import _watch_once, list_secrets
from tests.helpers import LogEvents, unique
from tests.kube.conftest import NamespaceFactory
from tests.kube.support import Recorder, cancel, create_secret, grant_secret_access
from tests.reliability.support import figure

pytestmark = pytest.mark.stack

#: The warnings logged so far in a test.
Warnings = Callable[[], LogEvents]
#: For what must happen eventually: far beyond what it should take, even on a loaded machine.
DEADLINE = 30.0


def _names(event: WatchEvent) -> set[tuple[str, str]]:
    return {(o.namespace, o.name) for o in event.objects}


def _is(kind: str, namespace: str, name: str) -> object:
    def match(event: WatchEvent) -> bool:
        obj = event.object
        return (
            event.type == kind
            and obj is not None
            and (obj.namespace, obj.name) == (namespace, name)
        )

    return match


async def _logged(
    warnings: Warnings, predicate: Callable[[MutableMapping[str, Any]], bool]
) -> None:
    async with asyncio.timeout(DEADLINE):
        while not any(predicate(e) for e in warnings()):  # noqa: ASYNC110 - logging is sync
            await asyncio.sleep(0.05)


class Watching:
    """`list_and_watch` running as a task, with its events recorded."""

    def __init__(self, client: lightkube.AsyncClient, name: str, **options: float) -> None:
        self.recorder = Recorder()
        self.synced = asyncio.Event()

        async def on_synced() -> None:
            self.synced.set()

        self.task = asyncio.create_task(
            list_and_watch(
                client,
                name=name,
                handler=self.recorder,
                on_synced=on_synced,
                **options,  # type: ignore[arg-type]
            )
        )

    async def wait_synced(self, within: float = DEADLINE) -> WatchEvent:
        async with asyncio.timeout(within):
            await self.synced.wait()
        return self.recorder.syncs[0]


@pytest.fixture
def warnings_logged(logged: LogEvents) -> Warnings:
    """The warnings logged so far in the test: `list_and_watch`'s, as nothing else runs."""
    return lambda: [e for e in logged if e["log_level"] == "warning"]


async def test_changes_in_every_namespace_are_reported_and_no_other_name(
    admin: lightkube.AsyncClient, new_namespace: NamespaceFactory
) -> None:
    name = unique("pull-secret")
    ns_a, ns_b = await new_namespace(), await new_namespace()
    await create_secret(admin, namespace=ns_a, name=name)
    await create_secret(admin, namespace=ns_a, name=unique("other"))
    watching = Watching(admin, name)
    try:
        first = await watching.wait_synced()
        assert _names(first) == {(ns_a, name)}

        await create_secret(admin, namespace=ns_b, name=unique("other"))
        await create_secret(admin, namespace=ns_b, name=name)
        await admin.patch(
            Secret,
            name,
            {"metadata": {"annotations": {"touched": "yes"}}},
            namespace=ns_a,
            patch_type=PatchType.MERGE,
        )
        await admin.delete(Secret, name, namespace=ns_b)
        await watching.recorder.wait_for(_is("DELETED", ns_b, name))  # type: ignore[arg-type]

        assert watching.recorder.changes() == [
            ("ADDED", ns_b, name),
            ("MODIFIED", ns_a, name),
            ("DELETED", ns_b, name),
        ]
        modified = watching.recorder.events[2].object
        assert modified is not None
        assert modified.annotations["touched"] == "yes"
        assert len(watching.recorder.syncs) == 1
    finally:
        await cancel(watching.task)


async def test_a_watch_the_server_ends_is_resumed_without_a_relist(
    admin: lightkube.AsyncClient, namespace: str, warnings_logged: Warnings
) -> None:
    name = unique("pull-secret")
    watching = Watching(admin, name, server_timeout=1)
    try:
        await watching.wait_synced()
        await asyncio.sleep(2.5)  # the server has ended at least two watches by now
        await create_secret(admin, namespace=namespace, name=name)
        await watching.recorder.wait_for(_is("ADDED", namespace, name))  # type: ignore[arg-type]
        assert len(watching.recorder.syncs) == 1
        assert warnings_logged() == []
    finally:
        await cancel(watching.task)


async def test_a_service_account_confined_by_resource_names_can_follow_its_secrets(
    admin: lightkube.AsyncClient,
    new_namespace: NamespaceFactory,
    service_account_client: tuple[lightkube.AsyncClient, tuple[str, str]],
    warnings_logged: Warnings,
) -> None:
    client, service_account = service_account_client
    name = unique("pull-secret")
    ns_a, ns_b = await new_namespace(), await new_namespace()
    await create_secret(admin, namespace=ns_a, name=name)
    watching = Watching(client, name, backoff_base=0.2, backoff_cap=0.5)
    try:
        # Without a grant: refused, logged, retried.
        await _logged(warnings_logged, lambda e: e.get("status") == 403)
        assert not watching.synced.is_set()

        await grant_secret_access(
            admin, service_account=service_account, secret_name=name, verbs=["list", "watch"]
        )
        first = await watching.wait_synced()
        assert _names(first) == {(ns_a, name)}
        refused = len(warnings_logged())
        await create_secret(admin, namespace=ns_b, name=name)
        await watching.recorder.wait_for(_is("ADDED", ns_b, name))  # type: ignore[arg-type]
        assert len(warnings_logged()) == refused  # no 403 once granted
    finally:
        await cancel(watching.task)


async def test_a_compacted_restarted_apiserver_is_relisted_and_nothing_is_missed(
    stack: LocalStack,
    admin: lightkube.AsyncClient,
    new_namespace: NamespaceFactory,
    warnings_logged: Warnings,
) -> None:
    name = unique("pull-secret")
    ns_old, ns_new = await new_namespace(), await new_namespace()
    await create_secret(admin, namespace=ns_old, name=name)
    watching = Watching(admin, name, backoff_base=0.5, backoff_cap=1.0)
    try:
        await watching.wait_synced()
        stack.control_plane.compact_etcd()
        await asyncio.to_thread(stack.control_plane.restart_apiserver)
        # Right after the restart, while the watcher is still reconnecting: one Secret goes
        # and one comes. However the watcher gets back (resumed watch or relist), what it
        # reports must add up to exactly the Secret that exists now.
        await admin.delete(Secret, name, namespace=ns_old)
        await create_secret(admin, namespace=ns_new, name=name)

        def known() -> set[tuple[str, str]]:
            state: set[tuple[str, str]] = set()
            for event in watching.recorder.events:
                if event.type == "SYNC":
                    state = _names(event)
                elif event.object is not None:
                    key = (event.object.namespace, event.object.name)
                    (state.discard if event.type == "DELETED" else state.add)(key)
            return state

        await watching.recorder.wait_for(lambda _: known() == {(ns_new, name)}, within=60)
        # The resourceVersion it watched from was compacted away: it had to list again.
        assert len(watching.recorder.syncs) >= 2
        assert "relisting Secrets" in [e["event"] for e in warnings_logged()]
        assert all(e.get("status") != 403 for e in warnings_logged())
    finally:
        await cancel(watching.task)


async def test_one_watch_request_ends_when_the_server_ends_it(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    name = unique("pull-secret")
    _, resource_version = await list_secrets(admin, name=name)
    await create_secret(admin, namespace=namespace, name=unique("other"))
    await create_secret(admin, namespace=namespace, name=name)
    started = time.monotonic()
    watch = _watch_once(
        http_client(admin), name=name, resource_version=resource_version, server_timeout=2
    )
    # No deadline of its own (read=None): without the server's end it would hang here.
    async with asyncio.timeout(DEADLINE):
        seen = [s async for s in watch]
    took = time.monotonic() - started
    figure("watch: one request with timeoutSeconds=2 ended after", took, "s")
    assert took > 1.5  # the server's end, not a client-side one
    (added,) = seen
    assert added.event is not None
    assert added.event.object is not None
    assert (added.event.type, added.event.object.name) == ("ADDED", name)
    assert int(added.resource_version) > int(resource_version)
