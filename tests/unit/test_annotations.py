"""The identity annotation is validated strictly; status values are stable and readable."""

# NB: no `from __future__ import annotations` here: it would shadow the module of that name.

import pytest

from pull_secret_updater.core import annotations
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.providers.chainguard import spec as chainguard_spec

UID = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"


def test_keys_use_the_documented_prefix() -> None:
    assert chainguard_spec.IDENTITY == "pull-secret-updater.chainguard.dev/identity"
    assert annotations.EXPIRES_AT == "pull-secret-updater.chainguard.dev/expires-at"
    assert annotations.LAST_REFRESH == "pull-secret-updater.chainguard.dev/last-refresh"
    assert annotations.LAST_ERROR == "pull-secret-updater.chainguard.dev/last-error"
    assert chainguard_spec.FILLED_IDENTITY == "pull-secret-updater.chainguard.dev/filled-identity"
    assert annotations.TOKEN_HASH == "pull-secret-updater.chainguard.dev/token-hash"
    assert all(key.startswith(annotations.PREFIX) for key in annotations.STATUS)
    assert chainguard_spec.IDENTITY not in annotations.STATUS


def test_the_token_hash_of_earlier_versions_counts_as_status_so_it_is_cleared() -> None:
    # Written by earlier versions; anyone could compute it, so it must go, never be read.
    assert annotations.TOKEN_HASH in annotations.STATUS
    assert set(annotations.STATUS) == {
        annotations.EXPIRES_AT,
        annotations.LAST_REFRESH,
        annotations.LAST_ERROR,
        annotations.TOKEN_HASH,
    }


@pytest.mark.parametrize("value", [UID, "abc", "a.b_c-d/E", "x" * 256])
def test_valid_identities_are_returned_unchanged(value: str) -> None:
    assert chainguard_spec.validate_identity(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "is missing"),
        ("", "is empty"),
        ("   ", "is only whitespace"),
        ("\t\n", "is only whitespace"),
        (f" {UID}", "has leading or trailing whitespace; remove it"),
        (f"{UID}\n", "has leading or trailing whitespace; remove it"),
        ("x" * 257, "is 257 characters long, more than 256"),
        ("abc def", "contains ' ' at position 4"),
        ("abc:def", "contains ':' at position 4"),
        ("abcé", "contains 'é' at position 4"),
        ("a*", "contains '*' at position 2"),
    ],
)
def test_bad_identities_are_rejected_with_the_cause(value: str | None, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        chainguard_spec.validate_identity(value)
    assert caught.value.reason == "BadAnnotation"
    assert chainguard_spec.IDENTITY in caught.value.message
    assert message in caught.value.message


def test_a_pasted_token_is_not_echoed() -> None:
    pasted = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl with trailing words"
    with pytest.raises(BadInput) as caught:
        chainguard_spec.validate_identity(pasted)
    assert "eyJ" not in caught.value.message


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_750_000_000.9, "2025-06-15T15:06:40Z"),
        (253402300799, "9999-12-31T23:59:59Z"),
    ],
)
def test_format_time_is_rfc3339_utc_to_the_second(epoch: float, text: str) -> None:
    assert annotations.format_time(epoch) == text


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2025-06-15T15:06:40Z", 1_750_000_000.0),
        ("2025-06-15T17:06:40+02:00", 1_750_000_000.0),
        ("2025-06-15T15:06:40.5Z", 1_750_000_000.5),
        ("2025-06-15T15:06:40", None),  # no offset: ambiguous
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, epoch: float | None) -> None:
    assert annotations.parse_time(text) == epoch


def test_truncate_error_keeps_one_short_line() -> None:
    assert annotations.truncate_error("a\nb\t c") == "a b c"
    long = annotations.truncate_error("x" * 10_000)
    assert len(long) == annotations.MAX_ERROR_LENGTH
    assert long.endswith("...")
