"""config/admission against the real API server: what the controller's ServiceAccount may write.

The policy is part of config/, which the session installs (the ``installed`` fixture), so every
test of the session runs with it. Writes are made as the ``pull-secret-updater:controller``
ServiceAccount with its own bearer token, the way the controller makes them: JSON merge
patches.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from devstack.controller import NAMESPACE, SERVICE_ACCOUNT
from devstack.stack import LocalStack
from tests.helpers import (
    EXPIRES_AT,
    IDENTITY,
    LAST_ERROR,
    LAST_REFRESH,
    ClusterHelper,
    denial,
    eventually,
    merge_patch,
    pull_secret_manifest,
    service_account_client,
)

pytestmark = pytest.mark.stack

UID = "4cf15780a13a9b6576d8b357e6524554c8c12a18/0123456789abcdef"
TOKEN_HASH = "pull-secret-updater.chainguard.dev/token-hash"
FILLED_IDENTITY = "pull-secret-updater.chainguard.dev/filled-identity"
FAKE_IDENTITY = "fake.pull-secret-updater.chainguard.dev/identity"
FAKE_FILLED = "fake.pull-secret-updater.chainguard.dev/filled-identity"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_config(token: str) -> str:
    auth = b64(f"_token:{token}")
    entry = {"username": "_token", "password": token, "auth": auth}
    return b64(json.dumps({"auths": {"cgr.dev": entry}}))


def create(cluster: ClusterHelper, manifest: dict[str, Any]) -> None:
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))


@pytest.fixture(scope="module")
def controller(stack: LocalStack, installed: str) -> Iterator[httpx2.Client]:
    """A client acting as the controller's ServiceAccount."""
    with service_account_client(stack, NAMESPACE, SERVICE_ACCOUNT) as client:
        yield client


@pytest.fixture(scope="module")
def target(stack: LocalStack) -> str:
    """A managed Secret with things the controller must leave alone; returns its namespace.

    Denied writes change nothing, so the tests that expect a denial share it.
    """
    cluster = ClusterHelper(stack)
    namespace = cluster.namespace("vap")
    manifest = pull_secret_manifest(namespace, UID)
    manifest["metadata"]["labels"] = {"team": "a"}
    manifest["metadata"]["annotations"]["example.com/owner"] = "team-a"
    manifest["data"]["extra"] = b64("keep me")
    create(cluster, manifest)
    return namespace


def test_controller_may_write_its_token_and_status_annotations(
    controller: httpx2.Client, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("vap-ok")
    create(cluster, pull_secret_manifest(namespace, UID))
    status = {
        EXPIRES_AT: "2030-01-01T00:00:00Z",
        LAST_REFRESH: "2029-12-31T23:00:00Z",
        LAST_ERROR: "token service unavailable",
        TOKEN_HASH: "0" * 32,
        FILLED_IDENTITY: UID,
    }

    first = merge_patch(
        controller,
        namespace,
        {
            "metadata": {"annotations": status},
            "data": {".dockerconfigjson": docker_config("t1")},
        },
    )
    assert first.status_code == 200, first.text
    # Clearing last-error (null in a merge patch) is a change of a status annotation too.
    second = merge_patch(
        controller,
        namespace,
        {
            "metadata": {"annotations": {LAST_ERROR: None, EXPIRES_AT: "2030-01-01T01:00:00Z"}},
            "data": {".dockerconfigjson": docker_config("t2")},
        },
    )
    assert second.status_code == 200, second.text

    stored = cluster.secret(namespace) or {}
    written = json.loads(base64.b64decode(stored["data"][".dockerconfigjson"]))
    assert written["auths"]["cgr.dev"]["password"] == "t2"
    annotations = stored["metadata"]["annotations"]
    assert LAST_ERROR not in annotations
    assert annotations[EXPIRES_AT] == "2030-01-01T01:00:00Z"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metadata": {"labels": {"team": "b"}}}, "may not change labels"),
        ({"metadata": {"labels": {"pwned": "yes"}}}, "may not change labels"),
        ({"data": {"extra": b64("changed")}}, "no data key other than .dockerconfigjson"),
        ({"data": {"extra": None}}, "no data key other than .dockerconfigjson"),
        ({"data": {"new": b64("x")}}, "no data key other than .dockerconfigjson"),
        ({"metadata": {"annotations": {IDENTITY: UID + "0"}}}, "may not add, change or remove"),
        ({"metadata": {"annotations": {IDENTITY: None}}}, "may not add, change or remove"),
        ({"metadata": {"annotations": {FAKE_IDENTITY: "team/x"}}}, "may not add, change or"),
        (
            {"metadata": {"annotations": {"ecr.pull-secret-updater.chainguard.dev/role-arn": "x"}}},
            "may not add, change or remove",
        ),
        (
            {
                "metadata": {
                    "annotations": {"ecr.pull-secret-updater.chainguard.dev/expires-at": "x"}
                }
            },
            "may not add, change or remove",
        ),
        ({"metadata": {"annotations": {"example.com/owner": "team-b"}}}, "no annotation other"),
        ({"metadata": {"annotations": {"example.com/owner": None}}}, "no annotation other"),
        ({"metadata": {"annotations": {"example.com/new": "x"}}}, "no annotation other"),
        ({"immutable": True}, "may not change immutable"),
        ({"metadata": {"finalizers": ["example.com/hold"]}}, "may not change finalizers"),
    ],
    ids=[
        "change-label",
        "add-label",
        "change-other-key",
        "remove-other-key",
        "add-key",
        "change-identity",
        "remove-identity",
        "add-another-providers-identity",
        "add-another-providers-request",
        "a-status-name-under-another-provider-is-no-status",
        "change-annotation",
        "remove-annotation",
        "add-annotation",
        "immutable",
        "finalizer",
    ],
)
def test_controller_may_change_nothing_else(
    controller: httpx2.Client,
    cluster: ClusterHelper,
    target: str,
    change: dict[str, Any],
    message: str,
) -> None:
    before = cluster.secret(target) or {}
    # The allowed part of the write does not carry the rest through.
    body = {**change, "data": {".dockerconfigjson": docker_config("t"), **change.get("data", {})}}

    response = merge_patch(controller, target, body)

    assert message in (denial(response) or ""), response.text
    after = cluster.secret(target) or {}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_controller_may_not_write_a_secret_without_the_identity_annotation(
    controller: httpx2.Client, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("vap-plain")
    create(cluster, pull_secret_manifest(namespace, None))

    response = merge_patch(
        controller,
        namespace,
        {
            "data": {".dockerconfigjson": docker_config("t")},
            "metadata": {"annotations": {EXPIRES_AT: "2030-01-01T00:00:00Z"}},
        },
    )

    assert "carry a registry" in (denial(response) or ""), response.text


def test_controller_may_only_remove_its_status_from_a_secret_no_longer_annotated(
    controller: httpx2.Client, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("vap-released")
    create(cluster, pull_secret_manifest(namespace, None))
    cluster.kubectl("annotate", "secret", "pull-secret", "-n", namespace,
                    f"{EXPIRES_AT}=2030-01-01T00:00:00Z", f"{TOKEN_HASH}={'0' * 32}",
                    "team=web")  # fmt: skip

    changed = merge_patch(
        controller, namespace, {"metadata": {"annotations": {EXPIRES_AT: "2031-01-01T00:00:00Z"}}}
    )
    dropped_other = merge_patch(
        controller, namespace, {"metadata": {"annotations": {"team": None}}}
    )
    removed = merge_patch(
        controller, namespace, {"metadata": {"annotations": {EXPIRES_AT: None, TOKEN_HASH: None}}}
    )

    assert "carry a registry" in (denial(changed) or "")
    assert denial(dropped_other), dropped_other.text
    assert removed.status_code == 200, removed.text
    annotations = (cluster.secret(namespace) or {})["metadata"]["annotations"]
    assert EXPIRES_AT not in annotations
    assert TOKEN_HASH not in annotations
    assert annotations["team"] == "web"


def test_controller_may_not_write_a_secret_of_another_type(
    controller: httpx2.Client, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("vap-opaque")
    create(cluster, pull_secret_manifest(namespace, UID, secret_type="Opaque"))

    response = merge_patch(controller, namespace, {"data": {"config": b64("{}")}})

    assert "of type kubernetes.io/dockerconfigjson" in (denial(response) or ""), response.text


def test_controller_may_not_create_or_delete_even_where_rbac_allows_it(
    controller: httpx2.Client, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("vap-rbac")
    create(cluster, pull_secret_manifest(namespace, UID))
    cluster.kubectl(
        "-n", namespace, "create", "role", "too-much", "--verb=create,delete", "--resource=secrets"
    )
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "too-much",
        "--role=too-much",
        f"--serviceaccount={NAMESPACE}:{SERVICE_ACCOUNT}",
    )

    def create_as_controller() -> httpx2.Response:
        manifest = pull_secret_manifest(namespace, UID, name="another")
        return controller.post(f"/api/v1/namespaces/{namespace}/secrets", json=manifest)

    # RBAC caches are quick but not instant: wait until RBAC is not what refuses.
    created = eventually(
        lambda: denial(create_as_controller()), timeout=10, what="the new Role to take effect"
    )
    deleted = controller.delete(f"/api/v1/namespaces/{namespace}/secrets/pull-secret")

    assert "never create or delete" in created
    assert "never create or delete" in (denial(deleted) or ""), deleted.text
    assert cluster.secret(namespace) is not None


def test_other_users_are_not_affected(
    stack: LocalStack, cluster: ClusterHelper, installed: str
) -> None:
    namespace = cluster.namespace("vap-others")
    create(cluster, pull_secret_manifest(namespace, UID))
    # A ServiceAccount with the same name in another namespace is another user.
    cluster.kubectl("-n", namespace, "create", "serviceaccount", SERVICE_ACCOUNT)
    cluster.kubectl(
        "-n", namespace, "create", "role", "edit", "--verb=get,patch", "--resource=secrets"
    )
    cluster.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "edit",
        "--role=edit",
        f"--serviceaccount={namespace}:{SERVICE_ACCOUNT}",
    )

    cluster.kubectl("-n", namespace, "label", "secret", "pull-secret", "team=a")
    cluster.kubectl(
        "-n",
        namespace,
        "annotate",
        "--overwrite",
        "secret",
        "pull-secret",
        f"{IDENTITY}={UID}0",
        "example.com/owner=admin",
    )
    with service_account_client(stack, namespace, SERVICE_ACCOUNT) as other:

        def relabel() -> httpx2.Response | None:
            response = merge_patch(other, namespace, {"metadata": {"labels": {"team": "b"}}})
            return response if response.status_code == 200 else None

        # RBAC caches are quick but not instant.
        eventually(relabel, timeout=10, what="the other ServiceAccount's write")

    assert (cluster.secret(namespace) or {})["metadata"]["labels"] == {"team": "b"}
    assert cluster.annotations(namespace)["example.com/owner"] == "admin"


def test_controller_may_fill_a_secret_that_asks_another_provider_only(
    controller: httpx2.Client, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("vap-fake")
    manifest = pull_secret_manifest(namespace, None)
    manifest["metadata"]["annotations"] = {FAKE_IDENTITY: "team/a"}
    create(cluster, manifest)

    written = merge_patch(
        controller,
        namespace,
        {
            "metadata": {
                "annotations": {FAKE_FILLED: "team/a", EXPIRES_AT: "2030-01-01T00:00:00Z"}
            },
            "data": {".dockerconfigjson": docker_config("t1")},
        },
    )
    changed = merge_patch(
        controller, namespace, {"metadata": {"annotations": {FAKE_IDENTITY: "team/b"}}}
    )

    assert written.status_code == 200, written.text
    assert "may not add, change or remove" in (denial(changed) or ""), changed.text
    annotations = (cluster.secret(namespace) or {})["metadata"]["annotations"]
    assert annotations == {
        FAKE_IDENTITY: "team/a",
        FAKE_FILLED: "team/a",
        EXPIRES_AT: "2030-01-01T00:00:00Z",
    }
