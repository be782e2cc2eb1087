"""Helpers for the Kubernetes adapter tests: objects to set up, a handler that records."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable

import lightkube
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from pull_secret_updater.kube import WatchEvent
from tests.helpers import unique


async def create_secret(
    client: lightkube.AsyncClient,
    *,
    namespace: str,
    name: str,
    data: dict[str, bytes] | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    type: str = "Opaque",
) -> Secret:
    encoded = {k: base64.b64encode(v).decode() for k, v in (data or {}).items()}
    created: Secret = await client.create(
        Secret(
            metadata=ObjectMeta(
                name=name, namespace=namespace, annotations=annotations, labels=labels
            ),
            data=encoded or None,
            type=type,
        )
    )
    return created


async def grant_secret_access(
    client: lightkube.AsyncClient,
    *,
    service_account: tuple[str, str],
    secret_name: str,
    verbs: list[str],
) -> str:
    """A ClusterRole limited by resourceNames to `secret_name`, bound to the ServiceAccount."""
    role = unique("psu-test-secrets")
    await client.create(
        ClusterRole(
            metadata=ObjectMeta(name=role),
            rules=[
                PolicyRule(
                    apiGroups=[""],
                    resources=["secrets"],
                    resourceNames=[secret_name],
                    verbs=verbs,
                )
            ],
        )
    )
    await client.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name=role),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
            subjects=[
                Subject(
                    kind="ServiceAccount", name=service_account[1], namespace=service_account[0]
                )
            ],
        )
    )
    return role


class Recorder:
    """A `list_and_watch` handler that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: WatchEvent) -> None:
        self.events.append(event)
        self._changed.set()

    @property
    def syncs(self) -> list[WatchEvent]:
        return [e for e in self.events if e.type == "SYNC"]

    def changes(self) -> list[tuple[str, str, str]]:
        """(type, namespace, name) of every ADDED/MODIFIED/DELETED, in order."""
        return [
            (e.type, e.object.namespace, e.object.name) for e in self.events if e.object is not None
        ]

    async def wait_for(
        self, predicate: Callable[[WatchEvent], bool], *, within: float = 30.0
    ) -> WatchEvent:
        """The first event (so far or to come) that matches; `within` is a generous deadline."""
        async with asyncio.timeout(within):
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
