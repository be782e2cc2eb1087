"""One Secret, several registry providers: each entry is filled, refreshed and reported on its
own, in one write, and everything the controller does not own is kept byte for byte.

The second provider is the fake one (`providers.fake`), whose credentials cannot be verified
offline: beside Chainguard's verified tokens it exercises the other trust rule, a credential
trusted only while it is one this process obtained.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from prometheus_client import generate_latest

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.policy import parse_policy
from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.providers.fake import spec as fake_spec
from pull_secret_updater.providers.fake.exchange import FakeProvider
from pull_secret_updater.providers.fake.spec import FakeSpec
from pull_secret_updater.runtime.controller import DONE
from pull_secret_updater.tokens import TokenSourceError
from pull_secret_updater.tokens.errors import TransientExchangeError
from pull_secret_updater.tokens.provider import Subject, TokenProvider
from tests.fakes import NOW, REGISTRY, FakeClock
from tests.runtime.fakes import (
    CONTROLLER,
    IDENTITY,
    SCHEDULE,
    Harness,
    auth_of,
    config_holding,
    entry,
    harness,
)

FAKE_REGISTRY = "registry.fake.invalid"
FAKE_IDENTITY = "team-a/puller"
BOTH = {chainguard_spec.IDENTITY: IDENTITY, fake_spec.IDENTITY: FAKE_IDENTITY}
#: Someone else's entry and a top-level key we know nothing of, as a user's tools write them.
OTHERS = {"ghcr.io": {"auth": auth_of("me", "pw"), "email": "me@example.com"}}


class FailingTokens:
    """Kubernetes tokens for the fake provider, until told to fail."""

    def __init__(self) -> None:
        self.error: TokenSourceError | None = None

    async def get(self, subject: Subject) -> str:
        if self.error is not None:
            raise self.error
        return "kubernetes-token"


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., tuple[Harness, FakeProvider, FailingTokens]]]:
    made: list[Harness] = []

    def build(**options: Any) -> tuple[Harness, FakeProvider, FailingTokens]:
        tokens = FailingTokens()
        fakes: list[FakeProvider] = []

        def extra(clock: FakeClock) -> Mapping[str, TokenProvider]:
            fakes.append(FakeProvider(sa_tokens=tokens, lifetime=1800, clock=clock))
            return {"fake": fakes[0]}

        made.append(harness(extra=extra, **options))
        return made[-1], fakes[0], tokens

    yield build
    for built in made:
        await built.aclose()


def _auths(world: Harness, namespace: str = "team-a") -> dict[str, Any]:
    config = world.server.docker_config(namespace)
    assert isinstance(config, dict)
    auths: dict[str, Any] = config["auths"]
    return auths


def _fake_password(world: Harness, namespace: str = "team-a") -> str | None:
    found = _auths(world, namespace).get(FAKE_REGISTRY)
    return None if found is None else str(found["password"])


async def test_both_entries_are_filled_in_one_write_and_everything_else_is_kept(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, fake, _ = make()
    original = json.dumps({"auths": OTHERS, "credsStore": "desktop"}).encode()
    world.server.create_secret("team-a", annotations=BOTH, docker_config=original)

    outcome = await world.reconcile("team-a")

    assert len(world.server.secret_writes) == 1
    config = world.server.docker_config("team-a")
    assert isinstance(config, dict)
    assert config["credsStore"] == "desktop"
    auths = config["auths"]
    assert auths["ghcr.io"] == OTHERS["ghcr.io"]
    cgr, faked = auths[REGISTRY], auths[FAKE_REGISTRY]
    assert cgr == entry(cgr["password"])
    assert faked == {
        "username": "fake",
        "password": faked["password"],
        "auth": auth_of("fake", faked["password"]),
    }
    assert world.provider.issues == [(IDENTITY, CONTROLLER)]
    assert fake.issued == {FAKE_IDENTITY: 1}
    # Each provider's filled-identity; one expiry, the earliest of the two (the fake's 30 min).
    assert world.server.annotations("team-a") == {
        **BOTH,
        ann.EXPIRES_AT: ann.format_time(NOW + 1800),
        ann.LAST_REFRESH: ann.format_time(NOW),
        chainguard_spec.FILLED_IDENTITY: IDENTITY,
        fake_spec.FILLED_IDENTITY: FAKE_IDENTITY,
    }
    await world.controller.events.aclose()
    events = world.server.recorded_events()
    # One Event for the one write, naming both entries (each Event is an API request).
    ((_, reason, message),) = events
    assert reason == "Filled"
    assert FAKE_REGISTRY in message
    assert REGISTRY in message
    # Looked at again when the first of the two is due (the fake's, at half its life).
    assert outcome.requeue_after is not None
    assert outcome.requeue_after < 1800

    # And then it waits: the fake's credential is one this process obtained, so it is kept.
    again = await world.reconcile("team-a")
    assert len(world.server.secret_writes) == 1
    assert fake.issued == {FAKE_IDENTITY: 1}
    assert again == outcome


async def test_a_bad_value_for_one_provider_is_reported_and_the_other_is_still_filled(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, fake, _ = make()
    world.server.create_secret(
        "team-a", annotations={chainguard_spec.IDENTITY: IDENTITY, fake_spec.IDENTITY: "a b"}
    )

    await world.reconcile("team-a")

    assert REGISTRY in _auths(world)
    assert FAKE_REGISTRY not in _auths(world)
    assert fake.issued == {}
    message = world.server.annotations("team-a")[ann.LAST_ERROR]
    assert message.startswith(f"fake: annotation {fake_spec.IDENTITY} contains ' '")
    await world.controller.events.aclose()
    warnings = world.server.recorded_events("Warning")
    assert [(reason, text) for _, reason, text in warnings] == [("BadAnnotation", message)]

    # Fixed by the user: the fake entry is filled, the error goes, Chainguard is not asked again.
    world.server.edit_secret(
        "team-a", "pull-secret", {"metadata": {"annotations": {fake_spec.IDENTITY: FAKE_IDENTITY}}}
    )
    await world.reconcile("team-a")
    assert FAKE_REGISTRY in _auths(world)
    assert ann.LAST_ERROR not in world.server.annotations("team-a")
    assert len(world.provider.issues) == 1


async def test_a_failing_exchange_of_one_provider_does_not_hold_up_the_other(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, fake, tokens = make()
    tokens.error = TokenSourceError("TokenRequest failed: 503 ServiceUnavailable", status=503)
    world.server.create_secret("team-a", annotations=BOTH)

    outcome = await world.reconcile("team-a")

    assert REGISTRY in _auths(world)
    assert FAKE_REGISTRY not in _auths(world)
    assert world.server.annotations("team-a")[ann.LAST_ERROR] == (
        "fake: TokenRequest failed: 503 ServiceUnavailable"
    )
    # Retried soon (a retryable failure), not at the Chainguard token's refresh.
    assert outcome.requeue_after is not None
    assert outcome.requeue_after <= 1.0
    assert ("team-a", "pull-secret") in world.controller.failures

    tokens.error = None
    world.clock.now += outcome.requeue_after
    await world.reconcile("team-a")
    assert FAKE_REGISTRY in _auths(world)
    assert ann.LAST_ERROR not in world.server.annotations("team-a")
    assert ("team-a", "pull-secret") not in world.controller.failures
    assert len(world.provider.issues) == 1, "the Chainguard entry was not exchanged again"
    assert fake.issued == {FAKE_IDENTITY: 1}


async def test_a_planted_credential_of_the_unverifiable_provider_is_replaced(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, fake, _ = make()
    planted = "fake.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    document = {"auths": {FAKE_REGISTRY: {"auth": auth_of("fake", planted)}}}
    world.server.create_secret(
        "team-a",
        annotations={
            fake_spec.IDENTITY: FAKE_IDENTITY,
            fake_spec.FILLED_IDENTITY: FAKE_IDENTITY,
            ann.EXPIRES_AT: "2099-01-01T00:00:00Z",
        },
        docker_config=json.dumps(document).encode(),
    )

    await world.reconcile("team-a")

    replaced = _fake_password(world)
    assert replaced not in (None, planted)
    assert fake.issued == {FAKE_IDENTITY: 1}
    # The expiry stated is the one of what was written, not what the planter said.
    assert world.server.annotations("team-a")[ann.EXPIRES_AT] == ann.format_time(NOW + 1800)
    assert world.controller.store.earliest_expiry() == NOW + 1800


async def test_after_a_restart_secrets_sharing_an_identity_cost_one_exchange(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    # Nothing a restarted controller finds can be verified offline: each (provider, identity,
    # subject) costs one exchange, shared by all its Secrets.
    before, _, _ = make()
    for namespace in ("team-a", "team-b", "team-c"):
        before.server.create_secret(namespace, annotations={fake_spec.IDENTITY: FAKE_IDENTITY})
        await before.reconcile(namespace)
    first = _fake_password(before, "team-a")
    assert {_fake_password(before, ns) for ns in ("team-b", "team-c")} == {first}

    world, fake, _ = make()
    for key, stored in before.server.secrets.items():
        world.server.secrets[key] = stored
    for namespace in ("team-a", "team-b", "team-c"):
        await world.reconcile(namespace)
    assert fake.issued == {FAKE_IDENTITY: 1}
    refilled = {_fake_password(world, ns) for ns in ("team-a", "team-b", "team-c")}
    assert len(refilled) == 1
    assert refilled != {first}


async def test_two_providers_never_own_one_registry_entry(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    def extra(clock: FakeClock) -> Mapping[str, TokenProvider]:
        return {"fake": FakeProvider(spec=FakeSpec(registry=REGISTRY), clock=clock)}

    world = harness(extra=extra)
    try:
        world.server.create_secret("team-a", annotations=BOTH)
        await world.reconcile("team-a")
        auths = _auths(world)
        assert list(auths) == [REGISTRY]
        assert auths[REGISTRY] == entry(auths[REGISTRY]["password"])
        error = world.server.annotations("team-a")[ann.LAST_ERROR]
        assert error == (
            f"fake: provider fake would write the entry for {REGISTRY}, which provider "
            "chainguard writes already: one registry entry has one owner"
        )
    finally:
        await world.aclose()


async def test_a_policy_rule_names_the_provider_it_grants(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    # A rule without a provider is about Chainguard's identities only: `*` there grants no
    # identity of another provider.
    policy = parse_policy(
        [{"identities": ["*"]}, {"provider": "fake", "identities": ["team-b/*"]}],
        default_provider="chainguard",
    )
    world, fake, _ = make(policy=policy)
    world.server.create_secret("team-a", annotations=BOTH)

    outcome = await world.reconcile("team-a")

    assert REGISTRY in _auths(world)
    assert FAKE_REGISTRY not in _auths(world)
    assert fake.issued == {}
    assert world.server.annotations("team-a")[ann.LAST_ERROR] == (
        f"fake: fake identity {FAKE_IDENTITY} may not be used in namespace team-a by the "
        "controller's policy"
    )
    assert outcome.requeue_after is not None, "Chainguard's refresh is still scheduled"


async def test_metrics_name_providers_and_never_an_identity(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, _, _ = make()
    world.server.create_secret("team-a", annotations=BOTH)
    await world.reconcile("team-a")
    world.controller.update_gauges()
    scraped = generate_latest(world.controller.metrics.registry).decode()
    assert IDENTITY not in scraped
    assert FAKE_IDENTITY not in scraped
    assert "pull_secret_updater_earliest_expiry_seconds 1800.0" in scraped
    assert "pull_secret_updater_managed_secrets 1.0" in scraped


async def test_removing_every_provider_annotation_clears_each_providers_status(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, _, _ = make()
    world.server.create_secret("team-a", annotations=BOTH)
    await world.reconcile("team-a")
    kept = base64.b64decode(world.server.raw_data("team-a")[".dockerconfigjson"])
    world.server.edit_secret(
        "team-a",
        "pull-secret",
        {"metadata": {"annotations": {chainguard_spec.IDENTITY: None, fake_spec.IDENTITY: None}}},
    )

    assert await world.reconcile("team-a") == DONE

    assert world.server.annotations("team-a") == {}
    # The credentials stay until they expire: the controller never deletes an entry.
    assert base64.b64decode(world.server.raw_data("team-a")[".dockerconfigjson"]) == kept
    assert world.controller.store.managed == 0


def _due_soon(world: Harness) -> tuple[str, float]:
    """A cgr.dev token of IDENTITY that comes due 100 s from now (the clock is moved to
    that moment): within the jitter share of its lifetime (360 s of an hour)."""
    issued_at = world.clock.now
    held = world.provider.mint(IDENTITY, issued_at=issued_at)
    due = SCHEDULE.refresh_at(token=held.token, issued_at=issued_at, expires_at=held.expires_at)
    world.clock.now = due - 100
    return held.token, due


async def test_a_part_due_soon_is_refreshed_in_the_write_of_another(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, fake, _ = make()
    held, _ = _due_soon(world)
    world.server.create_secret("team-a", annotations=BOTH, docker_config=config_holding(held))

    await world.reconcile("team-a")

    # The fake's entry was empty; the cgr.dev token, 100 s from due, went along: one write,
    # one exchange for each, and one Event naming both.
    assert len(world.server.secret_writes) == 1
    assert world.provider.issues == [(IDENTITY, CONTROLLER)]
    assert fake.issued == {FAKE_IDENTITY: 1}
    fresh = world.password("team-a")
    assert fresh is not None
    assert fresh != held
    await world.controller.events.aclose()
    ((_, reason, message),) = world.server.recorded_events()
    assert reason == "Filled"
    assert "due soon" in message
    assert ann.LAST_ERROR not in world.server.annotations("team-a")


async def test_a_part_due_soon_that_cannot_be_refreshed_keeps_its_token_and_reports_nothing(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, fake, _ = make()
    held, due = _due_soon(world)
    world.provider.issue_error = TransientExchangeError(
        "token service unavailable (503)", cause="unavailable"
    )
    world.server.create_secret("team-a", annotations=BOTH, docker_config=config_holding(held))

    outcome = await world.reconcile("team-a")

    # The fake's entry is written; the cgr.dev token stays, valid, and nothing failed yet:
    # it is looked at again when it comes due, as if it had not gone along.
    assert len(world.server.secret_writes) == 1
    assert world.password("team-a") == held
    assert fake.issued == {FAKE_IDENTITY: 1}
    assert ann.LAST_ERROR not in world.server.annotations("team-a")
    assert outcome.requeue_after == pytest.approx(due - world.clock.now)
    await world.controller.events.aclose()
    assert world.server.recorded_events("Warning") == []


async def test_a_part_takes_a_newer_token_at_hand_in_the_write_of_another(
    make: Callable[..., tuple[Harness, FakeProvider, FailingTokens]],
) -> None:
    world, fake, _ = make()
    world.server.create_secret("team-a", annotations=BOTH)
    first = await world.reconcile("team-a")
    held = world.password("team-a")
    assert first.requeue_after is not None
    # Another Secret of the same identity had its token refreshed (a new one is in the
    # cache), long before team-a's is due.
    world.clock.now += 60
    want = Want(provider="chainguard", identity=IDENTITY, registries=(REGISTRY,))
    newer = await world.controller.tokens.get(want=want, subject=CONTROLLER, stale=held)

    # The fake's credential comes due: its write takes the newer cgr.dev token along, with
    # no exchange of its own.
    world.clock.now = NOW + first.requeue_after
    await world.reconcile("team-a")

    assert len(world.server.secret_writes) == 2
    assert world.password("team-a") == newer.token
    assert len(world.provider.issues) == 2
    assert fake.issued == {FAKE_IDENTITY: 2}
    await world.controller.events.aclose()
    assert "newer token at hand" in world.server.recorded_events()[-1][2]
