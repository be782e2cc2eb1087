"""Durations and moments worded for people: `41m`, `in 41m`, `expired 3m ago`.

Two units at most, largest first, rounded down, so a token that has 59 minutes and 58 seconds
left reads "in 59m" and never claims more time than it has. Seconds are shown only under ten
minutes, where they matter. Pure; `now` is always a parameter.
"""

from __future__ import annotations

import math

__all__ = ["format_duration", "format_expiry", "format_since"]

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def format_duration(seconds: float) -> str:
    """A non-negative span: `45s`, `3m20s`, `41m`, `2h`, `2h5m`, `3d4h`; negatives count as 0."""
    total = int(seconds) if math.isfinite(seconds) and seconds > 0 else 0
    if total < _MINUTE:
        return f"{total}s"
    if total < 10 * _MINUTE:
        minutes, rest = divmod(total, _MINUTE)
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if total < _HOUR:
        return f"{total // _MINUTE}m"
    if total < _DAY:
        hours, rest = divmod(total, _HOUR)
        minutes = rest // _MINUTE
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, rest = divmod(total, _DAY)
    hours = rest // _HOUR
    return f"{days}d{hours}h" if hours else f"{days}d"


def format_expiry(expires_at: float | None, *, now: float) -> str:
    """`in 41m` for a time to come, `expired 3m ago` for one past, `-` when unknown."""
    if expires_at is None:
        return "-"
    remaining = expires_at - now
    if remaining > 0:
        return f"in {format_duration(remaining)}"
    return f"expired {format_duration(-remaining)} ago"


def format_since(moment: float | None, *, now: float) -> str:
    """`12m ago` for a past moment (a clock a little ahead reads `just now`), `-` if unknown."""
    if moment is None:
        return "-"
    elapsed = now - moment
    if elapsed < 1:
        return "just now"
    return f"{format_duration(elapsed)} ago"
