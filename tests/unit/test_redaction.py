"""The one redaction and the one truncation: what leaves a credential out of a message."""

from __future__ import annotations

import jwt
import pytest

from pull_secret_updater.core.redaction import REDACTED, redact, truncate

TOKEN = jwt.encode(
    {"sub": "someone", "exp": 1_800_000_000},
    "a-key-for-tests-that-is-long-enough-for-hs256",
    algorithm="HS256",
)


def test_a_whole_jwt_is_redacted() -> None:
    assert redact(f"rejected {TOKEN} as expired") == f"rejected {REDACTED} as expired"


@pytest.mark.parametrize("cut", [5, 12, 40, -1])
def test_a_jwt_cut_short_is_redacted_too(cut: int) -> None:
    fragment = TOKEN[:cut]
    assert "eyJ" not in redact(f"token {fragment}...")


def test_what_follows_bearer_is_redacted_whatever_its_shape() -> None:
    assert redact("Authorization: Bearer opaque.credential") == f"Authorization: Bearer {REDACTED}"
    assert redact("authorization: bearer x") == f"authorization: Bearer {REDACTED}"


def test_a_known_secret_is_redacted_whatever_its_shape() -> None:
    assert redact("sent s3cr3t-value twice: s3cr3t-value", known=("s3cr3t-value",)) == (
        f"sent {REDACTED} twice: {REDACTED}"
    )


def test_an_empty_known_secret_changes_nothing() -> None:
    assert redact("nothing to hide", known=("",)) == "nothing to hide"


def test_ordinary_text_is_left_alone() -> None:
    text = "identity 0123abcd/4567ef in namespace team-a: 403 Forbidden"
    assert redact(text) == text


def test_truncate_makes_one_line_of_whitespace() -> None:
    assert truncate("a\nb\t  c\r\n", limit=100) == "a b c"


def test_truncate_cuts_at_the_limit_and_says_so() -> None:
    cut = truncate("x" * 10_000, limit=200)
    assert len(cut) == 200
    assert cut.endswith("...")
    assert truncate("x" * 200, limit=200) == "x" * 200


def test_truncate_needs_room_for_the_ellipsis() -> None:
    with pytest.raises(ValueError, match="room"):
        truncate("abc", limit=2)
