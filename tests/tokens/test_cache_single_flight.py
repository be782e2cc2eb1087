"""N Secrets sharing an identity cost one exchange: concurrent callers share it, and its error."""

from __future__ import annotations

import asyncio

import pytest

from pull_secret_updater.tokens import TokenCache, TransientExchangeError
from tests.tokens.fakes import FakeClock, FakeProvider


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fifty_concurrent_callers_for_one_identity_cost_one_exchange() -> None:
    clock = FakeClock()
    provider = FakeProvider(clock=clock, gate=asyncio.Event())
    cache = TokenCache(provider, clock=clock)
    callers = [asyncio.create_task(cache.get(identity="org/a")) for _ in range(50)]
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    results = await asyncio.gather(*callers)
    assert len({id(result) for result in results}) == 1
    assert provider.calls == {"org/a": 1}
    assert cache.exchanges == {"org/a": 1}


async def test_identities_do_not_share_exchanges() -> None:
    clock = FakeClock()
    provider = FakeProvider(clock=clock)
    cache = TokenCache(provider, clock=clock)
    results = await asyncio.gather(
        *(cache.get(identity=identity) for identity in ["a", "b", "a", "b", "c"])
    )
    assert provider.calls == {"a": 1, "b": 1, "c": 1}
    assert results[0] is results[2]
    assert results[0] is not results[1]


async def test_a_failed_exchange_fails_every_waiter_and_the_next_call_tries_again() -> None:
    clock = FakeClock()
    failure = TransientExchangeError("token service answered 503", cause="unavailable", status=503)
    provider = FakeProvider(clock=clock, gate=asyncio.Event(), fail_with=failure)
    cache = TokenCache(provider, clock=clock)
    callers = [asyncio.create_task(cache.get(identity="org/a")) for _ in range(10)]
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(outcome is failure for outcome in outcomes)
    assert provider.calls == {"org/a": 1}

    provider.fail_with = None
    token = await cache.get(identity="org/a")
    assert token.issued_at == clock.now
    assert provider.calls == {"org/a": 2}
    assert cache.exchanges == {"org/a": 2}


async def test_a_caller_arriving_right_after_a_failure_does_not_inherit_it() -> None:
    clock = FakeClock()
    failure = TransientExchangeError("down", cause="unavailable")
    provider = FakeProvider(clock=clock, fail_with=failure)
    cache = TokenCache(provider, clock=clock)
    with pytest.raises(TransientExchangeError):
        await cache.get(identity="a")
    provider.fail_with = None
    # No loop iteration in between: the failed exchange must already be gone.
    assert (await cache.get(identity="a")).issued_at == clock.now


async def test_a_cancelled_caller_does_not_cancel_the_shared_exchange() -> None:
    clock = FakeClock()
    provider = FakeProvider(clock=clock, gate=asyncio.Event())
    cache = TokenCache(provider, clock=clock)
    impatient = asyncio.create_task(cache.get(identity="a"))
    patient = asyncio.create_task(cache.get(identity="a"))
    await settle()
    impatient.cancel()
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    assert (await patient).registry == "cgr.dev"
    assert impatient.cancelled()
    assert provider.calls == {"a": 1}


async def test_forcing_a_new_token_still_joins_the_exchange_in_flight() -> None:
    clock = FakeClock()
    provider = FakeProvider(clock=clock, gate=asyncio.Event())
    cache = TokenCache(provider, clock=clock)
    first = asyncio.create_task(cache.get(identity="a"))
    forced = asyncio.create_task(cache.get(identity="a", not_before_refresh=False))
    await settle()
    assert provider.gate is not None
    provider.gate.set()
    assert await first is await forced
    assert provider.calls == {"a": 1}


async def test_aclose_cancels_exchanges_in_flight() -> None:
    clock = FakeClock()
    provider = FakeProvider(clock=clock, gate=asyncio.Event())
    cache = TokenCache(provider, clock=clock)
    caller = asyncio.create_task(cache.get(identity="a"))
    await settle()
    await cache.aclose()
    with pytest.raises(asyncio.CancelledError):
        await caller
