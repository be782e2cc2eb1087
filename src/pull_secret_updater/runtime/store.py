"""The managed Secrets as the API server last showed them, and what the controller trusts of
each.

The watches keep the objects (`observe`, `drop`); the reconcile step says which Secrets are
managed (a provider's annotation is on them) and the earliest expiry among the credentials
it trusts in each (`manage`). The gauges read that index, never an annotation: `expires-at`
is whatever the Secret's last writer set, and a tenant could make it say anything.
"""

from __future__ import annotations

from collections.abc import Iterator

from pull_secret_updater.kube.secrets import SecretObject
from pull_secret_updater.runtime.outcome import Key


class SecretStore:
    """Secrets by (namespace, name), and the trusted expiry of each managed one."""

    def __init__(self) -> None:
        self._objects: dict[Key, SecretObject] = {}
        # The earliest trusted expiry per managed Secret (None: none trusted yet), kept as the
        # reconciles go, so the 2-second gauges cost a min() over floats.
        self._expiries: dict[Key, float | None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __getitem__(self, key: Key) -> SecretObject:
        return self._objects[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, key: Key) -> SecretObject | None:
        return self._objects.get(key)

    def observe(self, obj: SecretObject) -> bool:
        """Store `obj`; whether it is a version not seen before (so worth a reconcile)."""
        key = (obj.namespace, obj.name)
        known = self._objects.get(key)
        if known is not None and known.resource_version == obj.resource_version:
            return False
        self._objects[key] = obj
        return True

    def keep(self, obj: SecretObject) -> None:
        """Store what a write returned, unless the Secret was deleted meanwhile."""
        key = (obj.namespace, obj.name)
        if key in self._objects:
            self._objects[key] = obj

    def drop(self, key: Key) -> None:
        self._objects.pop(key, None)
        self._expiries.pop(key, None)

    def manage(self, key: Key, *, expires_at: float | None) -> None:
        """`key` is managed; the earliest expiry of the credentials trusted in it."""
        if key in self._objects:
            self._expiries[key] = expires_at

    def unmanage(self, key: Key) -> None:
        self._expiries.pop(key, None)

    @property
    def managed(self) -> int:
        return len(self._expiries)

    def earliest_expiry(self) -> float | None:
        return min((t for t in self._expiries.values() if t is not None), default=None)
