"""One reconcile of one Secret, against an in-memory API server and token provider.

Each test sets up Secrets on the fake API server, lets the controller observe them as a watch
would, reconciles, and looks at what a user would see: the Secret's content and annotations,
the Events, how many tokens were exchanged, and when the controller will look again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.backoff import NON_RETRYABLE_FACTOR
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.policy import parse_policy
from pull_secret_updater.kube.leader import LeaderElector
from pull_secret_updater.kube.namespaces import LABELS_TTL
from pull_secret_updater.kube.secrets import WatchEvent, get_secret
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.runtime.controller import DONE, Key, Outcome
from pull_secret_updater.tokens.errors import (
    KeysUnavailable,
    RejectedExchangeError,
    TransientExchangeError,
)
from tests.fakes import NOW, REGISTRY
from tests.runtime.fakes import (
    BACKOFF,
    CONTROLLER,
    IDENTITY,
    OTHER_IDENTITY,
    SCHEDULE,
    SECRET_NAME,
    Harness,
    auth_of,
    config_holding,
    entry,
    harness,
)

OURS = {chainguard_spec.IDENTITY: IDENTITY}
EARLIEST = "pull_secret_updater_earliest_expiry_seconds"
UNAVAILABLE = TransientExchangeError(
    "token service answered 503 Service Unavailable", cause="unavailable", status=503
)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def build(**options: Any) -> Harness:
        made.append(harness(**options))
        return made[-1]

    yield build
    for built in made:
        await built.aclose()


@pytest.fixture
def world(make: Callable[..., Harness]) -> Harness:
    built: Harness = make()
    return built


def waits_until(token: Credential, *, written_at: float | None, now: float = NOW) -> float:
    """The delay a Secret holding `token` should be looked at again after, by the schedule."""
    due = SCHEDULE.refresh_at(
        token=token.token,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        written_at=written_at,
        now=now,
    )
    return due - now


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition` holds (everything here is in memory: it soon does)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never came true")


def requeue(world: Harness, namespace: str, delay: float) -> None:
    """Queue the Secret `delay` from now, as the worker would after a reconcile (observing
    it, as `Harness.reconcile` does, queued it at once)."""
    key = (namespace, SECRET_NAME)
    world.controller.queue.forget(key)
    world.controller.queue.add(key, delay=delay)


async def run_worker_once(world: Harness, key: Key) -> float:
    """Let one worker take `key`, reconcile it and queue it again; return the delay it chose."""
    queue = world.controller.queue
    before = queue.scheduled(key)
    assert before is not None, "the key must be queued for a worker to take it"
    worker = asyncio.create_task(world.controller.work())
    try:
        await until(lambda: queue.scheduled(key) not in (None, before))
        due = queue.scheduled(key)
        assert due is not None
        return due - world.clock.now
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


# -- filling ---------------------------------------------------------------------------------


async def test_an_empty_secret_is_filled_and_looked_at_again_when_its_token_is_due(
    world: Harness,
) -> None:
    world.server.create_secret("team-a", annotations={**OURS, ann.TOKEN_HASH: "0123abcd"})

    outcome = await world.reconcile("team-a")

    assert world.provider.issues == [(IDENTITY, CONTROLLER)]
    token = world.password("team-a")
    assert token is not None
    assert world.server.docker_config("team-a") == {"auths": {REGISTRY: entry(token)}}
    assert world.server.annotations("team-a") == {
        chainguard_spec.IDENTITY: IDENTITY,
        ann.EXPIRES_AT: ann.format_time(NOW + 3600),
        ann.LAST_REFRESH: ann.format_time(NOW),
        chainguard_spec.FILLED_IDENTITY: IDENTITY,
    }
    await world.controller.events.aclose()
    assert world.server.recorded_events() == [
        ("Normal", "Filled", f"Filled {REGISTRY} token for identity {IDENTITY} (empty); "
                             f"expires at {ann.format_time(NOW + 3600)}"),
    ]  # fmt: skip
    issued = await world.provider.verify(token)
    assert outcome == Outcome(waits_until(issued, written_at=NOW))
    # The write's own watch event carries this resourceVersion, so it will be dropped.
    key = ("team-a", SECRET_NAME)
    assert world.controller.store[key].resource_version == world.server.resource_version("team-a")


async def test_a_secret_with_a_verified_token_of_its_identity_waits_and_shares_it(
    world: Harness,
) -> None:
    current = world.provider.mint(IDENTITY, issued_at=NOW - 600)
    written_at = NOW - 600
    world.server.create_secret(
        "team-a",
        docker_config=config_holding(current.token),
        annotations={**OURS, ann.LAST_REFRESH: ann.format_time(written_at)},
    )
    world.server.create_secret("team-b", annotations=OURS)

    waiting = await world.reconcile("team-a")

    assert waiting == Outcome(waits_until(current, written_at=written_at))
    assert world.server.secret_writes == []
    assert world.provider.issues == []

    await world.reconcile("team-b")

    assert world.password("team-b") == current.token
    assert world.provider.issues == []


async def test_a_planted_token_is_replaced_at_once_and_never_shared(world: Harness) -> None:
    planted = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbnlvbmUifQ.c2lnbmVkLWJ5LW5vYm9keQ"
    world.server.create_secret(
        "team-a",
        docker_config=config_holding(planted),
        annotations={
            **OURS,
            # Whatever else the writer claims proves nothing.
            chainguard_spec.FILLED_IDENTITY: IDENTITY,
            ann.EXPIRES_AT: ann.format_time(NOW + 86400),
            ann.LAST_REFRESH: ann.format_time(NOW),
        },
    )
    world.server.create_secret("team-b", annotations=OURS)

    await world.reconcile("team-a")
    await world.reconcile("team-b")

    replaced = world.password("team-a")
    assert replaced is not None
    assert replaced != planted
    assert (await world.provider.verify(replaced)).identity == IDENTITY
    assert world.password("team-b") == replaced
    assert len(world.provider.issues) == 1
    await world.controller.events.aclose()
    ((kind, reason, message), _) = world.server.recorded_events()
    assert (kind, reason) == ("Normal", "Filled")
    assert "token not trusted" in message


async def test_a_planted_token_is_not_handed_out_while_the_token_service_is_down(
    world: Harness,
) -> None:
    planted = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbnlvbmUifQ.c2lnbmVkLWJ5LW5vYm9keQ"
    world.server.create_secret("team-a", docker_config=config_holding(planted), annotations=OURS)
    world.server.create_secret("team-b", annotations=OURS)
    world.provider.issue_error = UNAVAILABLE

    await world.reconcile("team-a")
    await world.reconcile("team-b")

    assert world.password("team-b") is None
    assert len(world.provider.issues) == 2

    world.provider.issue_error = None
    await world.reconcile("team-b")

    fresh = world.password("team-b")
    assert fresh is not None
    assert fresh != planted


@pytest.mark.parametrize(
    ("identity", "issued_at", "event_reason", "why"),
    [
        pytest.param(OTHER_IDENTITY, NOW - 600, "Filled", "identity changed", id="other-identity"),
        pytest.param(IDENTITY, NOW - 7200, "Refreshed", "expired", id="expired"),
        pytest.param(IDENTITY, NOW - 3000, "Refreshed", "due for refresh", id="due"),
    ],
)
async def test_a_verified_token_that_does_not_serve_the_secret_is_replaced(
    world: Harness, identity: str, issued_at: float, event_reason: str, why: str
) -> None:
    old = world.provider.mint(identity, issued_at=issued_at)
    world.server.create_secret(
        "team-a",
        docker_config=config_holding(old.token),
        annotations={**OURS, chainguard_spec.FILLED_IDENTITY: identity,
                     ann.LAST_REFRESH: ann.format_time(issued_at)},
    )  # fmt: skip

    outcome = await world.reconcile("team-a")

    new = world.password("team-a")
    assert new is not None
    assert new != old.token
    issued = await world.provider.verify(new)
    assert issued.identity == IDENTITY
    assert world.provider.issues == [(IDENTITY, CONTROLLER)]
    assert world.server.annotations("team-a")[chainguard_spec.FILLED_IDENTITY] == IDENTITY
    assert outcome == Outcome(waits_until(issued, written_at=NOW))
    await world.controller.events.aclose()
    ((kind, reason, message),) = world.server.recorded_events()
    assert (kind, reason) == ("Normal", event_reason)
    assert f"({why})" in message


async def test_a_due_token_the_cache_was_offered_is_not_handed_back(world: Harness) -> None:
    old = world.provider.mint(IDENTITY, issued_at=NOW - 3000)
    world.server.create_secret(
        "team-a",
        docker_config=config_holding(old.token),
        annotations={**OURS, ann.LAST_REFRESH: ann.format_time(NOW - 3000)},
    )
    world.clock.now = NOW - 2000  # not due yet: the token is offered to the cache
    assert (await world.reconcile("team-a")).requeue_after is not None
    assert world.provider.issues == []

    world.clock.now = NOW  # now it is due
    await world.reconcile("team-a")

    assert world.password("team-a") not in (None, old.token)
    assert len(world.provider.issues) == 1


async def test_other_registries_and_unknown_keys_survive_a_fill(world: Harness) -> None:
    original: dict[str, Any] = {
        "auths": {
            "ghcr.io": {"auth": auth_of("me", "ghp_personal"), "email": "me@example.com"},
            # Another way of naming the same host: somebody else's entry, left alone.
            "https://cgr.dev": {"auth": auth_of("robot", "kept")},
        },
        "credsStore": "desktop",
        "HttpHeaders": {"User-Agent": "Docker-Client/24.0"},
        "experimental": {"nested": [1, 2.5, None, True, "é"]},
    }
    world.server.create_secret(
        "team-a", docker_config=json.dumps(original, indent=4).encode(), annotations=OURS
    )

    await world.reconcile("team-a")

    token = world.password("team-a")
    assert token is not None
    expected = {**original, "auths": {**original["auths"], REGISTRY: entry(token)}}
    assert world.server.docker_config("team-a") == expected


# -- failing to get a token ------------------------------------------------------------------


async def test_a_failed_exchange_is_reported_once_per_cause_and_leaves_the_credential(
    world: Harness,
) -> None:
    due = world.provider.mint(IDENTITY, issued_at=NOW - 3000)
    world.server.create_secret("team-a", docker_config=config_holding(due.token), annotations=OURS)
    data_before = world.server.raw_data("team-a")
    world.provider.issue_error = UNAVAILABLE

    delays = [(await world.reconcile("team-a")).requeue_after for _ in range(3)]

    assert world.server.raw_data("team-a") == data_before
    assert world.server.annotations("team-a")[ann.LAST_ERROR] == UNAVAILABLE.message
    assert world.server.recorded_events() == [("Warning", "ExchangeFailed", UNAVAILABLE.message)]
    assert len(world.server.secret_writes) == 1, "last-error is written once, not per retry"
    assert len(world.provider.issues) == 3
    d1, d2, d3 = (d for d in delays if d is not None)
    assert 0.5 <= d1 <= 1 <= d2 <= 2 <= d3 <= 4
    assert d1 < d2 < d3

    rejected = RejectedExchangeError(
        "token service answered 403: the identity does not trust this subject",
        cause="rejected",
        status=403,
    )
    world.provider.issue_error = rejected
    slower = (await world.reconcile("team-a")).requeue_after

    assert world.server.raw_data("team-a") == data_before
    assert world.server.annotations("team-a")[ann.LAST_ERROR] == rejected.message
    assert world.server.recorded_events("Warning") == [
        ("Warning", "ExchangeFailed", UNAVAILABLE.message),
        ("Warning", "ExchangeFailed", rejected.message),
    ]
    assert slower is not None
    assert slower >= 32, "a cause that waiting will not fix is retried more slowly"


async def test_retries_of_a_failed_refresh_close_in_on_the_expiry_of_the_token_in_place(
    world: Harness,
) -> None:
    # Due for refresh with 30 s left, after eight failed attempts (an outage since long
    # before): the growing backoff alone would next wait 128-256 s, far past the expiry.
    held = world.provider.mint(IDENTITY, issued_at=NOW - world.provider.lifetime + 30)
    world.server.create_secret("team-a", docker_config=config_holding(held.token), annotations=OURS)
    key = ("team-a", SECRET_NAME)
    for _ in range(8):
        world.controller.failures.record(key, message=UNAVAILABLE.message)
    world.provider.issue_error = UNAVAILABLE

    tries: list[float] = []
    while world.clock.now < held.expires_at:
        left = held.expires_at - world.clock.now
        tries.append(left)
        delay = (await world.reconcile("team-a")).requeue_after
        assert delay is not None
        assert delay <= max(BACKOFF.base, left / 2), "a retry must not jump past the expiry"
        world.clock.now += delay

    assert world.password("team-a") == held.token, "the token in place is never touched"
    assert tries[-1] <= 2 * BACKOFF.base, f"the last try came {tries[-1]:.1f}s before expiry"
    assert len(world.provider.issues) == len(tries) <= 10, "closing in is no hot loop"
    # Once it has expired there is nothing left to save: the backoff grows again, from the
    # ninth step (128-256 s), where it stopped, not from the cap the closing-in attempts
    # would have brought it to.
    delay = (await world.reconcile("team-a")).requeue_after
    assert delay is not None
    assert 128 <= delay <= 256, delay


async def test_secrets_waiting_for_their_identitys_token_get_it_as_soon_as_one_retry_brings_it(
    world: Harness,
) -> None:
    for ns in ("team-a", "team-b", "team-c"):
        world.server.create_secret(ns, annotations=OURS)
    world.server.create_secret("team-d", annotations={chainguard_spec.IDENTITY: OTHER_IDENTITY})
    world.provider.issue_error = UNAVAILABLE
    delays: dict[str, float] = {}
    for _ in range(5):  # the outage lasts: each waits 8-16 s for its next try by now
        for ns in ("team-b", "team-c", "team-d"):
            delay = (await world.reconcile(ns)).requeue_after
            assert delay is not None
            delays[ns] = delay
    assert all(d >= 8 for d in delays.values()), delays
    queue = world.controller.queue
    for ns, delay in delays.items():
        requeue(world, ns, delay)

    world.provider.issue_error = None
    issued_before = len(world.provider.issues)
    await world.reconcile("team-a")  # the token service is back: one Secret gets a token

    # Those of the same identity are due now; the other identity keeps its own schedule.
    for ns in ("team-b", "team-c"):
        assert queue.scheduled((ns, SECRET_NAME)) == world.clock.now, ns
    assert queue.scheduled(("team-d", SECRET_NAME)) == world.clock.now + delays["team-d"]
    for ns in ("team-b", "team-c"):
        await world.reconcile(ns)
        assert world.password(ns) == world.password("team-a")
        assert ann.LAST_ERROR not in world.server.annotations(ns)
    assert len(world.provider.issues) == issued_before + 1, "one exchange for the three"


async def test_a_token_due_on_arrival_wakes_none_of_the_secrets_waiting_for_one(
    world: Harness,
) -> None:
    # b and c failed and wait a minute; a gets a token the cache will not hand out (due on
    # arrival): waking b and c would only make them exchange at once, each.
    world.provider.issue_error = UNAVAILABLE
    queue = world.controller.queue
    for ns in ("team-b", "team-c"):
        world.server.create_secret(ns, annotations=OURS)
        await world.reconcile(ns)
        requeue(world, ns, 60)
    world.provider.issue_error = None
    world.provider.skew = world.provider.lifetime - 45
    world.server.create_secret("team-a", annotations=OURS)

    await world.reconcile("team-a")

    assert [r for _, r, _ in world.server.recorded_events("Warning")][-1] == "TokenTooShortLived"
    for ns in ("team-b", "team-c"):
        assert queue.scheduled((ns, SECRET_NAME)) == world.clock.now + 60, ns


async def test_many_secrets_closing_in_on_one_expiry_cost_one_exchange_per_hold(
    make: Callable[..., Harness],
) -> None:
    """200 Secrets of one identity hold one token with 60 s left, and the token service is
    down: each Secret's retries close in on that one expiry, but the failure is shared for a
    backoff base, so the token service sees about one exchange per second, not per Secret."""
    world: Harness = make(failure_hold=BACKOFF.base)
    held = world.provider.mint(IDENTITY, issued_at=NOW - world.provider.lifetime + 60)
    keys = []
    for n in range(200):
        ns = f"team-{n}"
        world.server.create_secret(ns, docker_config=config_holding(held.token), annotations=OURS)
        keys.append(await world.observe(ns))
    world.provider.issue_error = UNAVAILABLE
    due = dict.fromkeys(keys, NOW)
    tries = 0
    while (key := min(due, key=due.__getitem__)) and due[key] < held.expires_at:
        world.clock.now = due[key]
        outcome = await world.controller.reconcile(key)
        assert outcome.requeue_after is not None
        due[key] = world.clock.now + outcome.requeue_after
        tries += 1

    assert all(world.password(ns) == held.token for ns, _ in keys)
    assert tries > 5 * len(keys), "every Secret kept trying until the expiry"
    assert len(world.provider.issues) <= 60 / BACKOFF.base + 1, len(world.provider.issues)
    assert min(due.values()) - held.expires_at < BACKOFF.base, "the last tries came at the end"


async def test_the_token_services_retry_after_is_honoured(world: Harness) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    world.provider.issue_error = TransientExchangeError(
        "token service answered 429 Too Many Requests",
        cause="throttled",
        status=429,
        retry_after=120,
    )

    outcome = await world.reconcile("team-a")

    assert outcome == Outcome(120)


async def test_a_fill_after_failures_clears_the_last_error(world: Harness) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    world.provider.issue_error = UNAVAILABLE
    await world.reconcile("team-a")
    assert ann.LAST_ERROR in world.server.annotations("team-a")

    world.provider.issue_error = None
    outcome = await world.reconcile("team-a")

    assert world.password("team-a") is not None
    assert ann.LAST_ERROR not in world.server.annotations("team-a")
    assert ("team-a", SECRET_NAME) not in world.controller.failures
    assert outcome.requeue_after is not None
    assert outcome.requeue_after > 1000, "back on the refresh schedule, not the retry one"


async def test_when_the_keys_cannot_be_fetched_the_token_is_left_and_nothing_is_exchanged(
    world: Harness,
) -> None:
    current = world.provider.mint(IDENTITY, issued_at=NOW - 600)
    world.server.create_secret(
        "team-a", docker_config=config_holding(current.token), annotations=OURS
    )
    data_before = world.server.raw_data("team-a")
    world.provider.verify_error = KeysUnavailable("cannot fetch the token service's keys: 503")

    outcome = await world.reconcile("team-a")

    assert world.server.raw_data("team-a") == data_before
    assert world.provider.issues == []
    last_error = world.server.annotations("team-a")[ann.LAST_ERROR]
    assert last_error.startswith("cannot verify the token in the Secret")
    assert [r for _, r, _ in world.server.recorded_events()] == ["VerificationUnavailable"]
    assert outcome.requeue_after is not None
    assert outcome.requeue_after <= 1

    world.provider.verify_error = None
    waiting = await world.reconcile("team-a")

    assert waiting == Outcome(waits_until(current, written_at=None))
    assert ann.LAST_ERROR not in world.server.annotations("team-a")
    assert world.server.raw_data("team-a") == data_before
    assert world.provider.issues == []


# -- input the controller cannot act on ------------------------------------------------------

_NOBODY_MAY = parse_policy([{"identities": [OTHER_IDENTITY]}], default_provider="chainguard")


@pytest.mark.parametrize(
    ("secret", "options", "reason"),
    [
        pytest.param({"type": "Opaque"}, {}, "WrongType", id="wrong-type"),
        pytest.param(
            {"annotations": {chainguard_spec.IDENTITY: f" {IDENTITY}"}},
            {},
            "BadAnnotation",
            id="annotation",
        ),
        pytest.param(
            {"docker_config": b'{"auths": '}, {}, "MalformedDockerConfig", id="malformed-config"
        ),
        pytest.param({}, {"policy": _NOBODY_MAY}, "PolicyDenied", id="policy-denied"),
    ],
)
async def test_input_the_controller_cannot_act_on_is_reported_once_and_not_retried(
    make: Callable[..., Harness], secret: dict[str, Any], options: dict[str, Any], reason: str
) -> None:
    world: Harness = make(**options)
    world.server.create_secret("team-a", **{"annotations": OURS, "docker_config": b"{}", **secret})
    data_before = world.server.raw_data("team-a")

    outcomes = [await world.reconcile("team-a") for _ in range(2)]

    assert outcomes == [DONE, DONE]
    ((kind, recorded_reason, message),) = world.server.recorded_events()
    assert (kind, recorded_reason) == ("Warning", reason)
    assert world.server.annotations("team-a")[ann.LAST_ERROR] == ann.truncate_error(message)
    assert world.server.raw_data("team-a") == data_before
    assert len(world.server.secret_writes) == 1, "only last-error is written, and once"
    assert world.provider.issues == []


async def test_a_policy_selecting_namespaces_by_label_reads_the_namespace(
    make: Callable[..., Harness],
) -> None:
    policy = parse_policy(
        [{"identities": [IDENTITY], "namespaceSelector": {"matchLabels": {"team": "a"}}}],
        default_provider="chainguard",
    )
    world: Harness = make(policy=policy, read_labels=True)
    world.server.namespaces.update({"team-a": {"team": "a"}, "team-b": {"team": "b"}})
    world.server.create_secret("team-a", annotations=OURS)
    world.server.create_secret("team-b", annotations=OURS)

    await world.reconcile("team-a")
    denied = await world.reconcile("team-b")

    assert world.password("team-a") is not None
    assert world.password("team-b") is None
    assert [r for _, r, _ in world.server.recorded_events("Warning")] == ["PolicyDenied"]
    # Labelling the namespace changes no Secret, so no watch event: the denial is looked at
    # again by itself, at the slow rate, and the new labels are read once the old expire.
    assert denied.requeue_after is not None
    assert denied.requeue_after >= BACKOFF.base * NON_RETRYABLE_FACTOR / 2
    world.server.namespaces["team-b"] = {"team": "a"}
    world.clock.now += max(denied.requeue_after, LABELS_TTL)

    await world.controller.reconcile(("team-b", SECRET_NAME))

    assert world.password("team-b") is not None


async def test_a_denial_by_namespace_name_waits_for_the_secret_to_change(
    make: Callable[..., Harness],
) -> None:
    world: Harness = make(
        policy=parse_policy(
            [{"identities": [IDENTITY], "namespaces": ["team-b"]}], default_provider="chainguard"
        ),
        read_labels=True,
    )
    world.server.create_secret("team-a", annotations=OURS)

    assert await world.reconcile("team-a") == DONE
    assert [r for _, r, _ in world.server.recorded_events("Warning")] == ["PolicyDenied"]


async def test_namespace_labels_that_cannot_be_read_are_tried_again(
    make: Callable[..., Harness],
) -> None:
    policy = parse_policy(
        [{"identities": [IDENTITY], "namespaceSelector": {"matchLabels": {"team": "a"}}}],
        default_provider="chainguard",
    )
    world: Harness = make(policy=policy, read_labels=True)
    world.server.namespaces["team-a"] = {"team": "a"}
    world.server.create_secret("team-a", annotations=OURS)
    world.server.refuse_next("GET", "namespaces", 403)

    outcome = await world.reconcile("team-a")

    assert outcome.requeue_after is not None
    assert world.password("team-a") is None
    assert world.provider.issues == []
    ((kind, reason, message),) = world.server.recorded_events()
    assert (kind, reason) == ("Warning", "PolicyUnavailable")
    assert "get on namespaces" in message

    await world.reconcile("team-a")

    assert world.password("team-a") is not None


async def test_a_token_due_on_arrival_is_written_reported_and_retried_with_backoff(
    world: Harness,
) -> None:
    # The token service's clock runs almost an hour behind: its hour-long tokens arrive with
    # 45 s left, inside the 60 s refresh margin, so each is due the moment it is written.
    world.provider.skew = world.provider.lifetime - 45
    world.server.create_secret("team-a", annotations=OURS)

    outcomes = [await world.reconcile("team-a")]
    assert world.password("team-a") is not None  # written all the same: it still pulls
    for _ in range(5):
        delay = outcomes[-1].requeue_after
        assert delay is not None
        world.clock.now += delay
        outcomes.append(await world.controller.reconcile(("team-a", SECRET_NAME)))

    delays = [o.requeue_after or 0.0 for o in outcomes]
    assert all(d > 0 for d in delays), delays
    assert max(delays[3:]) > min(delays[:2])  # growing: backoff
    assert len(world.provider.issues) == len(outcomes)  # one exchange per try, no loop
    ((_, reason, message),) = world.server.recorded_events("Warning")
    assert reason == "TokenTooShortLived"
    assert "clock" in message
    assert ann.LAST_ERROR in world.server.annotations("team-a")
    assert world.server.recorded_events("Normal") == []


# -- writing ---------------------------------------------------------------------------------


async def test_a_conflicting_write_rereads_the_secret_and_retries_without_another_exchange(
    world: Harness,
) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    key = await world.observe("team-a")
    world.server.edit_secret("team-a", SECRET_NAME, {"metadata": {"labels": {"edited": "yes"}}})

    first = await world.controller.reconcile(key)

    assert first == Outcome(0.0)
    assert world.password("team-a") is None
    assert world.controller.store[key].resource_version == world.server.resource_version("team-a")

    await world.controller.reconcile(key)

    assert world.password("team-a") is not None
    assert world.server.secrets[key]["metadata"]["labels"] == {"edited": "yes"}
    assert len(world.provider.issues) == 1


async def test_a_secret_that_keeps_changing_under_our_writes_is_retried_with_growing_delays(
    world: Harness,
) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    key = await world.observe("team-a")
    delays = []
    for n in range(6):
        world.server.edit_secret("team-a", SECRET_NAME, {"metadata": {"labels": {"n": str(n)}}})
        outcome = await world.controller.reconcile(key)
        assert outcome.requeue_after is not None
        delays.append(outcome.requeue_after)

    assert delays[0] == 0.0  # the first conflict is retried at once
    assert min(delays[1:]) > 0
    assert max(delays[3:]) > max(delays[1:3])  # then backs off
    assert world.password("team-a") is None
    assert len(world.provider.issues) == 1  # and never exchanges again for it

    await world.controller.reconcile(key)  # left alone at last
    assert world.password("team-a") is not None
    assert key not in world.controller.failures


async def test_a_secret_deleted_before_its_write_is_dropped(world: Harness) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    key = await world.observe("team-a")
    world.server.delete_secret("team-a")

    outcome = await world.controller.reconcile(key)

    assert outcome == DONE
    assert key not in world.controller.store
    assert key not in world.controller.failures
    assert world.server.recorded_events("Warning") == []


@pytest.mark.parametrize(
    ("status", "shortest", "longest"),
    [
        pytest.param(422, 4.0, 8.0, id="invalid-is-slow"),
        pytest.param(403, 0.5, 1.0, id="forbidden"),
        pytest.param(500, 0.5, 1.0, id="server-error"),
    ],
)
async def test_a_refused_write_is_reported_and_retried_slowly_only_if_retrying_cannot_help(
    world: Harness, status: int, shortest: float, longest: float
) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    world.server.refuse_next("PATCH", "secrets", status)

    outcome = await world.reconcile("team-a")

    assert outcome.requeue_after is not None
    assert shortest <= outcome.requeue_after <= longest
    assert world.password("team-a") is None
    assert world.server.annotations("team-a")[ann.LAST_ERROR].startswith(
        "writing the Secret failed"
    )
    assert [r for _, r, _ in world.server.recorded_events()] == ["WriteFailed"]


async def test_removing_the_identity_annotation_removes_the_status_annotations(
    world: Harness,
) -> None:
    status = {
        ann.EXPIRES_AT: ann.format_time(NOW + 3600),
        ann.LAST_REFRESH: ann.format_time(NOW),
        chainguard_spec.FILLED_IDENTITY: IDENTITY,
        ann.LAST_ERROR: "an old failure",
        ann.TOKEN_HASH: "0123abcd",
    }
    world.server.create_secret(
        "team-a",
        docker_config=config_holding("a-token-left-for-the-user"),
        annotations={**status, "example.com/owner": "team-a"},
    )
    world.server.create_secret("team-b", docker_config=b"{}", annotations={"unrelated": "yes"})
    data_before = world.server.raw_data("team-a")

    outcomes = [await world.reconcile("team-a"), await world.reconcile("team-b")]

    assert outcomes == [DONE, DONE]
    assert world.server.annotations("team-a") == {"example.com/owner": "team-a"}
    assert world.server.raw_data("team-a") == data_before
    assert world.server.secret_writes == ["/api/v1/namespaces/team-a/secrets/pull-secret"]
    assert world.provider.issues == []
    assert world.server.recorded_events() == []


async def test_a_replica_that_does_not_lead_writes_and_exchanges_nothing_but_keeps_time(
    make: Callable[..., Harness],
) -> None:
    world: Harness = make(leader=False)
    current = world.provider.mint(IDENTITY, issued_at=NOW - 600)
    world.server.create_secret("empty", annotations=OURS)
    world.server.create_secret("held", docker_config=config_holding(current.token),
                               annotations=OURS)  # fmt: skip
    world.server.create_secret("wrong", type="Opaque", annotations=OURS)
    world.server.create_secret("stale-status", annotations={ann.LAST_ERROR: "old"})

    outcomes = {
        namespace: await world.reconcile(namespace)
        for namespace in ("empty", "held", "wrong", "stale-status")
    }

    assert outcomes == {
        "empty": DONE,
        "held": Outcome(waits_until(current, written_at=None)),
        "wrong": DONE,
        "stale-status": DONE,
    }
    assert world.server.secret_writes == []
    assert world.provider.issues == []
    await world.controller.events.aclose()
    assert world.server.recorded_events() == []


@dataclass
class LateRenewal:
    """A leader whose last renewal is older than the renew deadline, still renewing: it has
    not stepped down (`leading`), but may not write now (`is_leader`)."""

    is_leader: bool = False
    leading: bool = True
    retry_period: float = 2.0


async def test_a_leader_whose_renewal_is_late_looks_again_and_fills_once_renewed(
    world: Harness,
) -> None:
    late = LateRenewal()
    world.controller.elector = cast(LeaderElector, late)
    world.server.create_secret("team-a", annotations=OURS)

    outcome = await world.reconcile("team-a")

    # Nothing else would queue it: the renewal may succeed with no stop and start of leading.
    assert outcome == Outcome(late.retry_period)
    assert world.server.secret_writes == []
    late.is_leader = True
    await world.controller.reconcile(("team-a", SECRET_NAME))
    assert world.password("team-a") is not None


# -- the worker loop and watch events --------------------------------------------------------


async def test_an_unexpected_error_is_retried_with_growing_delays(world: Harness) -> None:
    current = world.provider.mint(IDENTITY, issued_at=NOW - 600)
    world.server.create_secret(
        "team-a", docker_config=config_holding(current.token), annotations=OURS
    )
    world.provider.verify_error = RuntimeError("a bug in the provider")
    key = await world.observe("team-a")

    delays = []
    with capture_logs() as logged:
        for _ in range(3):
            delays.append(await run_worker_once(world, key))
            world.clock.now += delays[-1]

    assert [line["event"] for line in logged] == ["reconcile failed unexpectedly"] * 3
    assert world.provider.verifications == 3
    assert 0.5 <= delays[0] <= 1 <= delays[1] <= 2 <= delays[2] <= 4
    assert delays[0] < delays[1] < delays[2]

    world.provider.verify_error = None
    recovered = await run_worker_once(world, key)

    assert recovered == pytest.approx(waits_until(current, written_at=None, now=world.clock.now))
    assert key not in world.controller.failures
    assert world.server.secret_writes == []


@pytest.mark.parametrize("how", ["DELETED", "missing-from-relist"])
async def test_a_deleted_secret_is_forgotten(world: Harness, how: str) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    world.server.create_secret("team-b", annotations=OURS)
    world.provider.issue_error = UNAVAILABLE
    key = await world.observe("team-a")
    await world.observe("team-b")
    await run_worker_once(world, key)
    assert key in world.controller.failures

    gone = world.controller.store[key]
    world.server.delete_secret("team-a")
    if how == "DELETED":
        event = WatchEvent(type="DELETED", object=gone)
    else:
        (remaining,) = [world.controller.store[k] for k in world.controller.store if k != key]
        event = WatchEvent(type="SYNC", objects=(remaining,))
    await world.controller.handle_event(SECRET_NAME, event)

    assert key not in world.controller.store
    assert key not in world.controller.failures
    assert world.controller.queue.scheduled(key) is None
    assert ("team-b", SECRET_NAME) in world.controller.store


# -- races with deletion ---------------------------------------------------------------------


async def test_a_secret_deleted_while_its_exchange_fails_leaves_no_failure_behind(
    world: Harness,
) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    key = await world.observe("team-a")
    world.provider.issue_error = UNAVAILABLE
    world.provider.gate = asyncio.Event()
    reconciling = asyncio.create_task(world.controller.reconcile(key))
    await until(lambda: bool(world.provider.issues))

    gone = world.controller.store[key]
    world.server.delete_secret("team-a")
    await world.controller.handle_event(SECRET_NAME, WatchEvent(type="DELETED", object=gone))
    world.provider.gate.set()
    await reconciling

    world.controller.update_gauges()
    failing = world.controller.metrics.registry.get_sample_value(
        "pull_secret_updater_failing_secrets"
    )
    # The Secret is created again under the same name, and its exchange fails the same way.
    world.server.create_secret("team-a", annotations=OURS)
    await world.reconcile("team-a")

    assert failing == 0
    assert world.server.recorded_events("Warning") == [
        ("Warning", "ExchangeFailed", UNAVAILABLE.message),
    ], "nothing is reported on the deleted Secret; the new one gets its own Warning"


async def test_a_secret_deleted_while_its_write_is_answered_is_not_kept(world: Harness) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    key = await world.observe("team-a")
    world.server.hold_write_answers = asyncio.Event()
    reconciling = asyncio.create_task(world.controller.reconcile(key))
    await until(lambda: bool(world.server.secret_writes))

    gone = await get_secret(world.client, namespace="team-a", name=SECRET_NAME)
    assert gone is not None
    world.server.delete_secret("team-a")
    await world.controller.handle_event(SECRET_NAME, WatchEvent(type="DELETED", object=gone))
    world.server.hold_write_answers.set()
    await reconciling

    assert key not in world.controller.store


async def test_a_password_that_cannot_be_encoded_is_replaced_not_retried_as_a_crash(
    world: Harness,
) -> None:
    # Valid JSON whose password is a lone surrogate escape: no credential the controller
    # wrote, and one that cannot even be hashed or compared. It is filled like a missing one.
    raw = b'{"auths": {"cgr.dev": {"username": "_token", "password": "\\ud800"}}}'
    world.server.create_secret("team-a", annotations=OURS, docker_config=raw)

    outcome = await world.reconcile("team-a")

    token = world.password("team-a")
    assert token is not None
    assert token.isascii()
    assert outcome.requeue_after is not None
    assert outcome.requeue_after > 60
    assert ("team-a", SECRET_NAME) not in world.controller.failures
    await world.controller.events.aclose()
    assert [reason for _, reason, _ in world.server.recorded_events()] == ["Filled"]


async def test_an_edited_expires_at_is_never_read_and_is_put_right_at_the_next_write(
    world: Harness,
) -> None:
    world.server.create_secret("team-a", annotations=OURS)
    await world.reconcile("team-a")
    world.controller.update_gauges()
    assert world.controller.metrics.registry.get_sample_value(EARLIEST) == 3600

    # A tenant claims the token lives for a century, and sets a last-error for good measure.
    world.server.edit_secret("team-a", SECRET_NAME, {"metadata": {"annotations": {
        ann.EXPIRES_AT: "2126-01-01T00:00:00Z", ann.LAST_ERROR: "all is well"}}})  # fmt: skip
    waited = await world.reconcile("team-a")
    world.controller.update_gauges()
    assert world.controller.metrics.registry.get_sample_value(EARLIEST) == 3600
    # The planted last-error is cleared, and with that write the expiry is put right.
    assert world.server.annotations("team-a")[ann.EXPIRES_AT] == ann.format_time(NOW + 3600)
    assert ann.LAST_ERROR not in world.server.annotations("team-a")
    assert waited.requeue_after is not None
    assert len(world.provider.issues) == 1


async def test_a_namespace_naming_ever_new_identities_is_held_to_its_budget_alone(
    make: Callable[..., Harness],
) -> None:
    # A tenant rewrites its Secret's identity annotation again and again: each new value
    # would be an exchange. Its namespace gets its burst, then waits; the quiet namespace
    # next door is filled at once all the same.
    world = make(budget=(1 / 60, 3))
    world.server.create_secret("churn", annotations=OURS)
    for n in range(20):
        identity = f"45a0c61ea6fd977f050c5fb9ac06a69eed764595/{n:016x}"
        world.server.edit_secret("churn", SECRET_NAME, {"metadata": {"annotations": {
            chainguard_spec.IDENTITY: identity}}})  # fmt: skip
        outcome = await world.reconcile("churn")
    world.server.create_secret("quiet", annotations=OURS)
    await world.reconcile("quiet")

    churned = [identity for identity, _ in world.provider.issues if identity != IDENTITY]
    assert len(churned) == 3, "the burst, and nothing more"
    assert world.password("quiet") is not None
    assert world.server.annotations("churn")[ann.LAST_ERROR].startswith(
        "namespace churn started more exchanges than its budget allows"
    )
    assert outcome.requeue_after is not None
    assert outcome.requeue_after >= 59, "told to come back when the budget allows"
    await world.controller.events.aclose()
    warnings = [reason for _, reason, _ in world.server.recorded_events("Warning")]
    assert warnings == ["RateLimited"]
