"""Session-wide fixtures: one local stack (real etcd, kube-apiserver, token service, registry)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import LocalStack


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as running:
        yield running
