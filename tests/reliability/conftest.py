"""Fixtures of the reliability tests; the stack, the controllers and the identities come from
tests/conftest.py.

Every controller watches every managed Secret in the cluster, so Secrets a test leaves behind
become work for the controllers of all later tests: a Secret whose identity the token service
rejects is retried by each of them, and while the token service is slow every such retry
holds a worker. `retire_new_secrets` therefore takes the identity annotation off every
Secret a test created, once the test is over. The Secrets themselves (with the status
annotations the controller wrote) stay, for the leak scan in test_security.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import LocalStack
from tests.reliability.support import IDENTITY, Api


@pytest.fixture
def api(stack: LocalStack) -> Iterator[Api]:
    client = Api(stack)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def retire_new_secrets(stack: LocalStack) -> Iterator[None]:
    api = Api(stack)
    before = {s["metadata"]["uid"] for s in api.managed()}
    try:
        yield
        for secret in api.managed():
            meta = secret["metadata"]
            if meta["uid"] in before or IDENTITY not in (meta.get("annotations") or {}):
                continue
            api.http.patch(
                f"/api/v1/namespaces/{meta['namespace']}/secrets/{meta['name']}",
                json={"metadata": {"annotations": {IDENTITY: None}}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
    finally:
        api.close()
