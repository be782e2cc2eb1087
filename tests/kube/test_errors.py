"""Failures reach the layers above as one class per meaning, whatever shape lightkube gave them."""

from __future__ import annotations

from pathlib import Path

import httpx2
import lightkube
import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret

from devstack.stack import LocalStack
from pull_secret_updater.kube import (
    Forbidden,
    KubeError,
    NotFound,
    Transient,
    Unprocessable,
    make_client,
    translate,
    translated,
)

REQUEST = httpx2.Request("GET", "https://apiserver.invalid/api/v1/secrets")


def _reply(status: int, body: bytes, content_type: str | None) -> httpx2.HTTPStatusError:
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx2.Response(status, content=body, headers=headers, request=REQUEST)
    return httpx2.HTTPStatusError("failed", request=REQUEST, response=response)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, Unprocessable),
        (401, Forbidden),
        (403, Forbidden),
        (404, NotFound),
        (422, Unprocessable),
        (429, Transient),
        (500, Transient),
        (503, Transient),
        (418, KubeError),
    ],
)
def test_status_codes_map_to_one_class_each(status: int, expected: type[KubeError]) -> None:
    error = translate(_reply(status, b"", None))
    assert type(error) is expected
    assert error.status == status


def test_the_message_carries_status_reason_and_a_truncated_api_message() -> None:
    body = b'{"kind":"Status","reason":"Forbidden","message":"' + b"x" * 1000 + b'"}'
    error = translate(_reply(403, body, "application/json"), what="get Secret a/b")
    assert str(error).startswith("get Secret a/b: 403 Forbidden: xxx")
    assert len(str(error)) < 250
    assert error.reason == "Forbidden"


def test_transport_failures_are_transient() -> None:
    assert isinstance(translate(httpx2.ConnectError("refused", request=REQUEST)), Transient)
    assert isinstance(translate(httpx2.ReadTimeout("slow", request=REQUEST)), Transient)
    assert isinstance(translate(httpx2.RemoteProtocolError("cut", request=REQUEST)), Transient)
    assert isinstance(translate(TimeoutError()), Transient)


def test_translated_chains_the_original_and_leaves_bugs_alone() -> None:
    original = httpx2.ConnectError("refused", request=REQUEST)
    with pytest.raises(Transient) as caught, translated("list"):
        raise original
    assert caught.value.__cause__ is original
    with pytest.raises(ZeroDivisionError), translated("list"):
        _ = 1 / 0


def test_a_reply_without_content_type_is_still_classified() -> None:
    # lightkube looks the header up unguarded and raises KeyError from its error path.
    def lightkube_raise_for_status() -> None:
        try:
            raise _reply(502, b"bad gateway", None)
        except httpx2.HTTPStatusError as e:
            raise KeyError("content-type") from e

    with pytest.raises(Transient) as caught, translated("get"):
        lightkube_raise_for_status()
    assert caught.value.status == 502


@pytest.mark.stack
async def test_real_api_errors_are_translated(admin: lightkube.AsyncClient, namespace: str) -> None:
    with pytest.raises(NotFound) as missing, translated("get"):
        await admin.get(Secret, "absent", namespace=namespace)
    assert missing.value.reason == "NotFound"
    with pytest.raises(Unprocessable), translated("create"):
        await admin.create(ConfigMap(metadata=ObjectMeta(name="Not_Valid", namespace=namespace)))


@pytest.mark.stack
async def test_a_service_account_without_rights_is_forbidden(
    service_account_client: tuple[lightkube.AsyncClient, tuple[str, str]], namespace: str
) -> None:
    client, _ = service_account_client
    with pytest.raises(Forbidden) as caught, translated("get"):
        await client.get(Secret, "anything", namespace=namespace)
    assert caught.value.status == 403


@pytest.mark.stack
async def test_an_unreachable_server_is_transient(stack: LocalStack, tmp_path: Path) -> None:
    config = stack.kubeconfig.read_text().replace(stack.control_plane.server, "https://127.0.0.1:1")
    (tmp_path / "kubeconfig").write_text(config)
    client = make_client(kubeconfig=tmp_path / "kubeconfig", timeout=2.0)
    try:
        with pytest.raises(Transient), translated("get"):
            await client.get(Secret, "x", namespace="default")
    finally:
        await client.close()
