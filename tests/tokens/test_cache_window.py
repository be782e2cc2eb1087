"""A cached token is handed out until the schedule says it is due, never when a Secret names it
stale, never once its key is no longer published; tokens found in Secrets can be offered."""

from __future__ import annotations

import re

from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.tokens import Subject, TokenCache
from pull_secret_updater.tokens.cache import SWEEP_MIN
from tests.fakes import NOW, FakeClock, FakeTokenProvider, verified
from tests.tokens.fakes import IDENTITY, OWN, offer_to, want_of

#: Refresh at exactly half the lifetime, so the windows below are exact.
HALF = Schedule(fraction=0.5, jitter=0, margin=60)
TEAM_A = Subject(namespace="team-a", service_account="pull-secret-updater")
TEAM_B = Subject(namespace="team-b", service_account="pull-secret-updater")


def cache_for(provider: FakeTokenProvider, schedule: Schedule = HALF) -> TokenCache:
    return TokenCache(provider, schedule=schedule, clock=provider.clock)


async def test_a_token_is_handed_out_until_the_schedule_says_it_is_due() -> None:
    clock = FakeClock()
    cache = cache_for(FakeTokenProvider(clock=clock, lifetime=3600))
    first = await cache.get(want=want_of("a"), subject=OWN)

    clock.now = NOW + 1799.9
    assert await cache.get(want=want_of("a"), subject=OWN) == first
    clock.now = NOW + 1800
    second = await cache.get(want=want_of("a"), subject=OWN)
    assert second.token != first.token
    assert second.issued_at == NOW + 1800
    assert cache.exchanges == {"a": 2}


async def test_the_cache_and_the_secrets_agree_on_when_a_token_is_due() -> None:
    # With jitter: the cache asks the same Schedule the decision does, for the same token.
    schedule = Schedule()
    clock = FakeClock()
    cache = cache_for(FakeTokenProvider(clock=clock), schedule)
    first = await cache.get(want=want_of("a"), subject=OWN)
    due = schedule.refresh_at(
        token=first.token, issued_at=first.issued_at, expires_at=first.expires_at
    )
    assert NOW + 0.56 * 3600 <= due <= NOW + 0.76 * 3600
    clock.now = due - 0.001
    assert await cache.get(want=want_of("a"), subject=OWN) == first
    clock.now = due
    assert await cache.get(want=want_of("a"), subject=OWN) != first


async def test_a_token_of_an_absurd_lifetime_is_exchanged_again_within_the_max_interval() -> None:
    clock = FakeClock()
    schedule = Schedule(max_interval=4 * 3600)
    cache = cache_for(FakeTokenProvider(clock=clock, lifetime=10 * 365 * 86400), schedule)
    first = await cache.get(want=want_of("a"), subject=OWN)
    clock.now = NOW + 4 * 3600
    assert await cache.get(want=want_of("a"), subject=OWN) != first


async def test_fifty_secrets_in_one_window_cost_one_exchange_each_window() -> None:
    clock = FakeClock()
    cache = cache_for(FakeTokenProvider(clock=clock, lifetime=3600))
    for window in range(3):
        for second in range(50):  # fifty Secrets, reconciled one after another
            clock.now = NOW + window * 1800 + second
            await cache.get(want=want_of("shared"), subject=OWN)
    assert cache.exchanges == {"shared": 3}


async def test_the_same_identity_for_two_subjects_is_cached_apart() -> None:
    provider = FakeTokenProvider(clock=FakeClock())
    cache = cache_for(provider)
    for_a = await cache.get(want=want_of("org/x"), subject=TEAM_A)
    for_b = await cache.get(want=want_of("org/x"), subject=TEAM_B)
    assert for_a != for_b
    assert await cache.get(want=want_of("org/x"), subject=TEAM_A) == for_a
    assert await cache.get(want=want_of("org/x"), subject=TEAM_B) == for_b
    assert provider.subjects == [TEAM_A, TEAM_B]


# -- stale -------------------------------------------------------------------------------------


async def test_a_secret_naming_the_cached_token_stale_gets_a_new_one() -> None:
    clock = FakeClock()
    cache = cache_for(FakeTokenProvider(clock=clock))
    held = await cache.get(want=want_of("a"), subject=OWN)
    clock.now = NOW + 60  # long before the cache's own refresh point
    fresh = await cache.get(want=want_of("a"), subject=OWN, stale=held.token)
    assert fresh.token != held.token
    assert cache.exchanges == {"a": 2}


async def test_secrets_due_together_share_the_newer_token_one_of_them_brought() -> None:
    # Secrets holding token T come due at jittered times of their own: the first one exchanges,
    # the others, naming T stale too, get the newer token without another exchange.
    clock = FakeClock()
    cache = cache_for(FakeTokenProvider(clock=clock))
    held = await cache.get(want=want_of("a"), subject=OWN)
    for second in range(50):
        clock.now = NOW + 1000 + second
        got = await cache.get(want=want_of("a"), subject=OWN, stale=held.token)
        assert got.token != held.token
    assert cache.exchanges == {"a": 2}


async def test_a_stale_token_of_another_subject_changes_nothing_here() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    in_a = await cache.get(want=want_of("a"), subject=TEAM_A)
    in_b = await cache.get(want=want_of("a"), subject=TEAM_B)
    assert await cache.get(want=want_of("a"), subject=TEAM_A, stale=in_b.token) == in_a
    assert cache.exchanges == {"a": 2}


# -- keys ----------------------------------------------------------------------------------------


async def test_a_token_whose_key_is_no_longer_published_is_not_handed_out() -> None:
    provider = FakeTokenProvider(clock=FakeClock())
    cache = cache_for(provider)
    old = await cache.get(want=want_of("a"), subject=OWN)
    assert old.key_id == "key-1"
    provider.known_keys = {"key-2"}  # the token service rotated and dropped key-1
    provider.key_id = "key-2"
    fresh = await cache.get(want=want_of("a"), subject=OWN)
    assert (fresh.key_id, fresh.token != old.token) == ("key-2", True)
    assert await cache.get(want=want_of("a"), subject=OWN) == fresh
    assert cache.exchanges == {"a": 2}


# -- offer -------------------------------------------------------------------------------------


async def test_an_offered_token_is_handed_out_without_an_exchange() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    found = verified(identity="a", iat=NOW - 60, tag="from-a-secret")
    offer_to(cache, subject=OWN, token=found)
    assert await cache.get(want=want_of("a"), subject=OWN) == found
    assert cache.exchanges == {}


async def test_an_offered_token_serves_only_its_identity_and_subject() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    offer_to(cache, subject=TEAM_A, token=verified(identity="a", tag="team-a"))
    await cache.get(want=want_of("a"), subject=TEAM_B)
    await cache.get(want=want_of("b"), subject=TEAM_A)
    assert cache.exchanges == {"a": 1, "b": 1}


async def test_offering_never_replaces_a_token_with_one_expiring_sooner() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    newer = verified(identity="a", iat=NOW, tag="newer")
    offer_to(cache, subject=OWN, token=newer)
    offer_to(cache, subject=OWN, token=verified(identity="a", iat=NOW - 100, tag="older"))
    offer_to(cache, subject=OWN, token=verified(identity="a", iat=NOW, tag="as-old"))
    assert await cache.get(want=want_of("a"), subject=OWN) == newer
    later = verified(identity="a", iat=NOW + 10, tag="later")
    offer_to(cache, subject=OWN, token=later)
    assert await cache.get(want=want_of("a"), subject=OWN) == later
    assert cache.exchanges == {}


async def test_an_expired_token_is_not_taken_when_offered() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    for lifetime in (3600, 3599):  # expired at NOW, and before
        offer_to(
            cache, subject=OWN, token=verified(identity="a", iat=NOW - 3600, lifetime=lifetime)
        )
    got = await cache.get(want=want_of("a"), subject=OWN)
    assert got.expires_at > NOW
    assert cache.exchanges == {"a": 1}


async def test_an_offered_token_already_due_is_not_handed_out() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    due = verified(identity="a", iat=NOW - 1800, lifetime=3600)  # half-way: due under HALF
    offer_to(cache, subject=OWN, token=due)
    assert await cache.get(want=want_of("a"), subject=OWN) != due
    assert cache.exchanges == {"a": 1}


async def test_an_offered_token_whose_key_is_unknown_is_not_handed_out() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    unknown = verified(identity="a", key_id="retired-key")
    offer_to(cache, subject=OWN, token=unknown)
    assert await cache.get(want=want_of("a"), subject=OWN) != unknown
    assert cache.exchanges == {"a": 1}


# -- forgetting --------------------------------------------------------------------------------


async def test_tokens_nobody_asks_for_any_more_are_swept_once_expired() -> None:
    # Namespaces come and go (CI): each is used once, and its token never asked for again.
    clock = FakeClock()
    provider = FakeTokenProvider(clock=clock, lifetime=600)
    cache = cache_for(provider)
    for n in range(1000):
        subject = Subject(namespace=f"ci-{n}", service_account="pull-secret-updater")
        await cache.get(want=want_of("a"), subject=subject)
        clock.now += 30
        assert _held(cache) <= SWEEP_MIN
    # Sweeping never drops a token that is still good: the latest ones are handed out again.
    before = provider.calls["a"]
    for n in range(995, 1000):
        subject = Subject(namespace=f"ci-{n}", service_account="pull-secret-updater")
        await cache.get(want=want_of("a"), subject=subject)
    assert provider.calls["a"] == before


def _held(cache: TokenCache) -> int:
    found = re.fullmatch(r"TokenCache\(tokens=(\d+)\)", repr(cache))
    assert found is not None
    return int(found[1])


def test_repr_holds_no_token() -> None:
    cache = cache_for(FakeTokenProvider(clock=FakeClock()))
    token = verified(identity=IDENTITY, tag="secret-value")
    offer_to(cache, subject=OWN, token=token)
    assert token.token not in repr(cache)
    assert repr(cache) == "TokenCache(tokens=1)"
    assert token.token not in repr(token)
