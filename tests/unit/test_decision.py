"""The decision for one Secret: `inspect` reads it, `decide` says fill or wait from the verdict
on its token, and the round trip through a write."""

# NB: no `from __future__ import annotations` here: it would shadow the module of that name.

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, get_args

import pytest

from pull_secret_updater.core import annotations
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.decision import (
    Fill,
    FillReason,
    Ignore,
    Invalid,
    Part,
    Problem,
    Request,
    SecretView,
    Untrusted,
    Verdict,
    Wait,
    along_with,
    decide,
    inspect,
)
from pull_secret_updater.core.dockerconfig import parse_docker_config, with_token
from pull_secret_updater.core.policy import ALLOW_ALL, Policy, parse_policy
from pull_secret_updater.core.providers import Want
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.core.status import cleared_status, error_annotation, status_annotations
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.providers.chainguard.spec import ChainguardSpec

REGISTRY = "cgr.dev"
UID = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"
OTHER_UID = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/0000000000000000"
ISSUED = 1_750_000_000.0
LIFETIME = 3600.0
EXPIRES = ISSUED + LIFETIME
SCHEDULE = Schedule(fraction=2 / 3, jitter=0.1, margin=300, min_interval=5)
# The jitter band for the schedule above: 2/3 -/+ 0.1 of the lifetime.
EARLIEST = ISSUED + LIFETIME * (2 / 3 - 0.1)
LATEST = ISSUED + LIFETIME * (2 / 3 + 0.1)
#: What the Secret holds. The core never looks inside a token: its verdict comes from outside.
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJTM0NSRVQifQ.c2lnbmF0dXJl"
NEW_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJORVcifQ.c2lnbmF0dXJl"
SPEC = ChainguardSpec(registry=REGISTRY)
WANT = Want(provider="chainguard", identity=UID, registries=(REGISTRY,))


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(auths: Mapping[str, Any], **top: Any) -> bytes:
    return json.dumps({**top, "auths": dict(auths)}).encode()


def _ours(token: str = TOKEN, key: str = REGISTRY) -> bytes:
    return _config({key: {"username": "_token", "password": token, "auth": _auth("_token", token)}})


def _secret(
    *,
    annotations_: Mapping[str, str] | None = None,
    raw: bytes | None = b"{}",
    type_: str = "kubernetes.io/dockerconfigjson",
    namespace: str = "team-a",
) -> SecretView:
    return SecretView(
        namespace=namespace,
        name="pull-secret",
        type=type_,
        annotations={chainguard_spec.IDENTITY: UID} if annotations_ is None else annotations_,
        docker_config_raw=raw,
        resource_version="42",
    )


def _verified(
    *,
    token: str = TOKEN,
    identity: str = UID,
    issued_at: float = ISSUED,
    expires_at: float = EXPIRES,
) -> Credential:
    return Credential(
        provider="chainguard",
        token=token,
        identity=identity,
        registries=(REGISTRY,),
        username="_token",
        issued_at=issued_at,
        expires_at=expires_at,
        key_id="key-1",
    )


def _inspect(
    secret: SecretView,
    *,
    policy: Policy = ALLOW_ALL,
    labels: Mapping[str, str] | None = None,
) -> Request | Invalid | Ignore:
    return inspect(secret, providers=(SPEC,), policy=policy, namespace_labels=labels)


def _request(secret: SecretView) -> Request:
    found = _inspect(secret)
    assert isinstance(found, Request), found
    return found


def _decide(
    secret: SecretView, verdict: Verdict | None, *, now: float = ISSUED + 60
) -> Fill | Wait:
    request = _request(secret)
    (part,) = request.parts
    return decide(part, verdict=verdict, now=now, schedule=SCHEDULE, written_at=request.written_at)


def _bad(message: str, *, raw: bytes | None = b"{}") -> Request:
    """The Request of a Secret whose Chainguard annotation is bad: a problem, no part."""
    return Request(
        namespace="team-a",
        config=parse_docker_config(raw),
        parts=(),
        problems=(Problem(provider="chainguard", reason=Reason.BAD_ANNOTATION, message=message),),
    )


def _planted(*, expires: float, last_refresh: float | None = None) -> SecretView:
    """Our entry, with the status annotations a planted token would come with."""
    planted = {
        chainguard_spec.IDENTITY: UID,
        annotations.TOKEN_HASH: "0123456789abcdef0123456789abcdef",
        chainguard_spec.FILLED_IDENTITY: UID,
        annotations.EXPIRES_AT: annotations.format_time(expires),
    }
    if last_refresh is not None:
        planted[annotations.LAST_REFRESH] = annotations.format_time(last_refresh)
    return _secret(raw=_ours(), annotations_=planted)


def _not_trusted(detail: str) -> Fill:
    """The Fill that replaces our entry's token because it is not trusted."""
    return Fill(want=WANT, reason="token not trusted", detail=detail)


# --- inspect: is it ours, is it well-formed, is it allowed --------------------------------------

_WRONG_TYPE = (
    "Secret type is Opaque; only kubernetes.io/dockerconfigjson Secrets can be filled, "
    "and type is immutable: recreate the Secret with that type"
)
_DENY_ALL = parse_policy([], default_provider="chainguard")
_TEAM_B_ONLY = parse_policy(
    [{"identities": [UID], "namespaces": ["team-b"]}], default_provider="chainguard"
)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        pytest.param(
            _secret(annotations_={}, type_="Opaque", raw=b"not json"),
            Ignore(),
            id="no annotation: not ours, whatever else is wrong",
        ),
        pytest.param(
            _secret(annotations_={"other.example/identity": UID}),
            Ignore(),
            id="someone else's annotation",
        ),
        pytest.param(
            _secret(
                annotations_={chainguard_spec.FILLED_IDENTITY: UID, annotations.TOKEN_HASH: "ab"}
            ),
            Ignore(),
            id="only status annotations: not ours",
        ),
        pytest.param(
            _secret(annotations_={chainguard_spec.IDENTITY: ""}, type_="Opaque"),
            Invalid(reason_code=Reason("WrongType"), message=_WRONG_TYPE),
            id="empty annotation: still ours, and the wrong type spoils the whole Secret",
        ),
        pytest.param(
            _secret(annotations_={chainguard_spec.IDENTITY: ""}),
            _bad(f"annotation {chainguard_spec.IDENTITY} is empty"),
            id="empty annotation",
        ),
        pytest.param(
            _secret(annotations_={chainguard_spec.IDENTITY: f"{UID} "}),
            _bad(
                f"annotation {chainguard_spec.IDENTITY} has leading or trailing whitespace; "
                "remove it"
            ),
            id="whitespace around the identity",
        ),
        pytest.param(
            _secret(annotations_={chainguard_spec.IDENTITY: "org/*"}),
            _bad(
                f"annotation {chainguard_spec.IDENTITY} contains '*' at position 5; an identity "
                "UID has only letters, digits and / _ . -"
            ),
            id="a glob is not an identity",
        ),
        pytest.param(
            _secret(type_="Opaque", raw=b"not json"),
            Invalid(reason_code=Reason("WrongType"), message=_WRONG_TYPE),
            id="wrong type before malformed config",
        ),
        pytest.param(
            _secret(raw=b"[]"),
            Invalid(
                reason_code=Reason("MalformedDockerConfig"),
                message=".dockerconfigjson is a list, expected an object",
            ),
            id="config is not an object",
        ),
        pytest.param(
            _secret(raw=b'{"auths": ['),
            Invalid(
                reason_code=Reason("MalformedDockerConfig"),
                message=".dockerconfigjson is not valid JSON (line 1, column 12)",
            ),
            id="config is not JSON",
        ),
        pytest.param(
            _secret(raw=b'{"auths": {"cgr.dev": "x"}}'),
            Invalid(
                reason_code=Reason("MalformedDockerConfig"),
                message=".dockerconfigjson: auths entry #1 is a string, expected an object",
            ),
            id="entry is not an object",
        ),
    ],
)
def test_secrets_that_are_not_ours_or_not_usable(
    secret: SecretView, expected: Ignore | Invalid | Request
) -> None:
    assert _inspect(secret) == expected


def test_a_policy_denial_is_a_problem_of_its_provider_with_no_part_to_fill() -> None:
    assert _inspect(_secret(), policy=_TEAM_B_ONLY) == Request(
        namespace="team-a",
        config=parse_docker_config(b"{}"),
        parts=(),
        problems=(
            Problem(
                provider="chainguard",
                reason=Reason.POLICY_DENIED,
                message=f"chainguard identity {UID} may not be used in namespace team-a by the "
                "controller's policy",
            ),
        ),
    )


def test_the_type_is_checked_before_the_policy() -> None:
    found = _inspect(_secret(type_="Opaque"), policy=_DENY_ALL)
    assert isinstance(found, Invalid)
    assert found.reason_code == "WrongType"


def test_an_allowed_identity_proceeds() -> None:
    assert isinstance(_inspect(_secret(namespace="team-b"), policy=_TEAM_B_ONLY), Request)


def test_a_namespace_selector_uses_the_labels_given_and_unknown_labels_deny() -> None:
    policy = parse_policy(
        [{"identities": [UID], "namespaceSelector": {"matchLabels": {"t": "a"}}}],
        default_provider="chainguard",
    )
    assert isinstance(_inspect(_secret(), policy=policy, labels={"t": "a"}), Request)
    for labels in (None, {}, {"t": "b"}):
        denied = _inspect(_secret(), policy=policy, labels=labels)
        assert isinstance(denied, Request)
        assert [p.reason for p in denied.problems] == ["PolicyDenied"]
        assert denied.parts == ()


def test_allow_all_allows_any_identity_in_any_namespace() -> None:
    secret = _secret(
        namespace="kube-system", annotations_={chainguard_spec.IDENTITY: OTHER_UID}, raw=None
    )
    assert _inspect(secret, policy=ALLOW_ALL) == Request(
        namespace="kube-system",
        config=parse_docker_config(None),
        parts=(
            Part(
                want=replace(WANT, identity=OTHER_UID),
                current=None,
                filled_identity=None,
                empty=True,
            ),
        ),
        written_at=None,
    )


def test_a_request_carries_the_token_in_the_registrys_entry_and_the_last_write() -> None:
    secret = _secret(
        raw=_ours(),
        annotations_={
            chainguard_spec.IDENTITY: UID,
            annotations.LAST_REFRESH: annotations.format_time(ISSUED),
        },
    )
    request = _request(secret)
    (part,) = request.parts
    assert (request.namespace, part.identity) == ("team-a", UID)
    assert part.current == TOKEN
    assert request.written_at == ISSUED
    assert request.config == parse_docker_config(_ours())


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="no data"),
        pytest.param(b"{}", id="{}"),
        pytest.param(_config({"ghcr.io": {"auth": _auth("u", "p")}}), id="another registry"),
        pytest.param(_ours(key="https://cgr.dev"), id="alias key https://cgr.dev"),
        pytest.param(_ours(key="cgr.dev/"), id="alias key cgr.dev/"),
        pytest.param(_ours(key="https://cgr.dev/v2/"), id="alias key https://cgr.dev/v2/"),
        pytest.param(_config({REGISTRY: {"auth": "%%%", "password": TOKEN}}), id="bad auth"),
        pytest.param(_config({REGISTRY: {"username": "_token"}}), id="entry without password"),
    ],
)
def test_there_is_no_current_token_without_a_readable_entry_under_the_exact_key(
    raw: bytes | None,
) -> None:
    # Alias entries are other people's: a token found there is never taken for ours.
    assert _request(_secret(raw=raw)).parts[0].current is None


def test_an_unreadable_last_refresh_is_no_last_write() -> None:
    secret = _secret(
        annotations_={chainguard_spec.IDENTITY: UID, annotations.LAST_REFRESH: "yesterday"}
    )
    assert _request(secret).written_at is None


def test_status_annotations_written_by_anyone_change_nothing_in_the_request() -> None:
    # An unkeyed token-hash and an expiry are what a planted token would come with.
    planted = _planted(expires=EXPIRES + 365 * 86400)
    # filled-identity only words a Fill's reason ("identity changed"); it decides nothing.
    found, plain = _request(planted), _request(_secret(raw=_ours()))
    parts = tuple(replace(part, filled_identity=None) for part in found.parts)
    assert replace(found, parts=parts) == plain


# --- decide: fill now, or wait -----------------------------------------------------------------


def test_a_secret_without_any_entry_is_filled() -> None:
    fill = _decide(_secret(raw=b"{}"), None)
    assert fill == Fill(want=WANT, reason="empty")
    assert (fill.event_reason, fill.why, fill.stale) == ("Filled", "empty", None)


def test_a_secret_with_only_other_registries_is_filled() -> None:
    raw = _config({"ghcr.io": {"auth": _auth("u", "p")}}, credsStore="desktop")
    fill = _decide(_secret(raw=raw), None)
    assert isinstance(fill, Fill)
    assert (fill.reason, fill.event_reason, fill.stale) == ("no entry for registry", "Filled", None)


def test_a_token_under_an_alias_key_only_is_filled_as_a_missing_entry() -> None:
    fill = _decide(_secret(raw=_ours(key="https://cgr.dev")), None)
    assert isinstance(fill, Fill)
    assert fill.reason == "no entry for registry"
    assert fill.stale is None


@pytest.mark.parametrize(
    "why",
    [
        "token's signature does not verify with the token service's keys",
        "token was not issued by the configured token service",
        "token is not a JWT",
    ],
)
def test_a_token_that_does_not_verify_is_replaced_and_never_offered_as_stale(why: str) -> None:
    fill = _decide(_secret(raw=_ours()), Untrusted(why=why))
    assert fill == _not_trusted(why)
    assert fill.why == f"token not trusted: {why}"
    assert fill.event_reason == "Filled"
    assert fill.stale is None


def test_a_planted_token_with_every_status_annotation_is_still_replaced() -> None:
    planted = _planted(expires=EXPIRES, last_refresh=ISSUED + 59)
    fill = _decide(
        planted, Untrusted(why="token is signed with 'HS256', not an asymmetric algorithm")
    )
    assert isinstance(fill, Fill)
    assert fill.reason == "token not trusted"


def test_a_verified_token_of_another_identity_is_not_trusted_and_not_stale() -> None:
    fill = _decide(_secret(raw=_ours()), _verified(identity=OTHER_UID))
    assert fill == _not_trusted("it was issued for another identity")
    assert fill.event_reason == "Filled"


def test_a_token_of_the_identity_it_was_filled_for_means_the_identity_changed() -> None:
    secret = _secret(
        raw=_ours(),
        annotations_={chainguard_spec.IDENTITY: UID, chainguard_spec.FILLED_IDENTITY: OTHER_UID},
    )
    fill = _decide(secret, _verified(identity=OTHER_UID))
    assert fill == Fill(want=WANT, reason="identity changed")
    assert fill.event_reason == "Filled"
    # Not the identity asked for: the cache of UID never held it, so nothing to skip.
    assert fill.stale is None


@pytest.mark.parametrize("now", [EXPIRES, EXPIRES + 10, EXPIRES + 365 * 86400])
def test_an_expired_token_of_ours_is_refreshed_and_named_stale(now: float) -> None:
    fill = _decide(_secret(raw=_ours()), _verified(), now=now)
    assert fill == Fill(want=WANT, reason="expired", stale=TOKEN)
    assert fill.event_reason == "Refreshed"
    assert fill.stale_expires_at is None, "nothing left to retry before"


def test_a_verified_token_of_ours_waits_until_the_schedule_says_so() -> None:
    verdict = _verified()
    wait = _decide(_secret(raw=_ours()), verdict)
    assert wait == Wait(
        want=WANT,
        token=verdict,
        refresh_at=SCHEDULE.refresh_at(token=TOKEN, issued_at=ISSUED, expires_at=EXPIRES),
    )
    assert EARLIEST <= wait.refresh_at <= LATEST


def test_the_refresh_time_does_not_depend_on_when_or_how_often_we_look() -> None:
    secret = _secret(raw=_ours())
    seen = {_decide(secret, _verified(), now=now) for now in (ISSUED, ISSUED + 1, EARLIEST - 1)}
    assert len(seen) == 1


def test_different_tokens_with_the_same_times_get_different_refresh_times() -> None:
    times = set()
    for n in range(20):
        token = f"{TOKEN}{n}"
        wait = _decide(_secret(raw=_ours(token=token)), _verified(token=token))
        assert isinstance(wait, Wait)
        times.add(wait.refresh_at)
    assert len(times) == 20


def test_from_the_refresh_time_until_expiry_it_is_due_and_named_stale() -> None:
    secret = _secret(raw=_ours())
    wait = _decide(secret, _verified())
    assert isinstance(wait, Wait)
    for now in (wait.refresh_at, wait.refresh_at + 1, EXPIRES - 1):
        fill = _decide(secret, _verified(), now=now)
        # With its verified expiry, which the retries of a failed refresh must come before.
        assert fill == Fill(
            want=WANT,
            reason="due for refresh",
            stale=TOKEN,
            stale_expires_at=EXPIRES,
        )
        assert fill.event_reason == "Refreshed"


def test_a_token_of_an_absurd_lifetime_is_due_within_the_max_interval() -> None:
    secret = _secret(raw=_ours())
    verdict = _verified(expires_at=ISSUED + 10 * 365 * 86400)
    wait = _decide(secret, verdict)
    assert isinstance(wait, Wait)
    assert wait.refresh_at == ISSUED + SCHEDULE.max_interval
    assert isinstance(_decide(secret, verdict, now=ISSUED + SCHEDULE.max_interval), Fill)


def test_a_token_written_moments_ago_waits_min_interval_even_if_its_times_say_due() -> None:
    # A token service whose clock is behind ours: every token looks due on arrival.
    now = ISSUED + 3000
    secret = _secret(
        raw=_ours(),
        annotations_={
            chainguard_spec.IDENTITY: UID,
            annotations.LAST_REFRESH: annotations.format_time(now),
        },
    )
    assert _decide(secret, _verified(), now=now) == Wait(
        want=WANT, token=_verified(), refresh_at=now + SCHEDULE.min_interval
    )
    fill = _decide(secret, _verified(), now=now + SCHEDULE.min_interval)
    assert isinstance(fill, Fill)
    assert fill.reason == "due for refresh"


def test_a_last_refresh_planted_in_the_future_does_not_postpone_a_due_token() -> None:
    now = ISSUED + 3000
    planted = _secret(
        raw=_ours(),
        annotations_={
            chainguard_spec.IDENTITY: UID,
            annotations.LAST_REFRESH: annotations.format_time(now + 365 * 86400),
        },
    )
    wait = _decide(planted, _verified(), now=now)
    assert isinstance(wait, Wait)
    assert wait.refresh_at == now + SCHEDULE.min_interval


def test_a_short_lived_token_refreshes_half_way_rather_than_at_once() -> None:
    verdict = _verified(expires_at=ISSUED + 120)
    assert _decide(_secret(raw=_ours()), verdict, now=ISSUED + 1) == Wait(
        want=WANT, token=verdict, refresh_at=ISSUED + 60
    )


def test_every_fill_reason_is_reachable_and_has_an_event_reason() -> None:
    secret = _secret(raw=_ours())
    fills = [
        _decide(_secret(raw=b"{}"), None),
        _decide(_secret(raw=_config({"ghcr.io": {}})), None),
        _decide(secret, Untrusted(why="no")),
        _decide(
            _secret(
                raw=_ours(),
                annotations_={
                    chainguard_spec.IDENTITY: UID,
                    chainguard_spec.FILLED_IDENTITY: OTHER_UID,
                },
            ),
            _verified(identity=OTHER_UID),
        ),
        _decide(secret, _verified(), now=EXPIRES),
        _decide(secret, _verified(), now=EXPIRES - 1),
        along_with(
            Wait(want=WANT, token=_verified(), refresh_at=EXPIRES - 100),
            newer=_verified(token="newer-token", expires_at=EXPIRES + 600),
            now=ISSUED + 10,
            schedule=SCHEDULE,
        ),
        along_with(
            Wait(want=WANT, token=_verified(), refresh_at=ISSUED + 2400),
            newer=None,
            now=ISSUED + 2400 - 1,
            schedule=SCHEDULE,
        ),
    ]
    assert all(isinstance(fill, Fill) for fill in fills)
    reasons = [fill.reason for fill in fills if isinstance(fill, Fill)]
    assert sorted(reasons) == sorted(get_args(FillReason))
    events = {fill.reason: fill.event_reason for fill in fills if isinstance(fill, Fill)}
    assert events == {
        "empty": "Filled",
        "no entry for registry": "Filled",
        "token not trusted": "Filled",
        "identity changed": "Filled",
        "expired": "Refreshed",
        "due for refresh": "Refreshed",
        "newer token at hand": "Refreshed",
        "due soon": "Refreshed",
    }


def test_a_part_not_due_takes_a_newer_token_at_hand_and_only_a_newer_one() -> None:
    held = _verified()
    now = ISSUED + 10  # long before the part comes due
    wait = Wait(want=WANT, token=held, refresh_at=ISSUED + 2400)
    newer = _verified(token="newer-token", expires_at=EXPIRES + 600)

    def along(candidate: Credential | None) -> Fill | None:
        return along_with(wait, newer=candidate, now=now, schedule=SCHEDULE)

    assert along(newer) == Fill(
        want=WANT,
        reason="newer token at hand",
        stale=held.token,
        stale_expires_at=held.expires_at,
    )
    # Nothing at hand, the same token, or one that expires no later: the part waits.
    assert along(None) is None
    assert along(held) is None
    assert along(_verified(token="older-token", expires_at=EXPIRES)) is None
    assert along(_verified(token="older-token", expires_at=EXPIRES - 5)) is None
    # Nor one of another provider, whatever it is.
    assert along(replace(newer, provider="fake")) is None


def test_a_part_due_within_the_jitter_share_of_its_lifetime_is_refreshed_along() -> None:
    held = _verified()  # ISSUED .. EXPIRES
    share = SCHEDULE.jitter * (EXPIRES - ISSUED)
    due = ISSUED + 2400
    wait = Wait(want=WANT, token=held, refresh_at=due)

    soon = along_with(wait, newer=None, now=due - share, schedule=SCHEDULE)
    assert soon == Fill(
        want=WANT, reason="due soon", stale=held.token, stale_expires_at=held.expires_at
    )
    assert along_with(wait, newer=None, now=due - share - 1, schedule=SCHEDULE) is None
    # A schedule without jitter refreshes nothing early.
    still = replace(SCHEDULE, jitter=0.0)
    assert along_with(wait, newer=None, now=due - 1, schedule=still) is None


def test_reprs_hide_the_tokens_and_the_data() -> None:
    secret = _secret(raw=_ours())
    request = _request(secret)
    fill = _decide(secret, _verified(), now=EXPIRES)
    wait = _decide(secret, _verified())
    for value in (secret, request, fill, wait):
        assert "S3CRET" not in repr(value)  # the payload of TOKEN, base64url-encoded
        assert TOKEN not in repr(value)


# --- what the controller writes -------------------------------------------------------------


def test_status_annotations_record_the_write_and_remove_the_old_fingerprint() -> None:
    filled = {chainguard_spec.FILLED_IDENTITY: UID}
    assert status_annotations(filled=filled, expires_at=EXPIRES, refreshed_at=ISSUED) == {
        annotations.EXPIRES_AT: "2025-06-15T16:06:40Z",
        annotations.LAST_REFRESH: "2025-06-15T15:06:40Z",
        chainguard_spec.FILLED_IDENTITY: UID,
        annotations.LAST_ERROR: None,
        annotations.TOKEN_HASH: None,
    }


def test_error_annotation_sets_only_last_error_on_one_line() -> None:
    assert error_annotation("token service said\nno") == {
        annotations.LAST_ERROR: "token service said no"
    }


def test_cleared_status_removes_exactly_the_status_annotations_present() -> None:
    present = {
        chainguard_spec.IDENTITY: UID,
        annotations.EXPIRES_AT: "2025-06-15T16:06:40Z",
        annotations.TOKEN_HASH: "ab" * 16,
        annotations.LAST_ERROR: "boom",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    present[chainguard_spec.FILLED_IDENTITY] = UID
    assert cleared_status(present, providers=(SPEC,)) == {
        chainguard_spec.FILLED_IDENTITY: None,
        annotations.EXPIRES_AT: None,
        annotations.TOKEN_HASH: None,
        annotations.LAST_ERROR: None,
    }


def test_cleared_status_of_a_secret_without_status_is_an_empty_patch() -> None:
    assert cleared_status({chainguard_spec.IDENTITY: UID, "other": "x"}, providers=(SPEC,)) == {}


def _apply(current: Mapping[str, str], patch: Mapping[str, str | None]) -> dict[str, str]:
    merged = {**current, **patch}
    return {key: value for key, value in merged.items() if value is not None}


def test_a_filled_secret_then_waits_keeps_other_registries_and_refills_on_identity_change() -> None:
    other = {"ghcr.io": {"auth": _auth("me", "pw"), "email": "me@example.com"}}
    secret = _secret(
        raw=_config(other, credsStore="desktop"),
        annotations_={chainguard_spec.IDENTITY: UID, annotations.TOKEN_HASH: "ab" * 16},
    )
    first = _decide(secret, None, now=ISSUED)
    assert isinstance(first, Fill)
    assert first.reason == "no entry for registry"

    # What the controller does with a Fill, using only the core.
    raw = with_token(_request(secret).config, registry=REGISTRY, token=NEW_TOKEN, username="_token")
    merged = _apply(
        secret.annotations,
        status_annotations(
            filled={chainguard_spec.FILLED_IDENTITY: UID}, expires_at=EXPIRES, refreshed_at=ISSUED
        ),
    )
    filled = replace(secret, docker_config_raw=raw, annotations=merged, resource_version="43")
    assert annotations.TOKEN_HASH not in filled.annotations

    request = _request(filled)
    assert request.parts[0].current == NEW_TOKEN
    assert request.written_at == ISSUED
    second = decide(
        request.parts[0], verdict=_verified(token=NEW_TOKEN), now=ISSUED + 1, schedule=SCHEDULE
    )
    assert isinstance(second, Wait)
    assert second.token.token == NEW_TOKEN
    written = json.loads(raw)
    assert written["credsStore"] == "desktop"
    assert written["auths"]["ghcr.io"] == other["ghcr.io"]

    # And once the user changes the identity, it is filled again, for the new identity.
    changed = replace(filled, annotations={**merged, chainguard_spec.IDENTITY: OTHER_UID})
    third = decide(
        _request(changed).parts[0],
        verdict=_verified(token=NEW_TOKEN),
        now=ISSUED + 2,
        schedule=SCHEDULE,
    )
    assert isinstance(third, Fill)
    assert (third.identity, third.reason, third.stale) == (OTHER_UID, "identity changed", None)
