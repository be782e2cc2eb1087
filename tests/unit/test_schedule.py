"""When a token is refreshed: inside its lifetime, never past the margin or the max interval,
never before the floor, not sooner than min_interval after a write, the same moment for the
same token everywhere."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pull_secret_updater.core.schedule import Schedule

ISSUED = 1_750_000_000.0
HOUR = 3600.0
YEAR = 365 * 24 * HOUR
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhYmMifQ.c2ln"
#: Many distinct tokens with the same times: the spread between them comes from the token.
TOKENS = [f"{TOKEN}-{n}" for n in range(500)]


def test_the_defaults_are_the_documented_ones() -> None:
    assert Schedule() == Schedule(
        fraction=0.66, jitter=0.1, margin=60, max_interval=4 * HOUR, min_interval=5, floor=1
    )


def test_without_jitter_a_token_is_refreshed_at_the_fraction_of_its_lifetime() -> None:
    schedule = Schedule(fraction=2 / 3, jitter=0, margin=60)
    when = schedule.refresh_at(token=TOKEN, issued_at=ISSUED, expires_at=ISSUED + HOUR)
    assert when == pytest.approx(ISSUED + 2400)


def test_jitter_stays_within_its_band_and_spreads_tokens_over_it() -> None:
    schedule = Schedule(fraction=2 / 3, jitter=0.1, margin=60)
    times = [
        schedule.refresh_at(token=token, issued_at=ISSUED, expires_at=ISSUED + HOUR)
        for token in TOKENS
    ]
    low, high = ISSUED + (2 / 3 - 0.1) * HOUR, ISSUED + (2 / 3 + 0.1) * HOUR
    assert all(low <= t <= high for t in times)
    # Spread, not a constant: both ends of the band are used.
    quarter = (high - low) / 4
    assert min(times) < low + quarter
    assert max(times) > high - quarter
    assert len(set(times)) == len(TOKENS)


def test_every_replica_and_every_restart_computes_the_same_moment_for_a_token() -> None:
    def at(schedule: Schedule, now: float | None) -> float:
        return schedule.refresh_at(token=TOKEN, issued_at=ISSUED, expires_at=ISSUED + HOUR, now=now)

    replicas = [Schedule(), Schedule(), Schedule(fraction=0.66, jitter=0.1)]
    moments = {at(schedule, now) for schedule in replicas for now in (None, ISSUED, ISSUED + 60)}
    assert len(moments) == 1


def test_the_jitter_follows_the_whole_token_not_a_prefix() -> None:
    schedule = Schedule()
    first, second = (
        schedule.refresh_at(token=TOKEN + suffix, issued_at=ISSUED, expires_at=ISSUED + HOUR)
        for suffix in ("a", "b")
    )
    assert first != second


def test_refresh_is_never_later_than_the_margin_before_expiry() -> None:
    schedule = Schedule(fraction=0.9, jitter=0.09, margin=300)
    for token in TOKENS:
        when = schedule.refresh_at(token=token, issued_at=ISSUED, expires_at=ISSUED + 600)
        assert when <= ISSUED + 300


def test_a_token_with_an_absurd_expiry_is_still_refreshed_within_the_max_interval() -> None:
    schedule = Schedule(max_interval=4 * HOUR)
    for token in TOKENS[:50]:
        when = schedule.refresh_at(token=token, issued_at=ISSUED, expires_at=ISSUED + 10 * YEAR)
        assert when == ISSUED + 4 * HOUR


def test_refresh_is_never_sooner_than_the_floor_after_issue() -> None:
    schedule = Schedule(fraction=0.02, jitter=0.01, margin=0, floor=5)
    for token in TOKENS:
        when = schedule.refresh_at(token=token, issued_at=ISSUED, expires_at=ISSUED + 100)
        assert when == ISSUED + 5


@pytest.mark.parametrize("lifetime", [1.0, 30.0, 60.0, 60.9])
def test_a_token_too_short_for_margin_and_floor_is_refreshed_half_way(lifetime: float) -> None:
    when = Schedule(margin=60, floor=1).refresh_at(
        token=TOKEN, issued_at=ISSUED, expires_at=ISSUED + lifetime
    )
    assert when == ISSUED + lifetime / 2


def test_a_token_just_long_enough_for_both_bounds_is_refreshed_at_the_margin() -> None:
    when = Schedule(margin=60, floor=1).refresh_at(
        token=TOKEN, issued_at=ISSUED, expires_at=ISSUED + 61.5
    )
    assert when == ISSUED + 1.5


@pytest.mark.parametrize("expires_at", [ISSUED, ISSUED - 5])
def test_a_token_with_an_empty_lifetime_is_refreshed_at_once(expires_at: float) -> None:
    assert Schedule().refresh_at(token=TOKEN, issued_at=ISSUED, expires_at=expires_at) == ISSUED


@pytest.mark.parametrize(
    ("issued_at", "expires_at"),
    [(ISSUED, math.inf), (math.nan, ISSUED), (-math.inf, ISSUED), (ISSUED, math.nan)],
)
def test_times_that_are_not_finite_are_refused(issued_at: float, expires_at: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Schedule().refresh_at(token=TOKEN, issued_at=issued_at, expires_at=expires_at)


# -- the last write ----------------------------------------------------------------------------


def _skewed(schedule: Schedule, *, written_at: float | None, now: float) -> float:
    """A token that its own times say is overdue (a token service whose clock is behind)."""
    return schedule.refresh_at(
        token=TOKEN,
        issued_at=now - 3000,
        expires_at=now - 3000 + HOUR,
        written_at=written_at,
        now=now,
    )


def test_a_token_written_moments_ago_is_not_rewritten_sooner_than_min_interval() -> None:
    schedule = Schedule(min_interval=5)
    now = ISSUED
    assert _skewed(schedule, written_at=None, now=now) < now  # overdue by its own times
    assert _skewed(schedule, written_at=now, now=now) == now + 5
    assert _skewed(schedule, written_at=now - 2, now=now) == now + 3


def test_a_last_write_in_the_future_counts_as_now() -> None:
    schedule = Schedule(min_interval=5)
    now = ISSUED
    planted = _skewed(schedule, written_at=now + 10 * YEAR, now=now)
    assert planted == _skewed(schedule, written_at=now, now=now) == now + 5


def test_min_interval_gives_way_to_the_margin() -> None:
    schedule = Schedule(margin=60, min_interval=300)
    now = ISSUED
    # Expires in 100s: refreshing 300s after the write would be 200s too late.
    when = schedule.refresh_at(
        token=TOKEN, issued_at=now - 3500, expires_at=now + 100, written_at=now, now=now
    )
    assert when == now + 40


def test_min_interval_gives_way_to_the_max_interval() -> None:
    schedule = Schedule(margin=60, max_interval=600, min_interval=300)
    now = ISSUED
    when = schedule.refresh_at(
        token=TOKEN, issued_at=now - 500, expires_at=now + YEAR, written_at=now, now=now
    )
    assert when == now + 100


def test_an_old_write_does_not_postpone_a_token_that_is_not_due() -> None:
    schedule = Schedule()
    without = schedule.refresh_at(token=TOKEN, issued_at=ISSUED, expires_at=ISSUED + HOUR)
    with_old_write = schedule.refresh_at(
        token=TOKEN,
        issued_at=ISSUED,
        expires_at=ISSUED + HOUR,
        written_at=ISSUED,
        now=ISSUED + 120,
    )
    assert with_old_write == without


# -- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction": 0.0}, "refresh fraction must be between 0 and 1"),
        ({"fraction": 1.0}, "refresh fraction must be between 0 and 1"),
        ({"fraction": math.nan}, "refresh fraction must be between 0 and 1"),
        ({"jitter": -0.1}, "refresh jitter must be at least 0 and less than 1"),
        ({"jitter": 1.0}, "refresh jitter must be at least 0 and less than 1"),
        (
            {"fraction": 0.95, "jitter": 0.1},
            r"refresh fraction \+/- jitter \(0.85 to 1.05\) must stay between 0 and 1",
        ),
        ({"fraction": 0.1, "jitter": 0.1}, r"\(0 to 0.2\) must stay between 0 and 1"),
        ({"margin": -1.0}, "margin must be a number of seconds >= 0"),
        ({"margin": math.nan}, "margin must be a number of seconds >= 0"),
        ({"min_interval": math.inf}, "min interval must be a number of seconds >= 0"),
        ({"floor": -1.0}, "floor must be a number of seconds >= 0"),
        ({"max_interval": 0.0}, "max interval must be a number of seconds > 0"),
        ({"max_interval": math.inf}, "max interval must be a number of seconds > 0"),
    ],
)
def test_nonsense_parameters_are_refused_with_the_reason(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)


# -- properties --------------------------------------------------------------------------------


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    fraction = draw(st.floats(min_value=0.02, max_value=0.98))
    share = draw(st.floats(min_value=0, max_value=0.99))
    try:
        return Schedule(
            fraction=fraction,
            jitter=share * min(fraction, 1 - fraction),
            margin=draw(st.floats(min_value=0, max_value=1e4)),
            max_interval=draw(st.floats(min_value=1, max_value=1e6)),
            min_interval=draw(st.floats(min_value=0, max_value=1e3)),
            floor=draw(st.floats(min_value=0, max_value=1)),
        )
    except ValueError:
        assume(False)
        raise


times = st.floats(min_value=0, max_value=4e9)
lifetimes = st.floats(min_value=0.001, max_value=1e9)


@given(
    schedule=schedules(),
    issued=times,
    lifetime=lifetimes,
    token=st.text(max_size=50),
    written_at=st.none() | times,
    now=st.none() | times,
)
def test_refresh_respects_every_bound_whatever_the_token_says(
    schedule: Schedule,
    issued: float,
    lifetime: float,
    token: str,
    written_at: float | None,
    now: float | None,
) -> None:
    expires = issued + lifetime
    assume(expires > issued)
    when = schedule.refresh_at(
        token=token, issued_at=issued, expires_at=expires, written_at=written_at, now=now
    )
    assert issued <= when <= expires
    latest = min(expires - schedule.margin, issued + schedule.max_interval)
    if issued + schedule.floor <= latest:
        assert when <= expires - schedule.margin
        assert when <= issued + schedule.max_interval
        assert when >= issued + schedule.floor
        if written_at is not None:
            last_write = written_at if now is None else min(written_at, now)
            assert when >= min(last_write + schedule.min_interval, latest)
    else:
        # Too short-lived for its bounds: half-way through, the most time on either side,
        # and still within max_interval of issue.
        assert when == issued + min((expires - issued) / 2, schedule.max_interval)


@given(schedule=schedules(), issued=times, lifetime=lifetimes, token=st.text(max_size=50))
def test_refresh_is_a_function_of_the_token_and_its_times(
    schedule: Schedule, issued: float, lifetime: float, token: str
) -> None:
    def at(now: float | None) -> float:
        return Schedule(
            fraction=schedule.fraction,
            jitter=schedule.jitter,
            margin=schedule.margin,
            max_interval=schedule.max_interval,
            min_interval=schedule.min_interval,
            floor=schedule.floor,
        ).refresh_at(token=token, issued_at=issued, expires_at=issued + lifetime, now=now)

    assert at(None) == at(issued) == at(issued + lifetime) == at(0)


@given(
    schedule=schedules(),
    issued=times,
    lifetime=lifetimes,
    now=times,
    ahead=st.floats(min_value=0, max_value=1e9),
)
def test_a_last_write_in_the_future_never_postpones_more_than_one_written_now(
    schedule: Schedule, issued: float, lifetime: float, now: float, ahead: float
) -> None:
    def at(written_at: float) -> float:
        return schedule.refresh_at(
            token="t",
            issued_at=issued,
            expires_at=issued + lifetime,
            written_at=written_at,
            now=now,
        )

    assert at(now + ahead) == at(now)


@pytest.mark.parametrize(
    ("schedule", "lifetime"),
    [
        pytest.param(Schedule(max_interval=0.5, floor=1), 10 * YEAR, id="max-interval-below-floor"),
        pytest.param(Schedule(margin=60, max_interval=20), 50.0, id="shorter-than-the-margin"),
    ],
)
def test_the_max_interval_bounds_even_a_token_too_short_for_its_other_bounds(
    schedule: Schedule, lifetime: float
) -> None:
    when = schedule.refresh_at(token=TOKEN, issued_at=ISSUED, expires_at=ISSUED + lifetime)
    assert when <= ISSUED + max(schedule.max_interval, schedule.floor)
