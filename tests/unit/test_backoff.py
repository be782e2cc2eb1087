"""Retry delays grow, are capped, never hot-loop, start slower for failures waiting will not
fix, and obey a server's Retry-After up to a bound."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pull_secret_updater.core.backoff import MAX_RETRY_AFTER, NON_RETRYABLE_FACTOR, Backoff

SEEDS = range(500)


def delays(backoff: Backoff, *, attempt: int, **kwargs: object) -> list[float]:
    return [
        backoff.delay(attempt=attempt, rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]
        for seed in SEEDS
    ]


def test_the_defaults_are_the_documented_ones() -> None:
    assert Backoff() == Backoff(base=1, cap=300)
    assert NON_RETRYABLE_FACTOR == 8
    assert MAX_RETRY_AFTER == 3600


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 9, 20, 10_000])
def test_a_delay_is_between_half_and_all_of_the_capped_exponential(attempt: int) -> None:
    ceiling = min(300.0, 2.0 ** min(attempt - 1, 64))
    found = delays(Backoff(), attempt=attempt)
    assert all(ceiling / 2 <= d <= ceiling for d in found)
    assert max(found) - min(found) > ceiling / 4  # actually jittered


def test_each_retry_waits_at_least_as_long_as_any_before_it_until_the_cap() -> None:
    backoff = Backoff(base=1, cap=300)
    previous = delays(backoff, attempt=1)
    for attempt in range(2, 10):  # 2**8 = 256 is the last ceiling below the cap
        current = delays(backoff, attempt=attempt)
        assert min(current) >= max(previous)
        previous = current


def test_delays_stop_growing_at_the_cap() -> None:
    for attempt in (10, 11, 64, 65, 10**9):
        found = delays(Backoff(base=1, cap=300), attempt=attempt)
        assert all(150 <= d <= 300 for d in found)


def test_failures_waiting_will_not_fix_start_slower_with_the_same_cap() -> None:
    backoff = Backoff()
    first = delays(backoff, attempt=1, retryable=False)
    assert all(NON_RETRYABLE_FACTOR / 2 <= d <= NON_RETRYABLE_FACTOR for d in first)
    assert min(first) > max(delays(backoff, attempt=1))
    assert all(150 <= d <= 300 for d in delays(backoff, attempt=50, retryable=False))


def test_custom_base_and_cap() -> None:
    assert all(0.05 <= d <= 0.1 for d in delays(Backoff(base=0.1, cap=10), attempt=1))
    assert all(5 <= d <= 10 for d in delays(Backoff(base=0.1, cap=10), attempt=30))


def test_a_server_asking_for_longer_is_obeyed() -> None:
    assert delays(Backoff(), attempt=1, retry_after=120) == [120.0] * len(SEEDS)


def test_retry_after_may_exceed_the_cap() -> None:
    assert delays(Backoff(cap=300), attempt=30, retry_after=1000) == [1000.0] * len(SEEDS)


def test_retry_after_longer_than_the_bound_counts_as_the_bound() -> None:
    found = delays(Backoff(), attempt=1, retry_after=30 * 24 * 3600)
    assert found == [MAX_RETRY_AFTER] * len(SEEDS)


def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    backoff = Backoff()
    assert delays(backoff, attempt=9, retry_after=1) == delays(backoff, attempt=9)


@pytest.mark.parametrize("retry_after", [0.0, -5.0, math.nan, math.inf, -math.inf])
def test_a_nonsense_retry_after_is_ignored(retry_after: float) -> None:
    backoff = Backoff()
    assert delays(backoff, attempt=3, retry_after=retry_after) == delays(backoff, attempt=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": 0.0}, "backoff base must be a number of seconds > 0"),
        ({"base": -1.0}, "backoff base must be a number of seconds > 0"),
        ({"base": math.inf}, "backoff base must be a number of seconds > 0"),
        ({"cap": math.nan}, "backoff cap must be a number of seconds > 0"),
        ({"cap": 0.0}, "backoff cap must be a number of seconds > 0"),
        ({"base": 2.0, "cap": 1.0}, r"backoff cap \(1s\) must be at least backoff base \(2s\)"),
    ],
)
def test_nonsense_parameters_are_refused_with_the_reason(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt counts from 1"):
        Backoff().delay(attempt=attempt, rng=random.Random(0))


@given(
    base=st.floats(min_value=1e-3, max_value=1e3),
    extra=st.floats(min_value=0, max_value=1e4),
    attempt=st.integers(min_value=1, max_value=10**12),
    retryable=st.booleans(),
    retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    seed=st.integers(),
)
def test_a_delay_is_never_a_hot_loop_and_never_unbounded(
    base: float,
    extra: float,
    attempt: int,
    retryable: bool,
    retry_after: float | None,
    seed: int,
) -> None:
    backoff = Backoff(base=base, cap=base + extra)
    delay = backoff.delay(
        attempt=attempt, rng=random.Random(seed), retryable=retryable, retry_after=retry_after
    )
    assert delay >= min(backoff.base, backoff.cap) / 2 > 0
    honoured = (
        min(retry_after, MAX_RETRY_AFTER)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0
        else 0.0
    )
    assert delay <= max(backoff.cap, honoured)
    assert delay >= honoured


@pytest.mark.parametrize("attempt", [1, 5, 9, 20])
@pytest.mark.parametrize("expires_in", [0.5, 1.5, 3.0, 20.0, 100.0])
def test_a_failed_refresh_is_retried_before_the_credential_in_place_expires(
    attempt: int, expires_in: float
) -> None:
    backoff = Backoff(base=1, cap=300)
    uncapped = delays(backoff, attempt=attempt)
    found = delays(backoff, attempt=attempt, expires_in=expires_in)
    limit = max(1.0, expires_in / 2)
    assert all(d <= limit for d in found)
    assert all(c <= u for c, u in zip(found, uncapped, strict=True)), "the cap only shortens"
    # Never below the base either: closing in on the expiry is not a hot loop.
    assert all(d >= min(u, 1.0) for d, u in zip(found, uncapped, strict=True))


def test_retries_close_in_on_the_expiry_instead_of_jumping_past_it() -> None:
    """A refresh failing from 20 s before expiry on, after 4 earlier failures: the next tries
    all fall before the expiry, and the last one within a base of it."""
    backoff = Backoff(base=1, cap=300)
    for seed in SEEDS:
        rng = random.Random(seed)
        left, attempt, tries = 20.0, 5, []
        while left > 0:
            tries.append(left)
            left -= backoff.delay(attempt=attempt, rng=rng, expires_in=left)
            attempt += 1
        assert len(tries) >= 4
        assert tries[-1] <= 2.0, tries


def test_the_expiry_does_not_hurry_what_retrying_cannot_fix_nor_override_a_server() -> None:
    backoff = Backoff(base=1, cap=300)
    slow = delays(backoff, attempt=3, retryable=False, expires_in=10)
    assert min(slow) >= NON_RETRYABLE_FACTOR * 2, "a 403 is not retried faster near expiry"
    asked = delays(backoff, attempt=1, retry_after=60, expires_in=10)
    assert set(asked) == {60.0}, "Retry-After wins: the server cannot answer sooner"
    gone = delays(backoff, attempt=3, expires_in=-5)
    assert gone == delays(backoff, attempt=3), "an expired credential has nothing to save"
