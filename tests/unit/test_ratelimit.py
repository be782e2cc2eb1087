"""The per-namespace exchange budget: a burst, then a steady rate, per namespace alone."""

from __future__ import annotations

import pytest

from pull_secret_updater.core.ratelimit import NamespaceBudget
from tests.fakes import FakeClock


def budget(clock: FakeClock, *, rate: float = 1.0, burst: float = 3) -> NamespaceBudget:
    return NamespaceBudget(rate=rate, burst=burst, clock=clock)


def test_a_burst_is_free_then_each_exchange_waits_for_the_rate() -> None:
    clock = FakeClock()
    spent = budget(clock, rate=0.5)
    assert [spent.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert spent.take("a") == pytest.approx(2.0)
    assert spent.take("a") == pytest.approx(2.0), "a refused request spends nothing"
    clock.now += 2
    assert spent.take("a") == 0.0
    assert spent.take("a") == pytest.approx(2.0)


def test_one_namespace_spending_its_budget_leaves_the_others_theirs() -> None:
    clock = FakeClock()
    spent = budget(clock)
    for _ in range(50):
        spent.take("churn")
    assert spent.take("churn") > 0
    assert [spent.take("quiet") for _ in range(3)] == [0.0, 0.0, 0.0]


def test_the_budget_refills_no_further_than_the_burst() -> None:
    clock = FakeClock()
    spent = budget(clock)
    spent.take("a")
    clock.now += 3600
    assert [spent.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert spent.take("a") > 0


def test_namespaces_that_stopped_asking_are_forgotten() -> None:
    clock = FakeClock()
    spent = budget(clock)
    for n in range(1000):
        spent.take(f"ns-{n}")
        clock.now += 0.5
    assert len(spent) <= 64


@pytest.mark.parametrize(("rate", "burst"), [(0, 3), (-1, 3), (float("inf"), 3), (1, 0.5)])
def test_a_budget_that_allows_nothing_or_everything_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        NamespaceBudget(rate=rate, burst=burst, clock=FakeClock())
