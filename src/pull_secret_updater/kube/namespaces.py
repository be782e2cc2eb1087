"""Namespace labels, read only when the identity policy selects namespaces by label."""

from __future__ import annotations

import time
from collections.abc import Callable

import lightkube
from lightkube.resources.core_v1 import Namespace

from pull_secret_updater.kube.errors import translated


async def namespace_labels(client: lightkube.AsyncClient, *, name: str) -> dict[str, str]:
    """The labels of namespace ``name`` (needs ``get`` on namespaces)."""
    with translated(f"reading namespace {name}"):
        namespace = await client.get(Namespace, name=name)
    return dict((namespace.metadata.labels if namespace.metadata else None) or {})


#: How long labels read from the API server are reused before they are read again.
LABELS_TTL = 30.0
#: The fewest cached namespaces at which entries past their ttl are swept out.
SWEEP_MIN = 64


class NamespaceLabels:
    """Namespace labels read through `client`, each kept for `ttl` seconds.

    The identity policy may select namespaces by label, and every reconcile asks; a label
    change is picked up within `ttl`. At most one entry per namespace with a managed Secret.
    """

    def __init__(
        self,
        client: lightkube.AsyncClient,
        *,
        ttl: float = LABELS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._read: dict[str, tuple[float, dict[str, str]]] = {}
        self._sweep_at = SWEEP_MIN

    def __len__(self) -> int:
        """How many namespaces' labels are held."""
        return len(self._read)

    async def get(self, namespace: str) -> dict[str, str]:
        """The labels of `namespace`; raises KubeError when they cannot be read."""
        now = self._clock()
        cached = self._read.get(namespace)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        labels = await namespace_labels(self._client, name=namespace)
        self._read[namespace] = (now, labels)
        if len(self._read) >= self._sweep_at:
            # Entries past their ttl go whenever the cache has doubled since the last sweep,
            # so deleted namespaces cannot pile up; constant cost per read, amortised.
            for old in [n for n, (at, _) in self._read.items() if now - at >= self._ttl]:
                del self._read[old]
            self._sweep_at = max(SWEEP_MIN, 2 * len(self._read))
        return labels
