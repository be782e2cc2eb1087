"""Managed Secrets are listed by name, metadata only, with a fallback to one namespace."""

from __future__ import annotations

import httpx2
import pytest

from pull_secret_updater.core import annotations as keys
from pull_secret_updater.kube.errors import Forbidden
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.tools.status import list_statuses
from tests.cli.fakes import fake_client
from tests.fakes import status_reply


def item(namespace: str, name: str = "pull-secret", **annotations: str) -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "name": name, "annotations": annotations}}


class FakeServer:
    """Answers Secret lists from `secrets`, in pages of one; refuses cluster-wide if told."""

    def __init__(self, secrets: list[dict[str, object]], *, cluster_wide: bool = True) -> None:
        self.secrets = secrets
        self.cluster_wide = cluster_wide
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        assert "as=PartialObjectMetadataList" in request.headers["Accept"]
        selector = request.url.params["fieldSelector"]
        assert selector.startswith("metadata.name=")
        name = selector.removeprefix("metadata.name=")
        path = request.url.path
        if path == "/api/v1/secrets":
            if not self.cluster_wide:
                return status_reply(
                    403, "cannot list secrets at the cluster scope", reason="Forbidden"
                )
            namespace = None
        else:
            namespace = path.split("/")[4]
        matching = [
            s for s in self.secrets
            if s["metadata"]["name"] == name  # type: ignore[index]
            and namespace in (None, s["metadata"]["namespace"])  # type: ignore[index]
        ]  # fmt: skip
        start = int(request.url.params.get("continue", "0"))
        page = matching[start : start + 1]
        more = start + 1 < len(matching)
        return httpx2.Response(
            200,
            json={
                "kind": "PartialObjectMetadataList",
                "metadata": {"continue": str(start + 1)} if more else {},
                # NB: what a real API server sends for an empty metadata list.
                "items": page or None,
            },
        )


SECRETS = [
    item("b", **{chainguard_spec.IDENTITY: "uid/b"}),
    item("a", **{chainguard_spec.IDENTITY: "uid/a", keys.LAST_ERROR: "boom"}),
    item("a", name="other-secret", **{chainguard_spec.IDENTITY: "uid/o"}),
    item("c", name="unmanaged"),
]


async def test_all_namespaces_every_name_sorted_and_paged() -> None:
    server = FakeServer(SECRETS)
    client = fake_client(server)
    listing = await list_statuses(
        client, names=["pull-secret", "other-secret"], namespace=None, fallback_namespace="team"
    )
    await client.close()
    assert [(r.namespace, r.name, r.identity) for r in listing.rows] == [
        ("a", "other-secret", "uid/o"),
        ("a", "pull-secret", "uid/a"),
        ("b", "pull-secret", "uid/b"),
    ]
    assert listing.notice is None
    assert listing.scope == "any namespace"
    assert any("continue" in r.url.params for r in server.requests), "pages are followed"


async def test_a_forbidden_cluster_wide_list_falls_back_to_the_current_namespace() -> None:
    server = FakeServer(SECRETS, cluster_wide=False)
    client = fake_client(server)
    listing = await list_statuses(client, names=["pull-secret"], namespace=None,
                                  fallback_namespace="a")  # fmt: skip
    await client.close()
    assert [(r.namespace, r.identity) for r in listing.rows] == [("a", "uid/a")]
    assert listing.notice is not None
    assert "(403 Forbidden)" in listing.notice
    assert "showing namespace a only" in listing.notice


async def test_without_a_fallback_the_refusal_is_the_answer() -> None:
    client = fake_client(FakeServer(SECRETS, cluster_wide=False))
    with pytest.raises(Forbidden):
        await list_statuses(client, names=["pull-secret"], namespace=None)
    await client.close()


async def test_one_namespace_and_nothing_found() -> None:
    client = fake_client(FakeServer(SECRETS))
    listing = await list_statuses(client, names=["pull-secret"], namespace="nowhere")
    await client.close()
    assert listing.rows == ()
    assert listing.scope == "namespace nowhere"
