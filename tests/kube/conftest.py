"""Fixtures for the Kubernetes adapters, against the session's real kube-apiserver.

The stack is shared by the whole session, so every test works in namespaces and on Secret
names of its own (uuid suffixes): a cluster-wide watch in one test must never see another
test's objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import lightkube
import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from devstack.stack import LocalStack
from pull_secret_updater.kube import make_client
from tests.helpers import unique


@pytest.fixture
async def admin(stack: LocalStack) -> AsyncIterator[lightkube.AsyncClient]:
    client = make_client(kubeconfig=stack.kubeconfig)
    try:
        yield client
    finally:
        await client.close()


NamespaceFactory = Callable[[], Awaitable[str]]


@pytest.fixture
def new_namespace(admin: lightkube.AsyncClient) -> NamespaceFactory:
    """Creates a fresh namespace per call (never deleted: there is no namespace controller)."""

    async def create() -> str:
        name = unique("kt")
        await admin.create(Namespace(metadata=ObjectMeta(name=name)))
        return name

    return create


@pytest.fixture
async def namespace(new_namespace: NamespaceFactory) -> str:
    return await new_namespace()


@pytest.fixture
async def service_account_client(
    stack: LocalStack, admin: lightkube.AsyncClient, namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[lightkube.AsyncClient, tuple[str, str]]]:
    """A client authenticated as a fresh ServiceAccount with no permissions yet."""
    name = "controller"
    await admin.create(ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)))
    kubeconfig = stack.control_plane.service_account_kubeconfig(
        namespace, name, tmp_path / "sa.kubeconfig"
    )
    client = make_client(kubeconfig=kubeconfig)
    try:
        yield client, (namespace, name)
    finally:
        await client.close()
