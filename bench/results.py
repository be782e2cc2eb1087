"""What a scenario hands back: its figures, its targets, and the data behind its plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Target:
    """One target of the benchmark: what was required, what was measured, and the verdict."""

    name: str
    requirement: str
    measured: str
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISSED"


@dataclass(kw_only=True)
class ScenarioResult:
    name: str
    title: str
    seconds: float = 0.0
    #: Every number the scenario measured, JSON-ready.
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    #: Series for the plots (also written to results.json).
    series: dict[str, Any] = field(default_factory=dict)
    #: Rows of one table for the summary (every row with the same keys, the header).
    table: list[dict[str, Any]] = field(default_factory=list)
    #: One-line remarks for the summary.
    notes: list[str] = field(default_factory=list)
    #: Process logs worth keeping (name -> text), written to `logs/<scenario>-<name>.log`.
    logs: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (0-100) with linear interpolation between ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float], *, digits: int = 3) -> dict[str, float]:
    """count, min, p50, p90, p99, max and mean of `values`, rounded."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min": round(min(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys against xs."""
    n = len(xs)
    if n < 2:
        return math.nan
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return math.nan
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else math.inf
