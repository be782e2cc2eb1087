"""Failure bookkeeping: a cause is new until it is reported, and waits grow per attempt."""

from __future__ import annotations

import random

from pull_secret_updater.core.backoff import Backoff
from pull_secret_updater.runtime.failures import Failures

KEY = ("team-a", "pull-secret")


def failures() -> Failures:
    return Failures(backoff=Backoff(base=1, cap=60), rng=random.Random(7))


def test_a_cause_stays_new_until_it_is_reported() -> None:
    book = failures()
    # A standby records failures but reports nothing: the cause is still new for the leader.
    assert book.record(KEY, message="503").new
    assert book.record(KEY, message="503").new
    book.mark_reported(KEY, message="503")
    assert not book.record(KEY, message="503").new
    assert book.record(KEY, message="403").new


def test_waits_grow_with_attempts_and_clear_starts_over() -> None:
    book = failures()
    delays = [book.record(KEY, message="503").delay for _ in range(6)]
    ceilings = [min(60, 2.0**n) for n in range(6)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert KEY in book
    book.clear(KEY)
    assert KEY not in book
    assert len(book) == 0
    assert book.record(KEY, message="503").attempts == 1


def test_a_server_asking_for_longer_is_obeyed() -> None:
    assert failures().record(KEY, message="429", retry_after=30).delay == 30
