"""How long the kubelet may keep a credential the plugin hands it: until a margin before the
token's verified expiry, never beyond the max interval after issue, never negative."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pull_secret_updater.core.schedule import (
    DEFAULT_CACHE_MARGIN,
    DEFAULT_MAX_INTERVAL,
    cache_duration,
)

ISSUED = 1_750_000_000.0
HOUR = 3600.0


def test_a_fresh_hour_long_token_is_kept_until_the_margin_before_it_expires() -> None:
    kept = cache_duration(issued_at=ISSUED, expires_at=ISSUED + HOUR, now=ISSUED)
    assert DEFAULT_CACHE_MARGIN == 300
    assert kept == 3300


def test_time_already_passed_since_issue_is_not_kept_twice() -> None:
    kept = cache_duration(issued_at=ISSUED, expires_at=ISSUED + HOUR, now=ISSUED + 1000.4)
    assert kept == 2299  # whole seconds, rounded down


def test_a_token_that_lives_for_years_is_kept_no_longer_than_the_max_interval() -> None:
    ten_years = 10 * 365 * 24 * HOUR
    kept = cache_duration(issued_at=ISSUED, expires_at=ISSUED + ten_years, now=ISSUED + 60)
    assert DEFAULT_MAX_INTERVAL == 4 * HOUR
    assert kept == 4 * HOUR - 60


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [(200, 300), (300, 300), (3600, 3600)],
    ids=["shorter-than-the-margin", "exactly-the-margin", "margin-as-long-as-the-token"],
)
def test_a_token_inside_its_margin_is_not_kept_at_all(lifetime: float, margin: float) -> None:
    kept = cache_duration(issued_at=ISSUED, expires_at=ISSUED + lifetime, now=ISSUED, margin=margin)
    assert kept == 0


def test_an_expired_token_is_not_kept() -> None:
    assert cache_duration(issued_at=ISSUED, expires_at=ISSUED + HOUR, now=ISSUED + 2 * HOUR) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"margin": -1.0},
        {"margin": float("nan")},
        {"max_interval": 0.0},
        {"max_interval": float("inf")},
        {"now": float("nan")},
        {"expires_at": float("inf")},
    ],
)
def test_nonsense_parameters_are_refused(bad: dict[str, float]) -> None:
    arguments = {"issued_at": ISSUED, "expires_at": ISSUED + HOUR, "now": ISSUED, **bad}
    with pytest.raises(ValueError, match="must be"):
        cache_duration(**arguments)


@given(
    lifetime=st.floats(min_value=1, max_value=1e9),
    elapsed=st.floats(min_value=-100, max_value=2e9),
    margin=st.floats(min_value=0, max_value=1e5),
    max_interval=st.floats(min_value=1, max_value=1e8),
)
def test_whatever_the_times_the_credential_never_outlives_its_bounds(
    lifetime: float, elapsed: float, margin: float, max_interval: float
) -> None:
    now = ISSUED + elapsed
    kept = cache_duration(
        issued_at=ISSUED,
        expires_at=ISSUED + lifetime,
        now=now,
        margin=margin,
        max_interval=max_interval,
    )
    assert isinstance(kept, int)
    assert kept >= 0
    if kept > 0:
        assert now + kept <= ISSUED + lifetime - margin
        assert now + kept <= ISSUED + max_interval
