"""The log pipeline: JSON lines, and no credential in them even when a message carries one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import jwt
import pytest
import structlog

from pull_secret_updater.runtime.logs import configure_logging

TOKEN = jwt.encode({"sub": "someone"}, "a-signing-key-for-the-log-tests-only", algorithm="HS256")


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What the log handler writes once logging is configured as `run` does it; undone after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("debug")
    (handler,) = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_our_lines_are_json_with_their_fields(written: io.StringIO) -> None:
    structlog.get_logger("tests.logs").info("token written", namespace="team-a", name="pull-secret")
    (record,) = lines(written)
    assert record["event"] == "token written"
    assert (record["namespace"], record["name"]) == ("team-a", "pull-secret")
    assert record["level"] == "info"


def test_a_token_in_a_message_or_a_field_is_redacted(written: io.StringIO) -> None:
    structlog.get_logger("tests.logs").warning(f"failed with {TOKEN}", error=f"Bearer {TOKEN}")
    logging.getLogger("some.library").warning("sent %s", TOKEN)
    assert len(lines(written)) == 2
    assert "eyJ" not in written.getvalue()
    assert written.getvalue().count("[redacted]") == 3
