"""Refresh times stay inside the token's lifetime; backoff grows, is capped, never hot-loops."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pull_secret_updater.core.timing import (
    NON_RETRYABLE_FACTOR,
    Schedule,
    backoff,
    refresh_at,
)

SEEDS = range(500)
ISSUED = 1_750_000_000.0
HOUR = 3600.0


def test_refresh_is_at_the_fraction_of_the_lifetime_without_jitter() -> None:
    when = refresh_at(
        issued_at=ISSUED, expires_at=ISSUED + HOUR, margin=60, jitter=0, rng=random.Random(1)
    )
    assert when == pytest.approx(ISSUED + 2400)


def test_jitter_stays_within_its_band_and_spreads() -> None:
    times = [
        refresh_at(issued_at=ISSUED, expires_at=ISSUED + HOUR, margin=60, rng=random.Random(seed))
        for seed in SEEDS
    ]
    assert all(ISSUED + 0.5666 * HOUR <= t <= ISSUED + 0.7667 * HOUR for t in times)
    # Spread, not a constant: both halves of the band are used.
    assert min(times) < ISSUED + 2300 < ISSUED + 2500 < max(times)


def test_same_seed_gives_the_same_time() -> None:
    def at(seed: int) -> float:
        return refresh_at(
            issued_at=ISSUED, expires_at=ISSUED + HOUR, margin=60, rng=random.Random(seed)
        )

    assert at(7) == at(7)
    assert at(7) != at(8)


def test_refresh_is_never_later_than_the_margin_before_expiry() -> None:
    for seed in SEEDS:
        when = refresh_at(
            issued_at=ISSUED,
            expires_at=ISSUED + 600,
            margin=300,
            fraction=0.9,
            jitter=0.09,
            rng=random.Random(seed),
        )
        assert when <= ISSUED + 300


def test_refresh_is_never_earlier_than_the_floor_after_issue() -> None:
    for seed in SEEDS:
        when = refresh_at(
            issued_at=ISSUED,
            expires_at=ISSUED + 100,
            margin=0,
            fraction=0.01,
            jitter=0.5,
            floor=5,
            rng=random.Random(seed),
        )
        assert when >= ISSUED + 5


@pytest.mark.parametrize("lifetime", [1.0, 60.0, 299.0, 300.0])
def test_a_lifetime_shorter_than_the_margin_refreshes_half_way(lifetime: float) -> None:
    when = refresh_at(
        issued_at=ISSUED, expires_at=ISSUED + lifetime, margin=300, rng=random.Random(0)
    )
    assert when == ISSUED + lifetime / 2


def test_a_token_expired_at_issue_is_refreshed_at_once() -> None:
    when = refresh_at(issued_at=ISSUED, expires_at=ISSUED - 5, margin=60, rng=random.Random(0))
    assert when == ISSUED


@given(
    issued=st.floats(min_value=0, max_value=4e9),
    lifetime=st.floats(min_value=0.001, max_value=1e7),
    margin=st.floats(min_value=0, max_value=1e4),
    fraction=st.floats(min_value=0.01, max_value=0.99),
    jitter=st.floats(min_value=0, max_value=0.5),
    seed=st.integers(),
)
def test_refresh_is_always_inside_the_lifetime(
    issued: float, lifetime: float, margin: float, fraction: float, jitter: float, seed: int
) -> None:
    expires = issued + lifetime
    when = refresh_at(
        issued_at=issued,
        expires_at=expires,
        margin=margin,
        fraction=fraction,
        jitter=jitter,
        rng=random.Random(seed),
    )
    assert issued <= when <= expires
    if when != issued + (expires - issued) / 2:
        assert when <= expires - margin


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fraction": 0.0},
        {"fraction": 1.0},
        {"jitter": -0.1},
        {"jitter": 1.0},
        {"margin": -1.0},
        {"margin": float("nan")},
        {"floor": -1.0},
        {"expires_at": float("inf")},
    ],
)
def test_refresh_rejects_nonsense_parameters(kwargs: dict[str, float]) -> None:
    arguments: dict[str, float] = {"issued_at": ISSUED, "expires_at": ISSUED + HOUR, "margin": 60}
    arguments.update(kwargs)
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        refresh_at(rng=random.Random(0), **arguments)


def test_schedule_checks_its_parameters() -> None:
    assert Schedule().margin == 300
    with pytest.raises(ValueError, match="fraction"):
        Schedule(fraction=1.5)


# --- backoff --------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 9, 20, 10_000])
def test_backoff_is_between_half_and_all_of_the_capped_exponential(attempt: int) -> None:
    ceiling = min(300.0, 2.0 ** min(attempt - 1, 64))
    delays = [backoff(attempt=attempt, retryable=True, rng=random.Random(seed)) for seed in SEEDS]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 4  # actually jittered


def test_backoff_grows_until_the_cap() -> None:
    rng = random.Random(0)
    lows = [
        min(backoff(attempt=a, retryable=True, rng=rng) for _ in range(50)) for a in range(1, 12)
    ]
    assert lows[:9] == sorted(lows[:9])
    assert all(150 <= low <= 300 for low in lows[9:])


def test_non_retryable_failures_back_off_slower_with_the_same_cap() -> None:
    for seed in SEEDS:
        first = backoff(attempt=1, retryable=False, rng=random.Random(seed))
        assert NON_RETRYABLE_FACTOR / 2 <= first <= NON_RETRYABLE_FACTOR
        assert backoff(attempt=50, retryable=False, rng=random.Random(seed)) <= 300


def test_backoff_respects_custom_base_and_cap() -> None:
    for seed in SEEDS:
        assert 0.05 <= backoff(attempt=1, retryable=True, rng=random.Random(seed), base=0.1) <= 0.1
        delay = backoff(attempt=30, retryable=True, rng=random.Random(seed), cap=10)
        assert 5 <= delay <= 10


@pytest.mark.parametrize(
    "kwargs", [{"attempt": 0}, {"base": 0.0}, {"cap": -1.0}, {"base": float("inf")}]
)
def test_backoff_rejects_nonsense_parameters(kwargs: dict[str, float]) -> None:
    arguments: dict[str, float] = {"attempt": 1}
    arguments.update(kwargs)
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        backoff(retryable=True, rng=random.Random(0), **arguments)  # type: ignore[arg-type]
