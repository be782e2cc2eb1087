"""Reading and writing one Secret: a single merge patch, guarded by its resourceVersion."""

from __future__ import annotations

import asyncio
import base64
import json

import lightkube
import pytest
from lightkube.resources.core_v1 import Secret

from devstack.stack import LocalStack
from pull_secret_updater.kube import Conflict, NotFound, get_secret, write_secret
from tests.helpers import unique
from tests.kube.support import create_secret

pytestmark = pytest.mark.stack

DOCKER_CONFIG = b'{"auths":{"cgr.dev":{"username":"_token","password":"sekrit-token"}}}'


async def test_get_secret_returns_none_when_absent(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    assert await get_secret(admin, namespace=namespace, name="absent") is None


async def test_get_secret_decodes_the_docker_config_and_keeps_it_out_of_repr(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    created = await create_secret(
        admin,
        namespace=namespace,
        name="pull-secret",
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": DOCKER_CONFIG, "other": b"12345"},
        annotations={"a": "1"},
        labels={"team": "x"},
    )
    secret = await get_secret(admin, namespace=namespace, name="pull-secret")
    assert secret is not None
    assert created.metadata is not None
    assert secret.uid == created.metadata.uid
    assert secret.resource_version == created.metadata.resourceVersion
    assert secret.type == "kubernetes.io/dockerconfigjson"
    assert secret.docker_config == DOCKER_CONFIG
    assert secret.data_error is None
    assert secret.data_size == len(DOCKER_CONFIG) + 5
    assert dict(secret.annotations) == {"a": "1"}
    assert dict(secret.labels) == {"team": "x"}
    assert not secret.deleting
    assert "sekrit" not in repr(secret)
    assert "sekrit" not in repr(secret.ref)


async def test_get_secret_drops_kubectls_copy_of_the_whole_object(
    stack: LocalStack, admin: lightkube.AsyncClient, namespace: str
) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "applied", "namespace": namespace, "annotations": {"a": "1"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(DOCKER_CONFIG).decode()},
    }
    stack.control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    secret = await get_secret(admin, namespace=namespace, name="applied")
    assert secret is not None
    assert dict(secret.annotations) == {"a": "1"}
    assert "sekrit" not in repr(secret)


async def test_write_secret_sets_data_and_annotations_and_keeps_the_rest(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    await create_secret(
        admin,
        namespace=namespace,
        name="pull-secret",
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": b"{}", "keep": b"me"},
        annotations={"keep": "yes", "drop": "me"},
        labels={"team": "x"},
    )
    before = await get_secret(admin, namespace=namespace, name="pull-secret")
    assert before is not None

    after = await write_secret(
        admin,
        before,
        docker_config=DOCKER_CONFIG,
        annotations={"drop": None, "new": "value", "absent": None},
    )

    assert after.resource_version != before.resource_version
    assert after.docker_config == DOCKER_CONFIG
    assert dict(after.annotations) == {"keep": "yes", "new": "value"}
    assert dict(after.labels) == {"team": "x"}
    stored = await admin.get(Secret, "pull-secret", namespace=namespace)
    assert stored.data is not None
    assert base64.b64decode(stored.data["keep"]) == b"me"
    assert await get_secret(admin, namespace=namespace, name="pull-secret") == after


async def test_write_secret_with_only_annotations_leaves_the_data_alone(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    await create_secret(
        admin, namespace=namespace, name="s", data={".dockerconfigjson": DOCKER_CONFIG}
    )
    before = await get_secret(admin, namespace=namespace, name="s")
    assert before is not None
    after = await write_secret(admin, before, docker_config=None, annotations={"k": "v"})
    assert after.docker_config == DOCKER_CONFIG
    assert dict(after.annotations) == {"k": "v"}


async def test_write_secret_from_a_stale_read_is_a_conflict_and_writes_nothing(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    await create_secret(admin, namespace=namespace, name="s", data={"k": b"v"})
    stale = await get_secret(admin, namespace=namespace, name="s")
    assert stale is not None
    fresh = await write_secret(admin, stale, docker_config=None, annotations={"first": "1"})

    with pytest.raises(Conflict) as caught:
        await write_secret(admin, stale, docker_config=DOCKER_CONFIG, annotations={"second": "2"})

    assert caught.value.status == 409
    assert "sekrit" not in str(caught.value)
    assert await get_secret(admin, namespace=namespace, name="s") == fresh


async def test_write_secret_to_a_deleted_secret_is_not_found(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    await create_secret(admin, namespace=namespace, name="s", data={"k": b"v"})
    secret = await get_secret(admin, namespace=namespace, name="s")
    assert secret is not None
    await admin.delete(Secret, "s", namespace=namespace)
    with pytest.raises(NotFound):
        await write_secret(admin, secret, docker_config=DOCKER_CONFIG, annotations={})


async def test_write_secret_to_a_recreated_secret_is_a_conflict(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    await create_secret(admin, namespace=namespace, name="s", data={"k": b"v"})
    old = await get_secret(admin, namespace=namespace, name="s")
    assert old is not None
    await admin.delete(Secret, "s", namespace=namespace)
    await create_secret(admin, namespace=namespace, name="s", data={"k": b"v"})
    with pytest.raises(Conflict):
        await write_secret(admin, old, docker_config=DOCKER_CONFIG, annotations={})


async def test_a_secret_being_deleted_is_marked(
    admin: lightkube.AsyncClient, namespace: str
) -> None:
    name = unique("held")
    secret = await create_secret(admin, namespace=namespace, name=name, data={"k": b"v"})
    assert secret.metadata is not None
    await admin.patch(
        Secret, name, {"metadata": {"finalizers": ["example.com/hold"]}}, namespace=namespace
    )
    await admin.delete(Secret, name, namespace=namespace)
    held = await get_secret(admin, namespace=namespace, name=name)
    assert held is not None
    assert held.deleting
    await admin.patch(Secret, name, {"metadata": {"finalizers": None}}, namespace=namespace)


async def test_writes_are_a_single_patch_that_names_the_controller(
    stack: LocalStack, admin: lightkube.AsyncClient, namespace: str
) -> None:
    await create_secret(admin, namespace=namespace, name="s", data={"k": b"v"})
    secret = await get_secret(admin, namespace=namespace, name="s")
    assert secret is not None
    await write_secret(admin, secret, docker_config=DOCKER_CONFIG, annotations={"a": "b"})

    def writes() -> list[dict[str, object]]:
        entries = [json.loads(line) for line in stack.control_plane.audit_log.open()]
        return [
            e
            for e in entries
            if e.get("stage") == "ResponseComplete"
            and e.get("objectRef", {}).get("namespace") == namespace
            and e.get("verb") in ("patch", "update")
        ]

    async with asyncio.timeout(30):  # generous: the log is flushed every second
        while not writes():  # noqa: ASYNC110 - the audit log is a file, flushed each second
            await asyncio.sleep(0.1)
    (write,) = writes()
    assert write["verb"] == "patch"
    assert str(write["userAgent"]).startswith("pull-secret-updater/")
