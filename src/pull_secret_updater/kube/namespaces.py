"""Namespace labels, read only when the identity policy selects namespaces by label."""

from __future__ import annotations

import lightkube
from lightkube.resources.core_v1 import Namespace

from pull_secret_updater.kube.errors import translated


async def namespace_labels(client: lightkube.AsyncClient, *, name: str) -> dict[str, str]:
    """The labels of namespace ``name`` (needs ``get`` on namespaces)."""
    with translated(f"reading namespace {name}"):
        namespace = await client.get(Namespace, name=name)
    return dict((namespace.metadata.labels if namespace.metadata else None) or {})
