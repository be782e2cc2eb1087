"""A cached token is reused until its refresh point, then exchanged again; seed and forget."""

from __future__ import annotations

import pytest

from pull_secret_updater.tokens import TokenCache
from tests.tokens.fakes import NOW, FakeClock, FakeProvider, issued


async def test_token_is_reused_until_its_refresh_point_then_exchanged() -> None:
    clock = FakeClock()
    provider = FakeProvider(clock=clock, lifetime=3600)
    cache = TokenCache(provider, clock=clock, refresh_fraction=0.5, margin=60)
    first = await cache.get(identity="a")
    assert cache.refresh_point(first) == NOW + 1800

    clock.now = NOW + 1799.9
    assert await cache.get(identity="a") is first
    clock.now = NOW + 1800
    second = await cache.get(identity="a")
    assert second is not first
    assert second.issued_at == NOW + 1800
    assert cache.exchanges == {"a": 2}


def test_refresh_point_is_capped_at_the_margin_before_expiry() -> None:
    cache = TokenCache(FakeProvider(clock=FakeClock()), refresh_fraction=0.9, margin=600)
    token = issued(iat=NOW, lifetime=3600)
    assert cache.refresh_point(token) == NOW + 3000


def test_refresh_point_of_a_token_shorter_than_the_margin_is_half_its_life() -> None:
    cache = TokenCache(FakeProvider(clock=FakeClock()), margin=600)
    assert cache.refresh_point(issued(iat=NOW, lifetime=300)) == NOW + 150


def test_refresh_point_is_deterministic() -> None:
    cache = TokenCache(FakeProvider(clock=FakeClock()))
    token = issued(iat=NOW, lifetime=3600)
    assert len({cache.refresh_point(token) for _ in range(20)}) == 1
    assert cache.refresh_point(token) == pytest.approx(NOW + 2400)


async def test_fifty_secrets_in_one_window_cost_one_exchange_each_window() -> None:
    clock = FakeClock()
    provider = FakeProvider(clock=clock, lifetime=3600)
    cache = TokenCache(provider, clock=clock, refresh_fraction=0.5, margin=60)
    for window in range(3):
        for second in range(50):  # fifty Secrets, reconciled one after another
            clock.now = NOW + window * 1800 + second
            await cache.get(identity="shared")
    assert cache.exchanges == {"shared": 3}


async def test_not_before_refresh_false_exchanges_even_a_fresh_token() -> None:
    clock = FakeClock()
    cache = TokenCache(FakeProvider(clock=clock), clock=clock)
    first = await cache.get(identity="a")
    assert await cache.get(identity="a", not_before_refresh=False) is not first
    assert cache.exchanges == {"a": 2}


async def test_seeded_token_is_reused_without_an_exchange() -> None:
    clock = FakeClock()
    cache = TokenCache(FakeProvider(clock=clock), clock=clock)
    found = issued(iat=NOW - 60, lifetime=3600, tag="from-secret")
    cache.seed("a", found)
    assert await cache.get(identity="a") is found
    assert cache.peek("a") is found
    assert cache.exchanges == {}


def test_seeding_never_replaces_a_token_with_an_older_or_expired_one() -> None:
    clock = FakeClock()
    cache = TokenCache(FakeProvider(clock=clock), clock=clock)
    newer = issued(iat=NOW, lifetime=3600, tag="newer")
    cache.seed("a", newer)
    cache.seed("a", issued(iat=NOW - 100, lifetime=3600, tag="older"))
    assert cache.peek("a") is newer
    cache.seed("b", issued(iat=NOW - 7200, lifetime=3600, tag="expired"))
    assert cache.peek("b") is None


async def test_peek_never_exchanges_and_hides_expired_tokens() -> None:
    clock = FakeClock()
    cache = TokenCache(FakeProvider(clock=clock, lifetime=600), clock=clock)
    assert cache.peek("a") is None
    token = await cache.get(identity="a")
    clock.now = NOW + 599
    assert cache.peek("a") is token  # past its refresh point, still valid
    clock.now = NOW + 600
    assert cache.peek("a") is None
    assert cache.exchanges == {"a": 1}


async def test_forget_drops_the_cached_token() -> None:
    clock = FakeClock()
    cache = TokenCache(FakeProvider(clock=clock), clock=clock)
    await cache.get(identity="a")
    cache.forget("a")
    assert cache.peek("a") is None
    await cache.get(identity="a")
    assert cache.exchanges == {"a": 2}


async def test_forget_token_drops_only_the_token_the_secret_holds() -> None:
    clock = FakeClock()
    cache = TokenCache(FakeProvider(clock=clock), clock=clock)
    held = await cache.get(identity="a")
    cache.forget_token(identity="a", token="some other token")
    assert cache.peek("a") is held
    cache.forget_token(identity="a", token=held.token)
    assert cache.peek("a") is None


async def test_a_due_secret_gets_a_newer_token_while_the_rest_share_it() -> None:
    # Secrets holding token T refresh at jittered times, some before the cache's own refresh
    # point: each forgets T first, so the first one exchanges and the others reuse the result.
    clock = FakeClock()
    cache = TokenCache(FakeProvider(clock=clock), clock=clock)
    held = await cache.get(identity="a")
    for second in range(50):
        clock.now = NOW + 2000 + second  # before the cache's refresh point (NOW + 2400)
        cache.forget_token(identity="a", token=held.token)
        assert (await cache.get(identity="a")).token != held.token
    assert cache.exchanges == {"a": 2}


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_refresh_fraction_must_be_inside_the_lifetime(fraction: float) -> None:
    with pytest.raises(ValueError, match="refresh_fraction"):
        TokenCache(FakeProvider(clock=FakeClock()), refresh_fraction=fraction)


def test_repr_holds_no_token() -> None:
    cache = TokenCache(FakeProvider(clock=FakeClock()))
    token = issued(tag="secret-value")
    cache.seed("a", token)
    assert token.token not in repr(cache)
    assert token.token not in repr(token)
