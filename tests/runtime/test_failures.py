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


def test_keys_waiting_for_a_token_are_handed_out_once_when_it_comes() -> None:
    book = failures()
    a, b, c = ("team-a", "s"), ("team-b", "s"), ("team-c", "s")
    book.record(a, message="503", awaits="identity-1")
    book.record(b, message="503", awaits="identity-1")
    book.record(c, message="503", awaits="identity-2")
    book.record(b, message="503", awaits="identity-1")  # a retry that failed again
    book.clear(a)  # a succeeded by itself: nothing to wake

    assert book.ready("identity-1") == {b}
    assert book.ready("identity-1") == set(), "handed out once"
    assert b in book, "still failing until its own retry succeeds"
    assert book.record(b, message="503").attempts == 3, "attempts go on counting"

    # A key that now fails for another reason awaits nothing any more.
    book.record(c, message="write refused")
    assert book.ready("identity-2") == set()
    book.record(c, message="503", awaits="identity-2")
    book.clear(c)
    assert book.ready("identity-2") == set()


def test_retries_that_close_in_on_an_expiry_do_not_grow_the_backoff() -> None:
    book = failures()
    for _ in range(4):  # 1, 2, 4, 8: the next step's ceiling is 16 s
        book.record(KEY, message="503")
    for left in (10, 5, 2, 1):
        closing_in = book.record(KEY, message="503", expires_in=left)
        assert closing_in.delay <= max(1, left / 2)
    assert closing_in.attempts == 8
    # Expired all the same: the fifth step (8-16 s), not the ninth (up to 60 s, the cap).
    assert 8 <= book.record(KEY, message="503").delay <= 16
    assert 16 <= book.record(KEY, message="503").delay <= 32
