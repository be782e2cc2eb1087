"""N Secrets sharing an identity and a subject cost one exchange: concurrent callers share it,
and its error; other identities and other subjects have exchanges of their own."""

from __future__ import annotations

import asyncio

import pytest

from pull_secret_updater.core.ratelimit import NamespaceBudget
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.tokens import Subject, TokenCache, TransientExchangeError
from pull_secret_updater.tokens.errors import ExchangeError
from tests.fakes import FakeClock, FakeTokenProvider
from tests.tokens.fakes import OWN, want_of

SCHEDULE = Schedule()
TEAM_A = Subject(namespace="team-a", service_account="pull-secret-updater")
TEAM_B = Subject(namespace="team-b", service_account="pull-secret-updater")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def cache_for(provider: FakeTokenProvider) -> TokenCache:
    return TokenCache(provider, schedule=SCHEDULE, clock=provider.clock)


async def test_fifty_concurrent_callers_for_one_identity_cost_one_exchange() -> None:
    provider = FakeTokenProvider(clock=FakeClock(), gate=asyncio.Event())
    cache = cache_for(provider)
    callers = [
        asyncio.create_task(cache.get(want=want_of("org/a"), subject=OWN)) for _ in range(50)
    ]
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    results = await asyncio.gather(*callers)
    assert len({result.token for result in results}) == 1
    assert provider.calls == {"org/a": 1}
    assert cache.exchanges == {"org/a": 1}


async def test_identities_do_not_share_exchanges() -> None:
    provider = FakeTokenProvider(clock=FakeClock())
    cache = cache_for(provider)
    results = await asyncio.gather(
        *(cache.get(want=want_of(identity), subject=OWN) for identity in ["a", "b", "a", "b", "c"])
    )
    assert provider.calls == {"a": 1, "b": 1, "c": 1}
    assert results[0] == results[2]
    assert results[0].token != results[1].token
    assert [result.identity for result in results] == ["a", "b", "a", "b", "c"]


async def test_subjects_do_not_share_exchanges_or_tokens() -> None:
    # An identity trusting team-a must never reach team-b through a shared cache entry.
    provider = FakeTokenProvider(clock=FakeClock(), gate=asyncio.Event())
    cache = cache_for(provider)
    callers = [
        asyncio.create_task(cache.get(want=want_of("org/a"), subject=subject))
        for subject in [TEAM_A, TEAM_B, TEAM_A, TEAM_B]
    ]
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    a1, b1, a2, b2 = await asyncio.gather(*callers)
    assert a1 == a2
    assert b1 == b2
    assert a1.token != b1.token
    assert sorted(provider.subjects) == [TEAM_A, TEAM_B]
    assert cache.exchanges == {"org/a": 2}


async def test_a_failed_exchange_fails_every_waiter_and_the_next_call_tries_again() -> None:
    clock = FakeClock()
    failure = TransientExchangeError("token service answered 503", cause="unavailable", status=503)
    provider = FakeTokenProvider(clock=clock, gate=asyncio.Event(), issue_error=failure)
    cache = cache_for(provider)
    callers = [
        asyncio.create_task(cache.get(want=want_of("org/a"), subject=OWN)) for _ in range(10)
    ]
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(outcome is failure for outcome in outcomes)
    assert provider.calls == {"org/a": 1}

    provider.issue_error = None
    token = await cache.get(want=want_of("org/a"), subject=OWN)
    assert token.issued_at == clock.now
    assert provider.calls == {"org/a": 2}
    assert cache.exchanges == {"org/a": 2}


async def test_a_caller_arriving_right_after_a_failure_does_not_inherit_it() -> None:
    clock = FakeClock()
    provider = FakeTokenProvider(
        clock=clock, issue_error=TransientExchangeError("down", cause="unavailable")
    )
    cache = cache_for(provider)
    with pytest.raises(TransientExchangeError):
        await cache.get(want=want_of("a"), subject=OWN)
    provider.issue_error = None
    # No loop iteration in between: the failed exchange must already be gone.
    assert (await cache.get(want=want_of("a"), subject=OWN)).issued_at == clock.now
    assert provider.calls == {"a": 2}


async def test_a_cancelled_caller_does_not_cancel_the_shared_exchange() -> None:
    provider = FakeTokenProvider(clock=FakeClock(), gate=asyncio.Event())
    cache = cache_for(provider)
    impatient = asyncio.create_task(cache.get(want=want_of("a"), subject=OWN))
    patient = asyncio.create_task(cache.get(want=want_of("a"), subject=OWN))
    await settle()
    impatient.cancel()
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    assert (await patient).identity == "a"
    assert impatient.cancelled()
    assert provider.calls == {"a": 1}


async def test_a_caller_with_a_stale_token_joins_the_exchange_in_flight() -> None:
    clock = FakeClock()
    provider = FakeTokenProvider(clock=clock, gate=asyncio.Event())
    cache = cache_for(provider)
    first = asyncio.create_task(cache.get(want=want_of("a"), subject=OWN))
    due = asyncio.create_task(
        cache.get(want=want_of("a"), subject=OWN, stale="token-held-by-a-secret")
    )
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    assert await first == await due
    assert provider.calls == {"a": 1}


async def test_aclose_cancels_exchanges_in_flight() -> None:
    provider = FakeTokenProvider(clock=FakeClock(), gate=asyncio.Event())
    cache = cache_for(provider)
    caller = asyncio.create_task(cache.get(want=want_of("a"), subject=OWN))
    await settle()
    await cache.aclose()
    with pytest.raises(asyncio.CancelledError):
        await caller
    # And a later call starts afresh rather than waiting on the cancelled exchange.
    assert provider.gate is not None
    provider.gate.set()
    assert (await cache.get(want=want_of("a"), subject=OWN)).identity == "a"
    assert provider.calls == {"a": 2}


async def test_with_a_failure_hold_later_callers_share_the_failure_until_it_ends() -> None:
    clock = FakeClock()
    down = TransientExchangeError("token service answered 503", cause="unavailable", status=503)
    provider = FakeTokenProvider(clock=clock, issue_error=down)
    cache = TokenCache(provider, schedule=SCHEDULE, clock=clock, failure_hold=1.0)

    for _ in range(100):  # a hundred Secrets retrying within the hold: one exchange
        with pytest.raises(TransientExchangeError) as raised:
            await cache.get(want=want_of("a"), subject=OWN)
        assert raised.value is down
        clock.now += 0.005
    assert provider.calls == {"a": 1}
    # Other identities and subjects are not held by it.
    with pytest.raises(TransientExchangeError):
        await cache.get(want=want_of("b"), subject=OWN)
    with pytest.raises(TransientExchangeError):
        await cache.get(want=want_of("a"), subject=TEAM_A)
    assert provider.calls == {"a": 2, "b": 1}

    clock.now += 0.5  # the hold is over: the next caller tries again, and succeeds
    provider.issue_error = None
    token = await cache.get(want=want_of("a"), subject=OWN)
    assert provider.calls == {"a": 3, "b": 1}
    assert await cache.get(want=want_of("a"), subject=OWN) == token


async def test_a_retry_after_travels_with_the_held_failure_but_does_not_stretch_the_hold() -> None:
    clock = FakeClock()
    throttled = TransientExchangeError(
        "token service answered 429", cause="throttled", status=429, retry_after=3600
    )
    provider = FakeTokenProvider(clock=clock, issue_error=throttled)
    cache = TokenCache(provider, schedule=SCHEDULE, clock=clock, failure_hold=1.0)
    with pytest.raises(TransientExchangeError):
        await cache.get(want=want_of("a"), subject=OWN)
    clock.now += 0.5
    with pytest.raises(TransientExchangeError) as held:
        await cache.get(want=want_of("a"), subject=OWN)
    assert held.value.retry_after == 3600, "each caller is told to wait"
    provider.issue_error = None
    clock.now += 0.5
    await cache.get(want=want_of("a"), subject=OWN)  # a caller that was never told tries
    assert provider.calls == {"a": 2}


async def test_held_failures_of_keys_nobody_asks_for_again_do_not_pile_up() -> None:
    clock = FakeClock()
    provider = FakeTokenProvider(
        clock=clock, issue_error=TransientExchangeError("down", cause="unavailable")
    )
    cache = TokenCache(provider, schedule=SCHEDULE, clock=clock, failure_hold=1.0)
    for n in range(1000):  # a namespace a second, each failing once, never asked again
        with pytest.raises(TransientExchangeError):
            await cache.get(want=want_of("a"), subject=Subject(namespace=f"ns-{n}",
                                                          service_account="psu"))  # fmt: skip
        clock.now += 1
    assert cache.held_failures <= 64


async def test_a_namespace_over_its_budget_is_told_when_to_come_back_and_starts_nothing() -> None:
    clock = FakeClock()
    provider = FakeTokenProvider(clock)
    cache = TokenCache(provider, schedule=Schedule(), clock=clock,
                       budget=NamespaceBudget(rate=0.1, burst=2, clock=clock))  # fmt: skip
    await cache.get(want=want_of("org/a"), subject=OWN, namespace="churn")
    await cache.get(want=want_of("org/b"), subject=OWN, namespace="churn")
    with pytest.raises(ExchangeError) as caught:
        await cache.get(want=want_of("org/c"), subject=OWN, namespace="churn")
    assert (caught.value.cause, caught.value.retryable) == ("rate_limited", True)
    assert caught.value.retry_after == 10
    assert "namespace churn" in caught.value.message
    assert provider.calls == {"org/a": 1, "org/b": 1}
    # What the cache holds costs nothing, over budget or not; another namespace has its own.
    await cache.get(want=want_of("org/a"), subject=OWN, namespace="churn")
    await cache.get(want=want_of("org/c"), subject=OWN, namespace="quiet")
    assert provider.calls == {"org/a": 1, "org/b": 1, "org/c": 1}
    # The refusal is no failure of the identity: other namespaces are not held off it.
    clock.now += 10
    await cache.get(want=want_of("org/d"), subject=OWN, namespace="churn")


async def test_the_counts_of_identities_nobody_asks_for_any_more_are_swept() -> None:
    clock = FakeClock()
    cache = TokenCache(FakeTokenProvider(clock, lifetime=60), schedule=Schedule(), clock=clock)
    for n in range(500):
        await cache.get(want=want_of(f"org/{n}"), subject=OWN)
        clock.now += 1
    assert len(cache.exchanges) <= 130
