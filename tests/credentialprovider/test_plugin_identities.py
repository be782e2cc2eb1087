"""Whose token is exchanged for which identity: the ServiceAccount's annotation, else the
node's fallback if the config chose one, else a refusal that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from tests.credentialprovider.support import POD_SA_TOKEN, call, request
from tests.fakes import FakeClock
from tests.tokens.fakes import EXCHANGE_PATH, IDENTITY, SA_TOKEN, FakeTokenService

NODE_IDENTITY = "fedcba98/7654321"


@pytest.fixture
def node_token(tmp_path: Path) -> Path:
    path = tmp_path / "node-token"
    path.write_text(SA_TOKEN + "\n")
    return path


def exchanged(service: FakeTokenService) -> list[tuple[str, str]]:
    """(bearer token, identity) of each exchange the service saw."""
    return [
        (r.headers["Authorization"].removeprefix("Bearer "), r.url.params["identity"])
        for r in service.requests
        if r.url.path == EXCHANGE_PATH
    ]


def test_a_service_account_without_the_annotation_is_refused_with_the_fix() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(annotations={}))
    assert outcome.status == 2
    assert service.requests == []
    assert f"has no annotation {IDENTITY_KEY}" in outcome.stderr
    assert "requiredServiceAccountAnnotationKeys" in outcome.stderr


def test_a_request_without_any_token_and_no_fallback_is_refused() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(token=None, annotations={}))
    assert outcome.status == 2
    assert "no ServiceAccount token and no node fallback" in outcome.stderr


def test_an_annotation_without_a_token_is_a_config_mistake() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(token=None))
    assert outcome.status == 2
    assert "serviceAccountTokenAudience" in outcome.stderr


@pytest.mark.parametrize(
    ("value", "problem"),
    [("", "is empty"), (" abc", "whitespace"), ("a" * 300, "more than 256")],
)
def test_a_malformed_identity_annotation_is_refused_without_quoting_it(
    value: str, problem: str
) -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(service, request(annotations={IDENTITY_KEY: value}))
    assert outcome.status == 2
    assert problem in outcome.stderr
    assert service.requests == []
    if value.strip():
        assert value.strip() not in outcome.stderr


def test_the_annotation_key_is_the_one_the_options_name() -> None:
    service = FakeTokenService(clock=FakeClock())
    outcome = call(
        service,
        request(annotations={"example.com/pull-identity": IDENTITY}),
        "--identity-annotation=example.com/pull-identity",
    )
    assert outcome.status == 0, outcome.stderr
    assert exchanged(service) == [(POD_SA_TOKEN, IDENTITY)]


def test_plain_mode_exchanges_the_nodes_token_for_the_nodes_identity(node_token: Path) -> None:
    service = FakeTokenService(clock=FakeClock())
    args = (f"--node-token-file={node_token}", f"--node-identity={NODE_IDENTITY}")
    outcome = call(service, request(token=None, annotations={}), *args)
    assert outcome.status == 0, outcome.stderr
    assert exchanged(service) == [(SA_TOKEN, NODE_IDENTITY)]
    assert outcome.answer["cacheKeyType"] == "Registry"


def test_with_a_fallback_an_annotated_service_account_still_uses_its_own_identity(
    node_token: Path,
) -> None:
    service = FakeTokenService(clock=FakeClock())
    args = (f"--node-token-file={node_token}", f"--node-identity={NODE_IDENTITY}")
    call(service, request(), *args)
    call(service, request(annotations={}), *args)
    assert exchanged(service) == [(POD_SA_TOKEN, IDENTITY), (SA_TOKEN, NODE_IDENTITY)]


def test_a_missing_node_token_file_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    service = FakeTokenService(clock=FakeClock())
    missing = tmp_path / "nothing-here"
    args = (f"--node-token-file={missing}", f"--node-identity={NODE_IDENTITY}")
    outcome = call(service, request(token=None, annotations={}), *args)
    assert outcome.status == 1
    assert outcome.stderr.count("\n") == 1
    assert f"as the node (token file {missing}) failed" in outcome.stderr
    assert "does not exist" in outcome.stderr
