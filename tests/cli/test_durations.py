"""Durations read the way a person reads them, and never promise more time than is left."""

from __future__ import annotations

import math

import pytest

from pull_secret_updater.tools.durations import format_duration, format_expiry, format_since

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (45, "45s"),
        (59.99, "59s"),
        (60, "1m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (3599.9, "59m"),
        (3600, "1h"),
        (7500, "2h5m"),
        (86399, "23h59m"),
        (86400, "1d"),
        (3 * 86400 + 4 * 3600 + 59, "3d4h"),
        (-5, "0s"),
        (math.nan, "0s"),
        (math.inf, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (41 * 60 + 30, "in 41m"),
        (3599.5, "in 59m"),
        (5, "in 5s"),
        (0, "expired 0s ago"),
        (-180, "expired 3m ago"),
        (-2 * 86400, "expired 2d ago"),
    ],
)
def test_format_expiry(offset: float, text: str) -> None:
    assert format_expiry(NOW + offset, now=NOW) == text


def test_unknown_times_read_as_a_dash() -> None:
    assert format_expiry(None, now=NOW) == "-"
    assert format_since(None, now=NOW) == "-"


@pytest.mark.parametrize(
    ("offset", "text"), [(-720, "12m ago"), (-0.2, "just now"), (30, "just now")]
)
def test_format_since(offset: float, text: str) -> None:
    assert format_since(NOW + offset, now=NOW) == text
