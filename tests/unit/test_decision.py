"""The reconcile decision for one Secret, case by case, and the round trip through a write."""

# NB: no `from __future__ import annotations` here: it would shadow the module of that name.

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from pull_secret_updater.core import annotations
from pull_secret_updater.core.decision import (
    Decision,
    Fill,
    Ignore,
    Invalid,
    SecretView,
    Wait,
    decide,
    error_annotation,
    status_annotations,
)
from pull_secret_updater.core.dockerconfig import parse_docker_config, with_token
from pull_secret_updater.core.policy import Policy, parse_policy
from pull_secret_updater.core.timing import Schedule

REGISTRY = "cgr.dev"
UID = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"
OTHER_UID = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/0000000000000000"
ISSUED = 1_750_000_000.0
LIFETIME = 3600.0
EXPIRES = ISSUED + LIFETIME
SCHEDULE = Schedule(fraction=2 / 3, jitter=0.1, margin=300)
# The jitter band for the schedule above: 2/3 -/+ 0.1 of the lifetime.
EARLIEST = ISSUED + LIFETIME * (2 / 3 - 0.1)
LATEST = ISSUED + LIFETIME * (2 / 3 + 0.1)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(**claims: Any) -> str:
    return f"{_b64(b'{}')}.{_b64(json.dumps(claims).encode())}.{_b64(b'sig')}"


TOKEN = _jwt(exp=EXPIRES, iat=ISSUED, sub=UID)


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(auths: Mapping[str, Any], **top: Any) -> bytes:
    return json.dumps({**top, "auths": dict(auths)}).encode()


def _ours(token: str = TOKEN, key: str = REGISTRY) -> bytes:
    return _config({key: {"username": "_token", "password": token, "auth": _auth("_token", token)}})


def _status(token: str = TOKEN, identity: str = UID, **extra: str) -> dict[str, str]:
    return {
        annotations.IDENTITY: identity,
        annotations.TOKEN_HASH: annotations.token_hash(
            identity=identity, registry=REGISTRY, token=token
        ),
        annotations.FILLED_IDENTITY: identity,
        **extra,
    }


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
        annotations={annotations.IDENTITY: UID} if annotations_ is None else annotations_,
        docker_config_raw=raw,
        resource_version="42",
    )


def _decide(
    secret: SecretView,
    *,
    now: float = ISSUED + 60,
    policy: Policy | None = None,
    labels: Mapping[str, str] | None = None,
) -> Decision:
    return decide(
        secret,
        now=now,
        registry=REGISTRY,
        policy=policy,
        namespace_labels=labels,
        schedule=SCHEDULE,
    )


_WRONG_TYPE = (
    "Secret type is Opaque; only kubernetes.io/dockerconfigjson Secrets can be filled, "
    "and type is immutable: recreate the Secret with that type"
)
_DENY_ALL = parse_policy([])
_TEAM_B_ONLY = parse_policy([{"identities": [UID], "namespaces": ["team-b"]}])


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
            _secret(annotations_={annotations.IDENTITY: ""}, type_="Opaque"),
            Invalid(
                reason_code="BadAnnotation",
                message=f"annotation {annotations.IDENTITY} is empty",
            ),
            id="empty annotation before wrong type",
        ),
        pytest.param(
            _secret(annotations_={annotations.IDENTITY: f"{UID} "}),
            Invalid(
                reason_code="BadAnnotation",
                message=(
                    f"annotation {annotations.IDENTITY} has leading or trailing whitespace; "
                    "remove it"
                ),
            ),
            id="whitespace around the identity",
        ),
        pytest.param(
            _secret(type_="Opaque", raw=b"not json"),
            Invalid(reason_code="WrongType", message=_WRONG_TYPE),
            id="wrong type before malformed config",
        ),
        pytest.param(
            _secret(raw=b"[]"),
            Invalid(
                reason_code="MalformedDockerConfig",
                message=".dockerconfigjson is a list, expected an object",
            ),
            id="malformed config",
        ),
        pytest.param(_secret(raw=None), Fill(identity=UID, reason="empty"), id="no data"),
        pytest.param(_secret(raw=b"{}"), Fill(identity=UID, reason="empty"), id="{}"),
        pytest.param(
            _secret(raw=_config({})), Fill(identity=UID, reason="empty"), id="empty auths"
        ),
        pytest.param(
            _secret(raw=_config({}, credsStore="desktop")),
            Fill(identity=UID, reason="empty"),
            id="no registry entries, other top-level keys",
        ),
        pytest.param(
            _secret(raw=_config({"ghcr.io": {"auth": _auth("u", "p")}})),
            Fill(identity=UID, reason="no entry for registry"),
            id="only another registry",
        ),
        pytest.param(
            _secret(raw=_ours()),
            Fill(identity=UID, reason="entry not written by this controller"),
            id="entry without token-hash",
        ),
        pytest.param(
            _secret(
                raw=_ours(token=_jwt(exp=EXPIRES, iat=ISSUED, sub="x")), annotations_=_status()
            ),
            Fill(identity=UID, reason="entry not written by this controller"),
            id="token replaced by someone else",
        ),
        pytest.param(
            _secret(raw=_ours(key="https://cgr.dev"), annotations_=_status()),
            Fill(identity=UID, reason="entry not written by this controller"),
            id="matching token under an alias key",
        ),
        pytest.param(
            _secret(
                raw=_config({REGISTRY: {"auth": "%%%", "password": TOKEN}}),
                annotations_=_status(),
            ),
            Fill(identity=UID, reason="entry not written by this controller"),
            id="undecodable auth",
        ),
        pytest.param(
            _secret(
                raw=_ours(),
                annotations_={
                    **_status(identity=OTHER_UID),
                    annotations.IDENTITY: UID,
                },
            ),
            Fill(identity=UID, reason="identity changed"),
            id="identity changed",
        ),
        pytest.param(
            _secret(
                raw=_ours(),
                annotations_={
                    annotations.IDENTITY: UID,
                    annotations.TOKEN_HASH: annotations.token_hash(
                        identity=OTHER_UID, registry=REGISTRY, token=TOKEN
                    ),
                },
            ),
            Fill(identity=UID, reason="entry not written by this controller"),
            id="identity changed but previous identity unknown",
        ),
    ],
)
def test_decide(secret: SecretView, expected: Decision) -> None:
    assert _decide(secret) == expected


def test_a_valid_entry_of_ours_waits_until_the_jittered_refresh_time() -> None:
    decision = _decide(_secret(raw=_ours(), annotations_=_status()))
    assert isinstance(decision, Wait)
    assert decision.identity == UID
    assert decision.expires_at == EXPIRES
    assert EARLIEST <= decision.refresh_at <= LATEST


def test_the_refresh_time_does_not_depend_on_when_or_how_often_we_look() -> None:
    secret = _secret(raw=_ours(), annotations_=_status())
    seen = {_decide(secret, now=now) for now in (ISSUED, ISSUED + 1, ISSUED + 600, EARLIEST - 1)}
    assert len(seen) == 1


def test_different_tokens_get_different_refresh_times() -> None:
    times = set()
    for n in range(20):
        token = _jwt(exp=EXPIRES, iat=ISSUED, jti=str(n))
        decision = _decide(_secret(raw=_ours(token=token), annotations_=_status(token=token)))
        assert isinstance(decision, Wait)
        times.add(decision.refresh_at)
    assert len(times) == 20


def test_past_the_refresh_time_it_is_due() -> None:
    secret = _secret(raw=_ours(), annotations_=_status())
    wait = _decide(secret)
    assert isinstance(wait, Wait)
    assert _decide(secret, now=wait.refresh_at) == Fill(identity=UID, reason="due for refresh")
    assert _decide(secret, now=EXPIRES - 1) == Fill(identity=UID, reason="due for refresh")


def test_an_expired_token_of_ours_is_refilled() -> None:
    secret = _secret(raw=_ours(), annotations_=_status())
    assert _decide(secret, now=EXPIRES) == Fill(identity=UID, reason="expired")
    assert _decide(secret, now=EXPIRES + 10) == Fill(identity=UID, reason="expired")


def test_a_token_without_iat_is_timed_from_the_last_refresh() -> None:
    token = _jwt(exp=EXPIRES)
    status = _status(token=token, **{annotations.LAST_REFRESH: annotations.format_time(ISSUED)})
    decision = _decide(_secret(raw=_ours(token=token), annotations_=status))
    assert isinstance(decision, Wait)
    assert EARLIEST <= decision.refresh_at <= LATEST


def test_a_token_whose_start_is_unknown_is_refilled() -> None:
    token = _jwt(exp=EXPIRES)
    decision = _decide(_secret(raw=_ours(token=token), annotations_=_status(token=token)))
    assert decision == Fill(identity=UID, reason="expiry unknown")


def test_a_token_that_is_not_a_jwt_is_timed_from_the_status_annotations() -> None:
    token = "opaque-registry-password"
    status = _status(
        token=token,
        **{
            annotations.LAST_REFRESH: annotations.format_time(ISSUED),
            annotations.EXPIRES_AT: annotations.format_time(EXPIRES),
        },
    )
    decision = _decide(_secret(raw=_ours(token=token), annotations_=status))
    assert isinstance(decision, Wait)
    assert decision.expires_at == EXPIRES
    assert EARLIEST <= decision.refresh_at <= LATEST


def test_a_token_that_is_not_a_jwt_without_status_is_refilled() -> None:
    token = "opaque-registry-password"
    decision = _decide(_secret(raw=_ours(token=token), annotations_=_status(token=token)))
    assert decision == Fill(identity=UID, reason="expiry unknown")


def test_a_short_lived_token_refreshes_half_way_rather_than_at_once() -> None:
    token = _jwt(exp=ISSUED + 120, iat=ISSUED)
    secret = _secret(raw=_ours(token=token), annotations_=_status(token=token))
    assert _decide(secret, now=ISSUED + 1) == Wait(
        identity=UID, refresh_at=ISSUED + 60, expires_at=ISSUED + 120
    )


# --- policy ---------------------------------------------------------------------------------


def test_policy_denial_comes_before_the_config_is_read() -> None:
    decision = _decide(_secret(raw=b"not json"), policy=_TEAM_B_ONLY)
    assert decision == Invalid(
        reason_code="PolicyDenied",
        message=f"identity {UID} may not be used in namespace team-a by the controller's policy",
    )


def test_policy_is_checked_after_the_type() -> None:
    decision = _decide(_secret(type_="Opaque"), policy=_DENY_ALL)
    assert isinstance(decision, Invalid)
    assert decision.reason_code == "WrongType"


def test_an_allowed_identity_proceeds() -> None:
    decision = _decide(_secret(namespace="team-b"), policy=_TEAM_B_ONLY)
    assert decision == Fill(identity=UID, reason="empty")


def test_a_namespace_selector_uses_the_labels_given() -> None:
    policy = parse_policy([{"identities": [UID], "namespaceSelector": {"matchLabels": {"t": "a"}}}])
    assert _decide(_secret(), policy=policy, labels={"t": "a"}) == Fill(
        identity=UID, reason="empty"
    )
    denied = _decide(_secret(), policy=policy, labels=None)
    assert isinstance(denied, Invalid)
    assert denied.reason_code == "PolicyDenied"


def test_no_policy_allows_everything() -> None:
    assert _decide(_secret(namespace="kube-system")) == Fill(identity=UID, reason="empty")


# --- what the controller writes -------------------------------------------------------------


def test_status_annotations() -> None:
    patch = status_annotations(
        identity=UID, expires_at=EXPIRES, refreshed_at=ISSUED, token_hash="ab" * 16
    )
    assert patch == {
        annotations.EXPIRES_AT: "2025-06-15T16:06:40Z",
        annotations.LAST_REFRESH: "2025-06-15T15:06:40Z",
        annotations.TOKEN_HASH: "ab" * 16,
        annotations.FILLED_IDENTITY: UID,
        annotations.LAST_ERROR: None,
    }


def test_error_annotation_sets_only_last_error() -> None:
    assert error_annotation("token service said\nno") == {
        annotations.LAST_ERROR: "token service said no"
    }


def test_a_filled_secret_is_left_to_wait_and_keeps_other_registries() -> None:
    other = {"ghcr.io": {"auth": _auth("me", "pw"), "email": "me@example.com"}}
    secret = _secret(raw=_config(other, credsStore="desktop"))
    first = _decide(secret, now=ISSUED)
    assert first == Fill(identity=UID, reason="no entry for registry")

    # What the controller does with a Fill, using only the core.
    raw = with_token(parse_docker_config(secret.docker_config_raw), registry=REGISTRY, token=TOKEN)
    patch = status_annotations(
        identity=UID,
        expires_at=EXPIRES,
        refreshed_at=ISSUED,
        token_hash=annotations.token_hash(identity=UID, registry=REGISTRY, token=TOKEN),
    )
    merged = {**secret.annotations, **{k: v for k, v in patch.items() if v is not None}}
    filled = replace(secret, docker_config_raw=raw, annotations=merged, resource_version="43")

    second = _decide(filled, now=ISSUED + 1)
    assert isinstance(second, Wait)
    assert second.expires_at == EXPIRES
    written = json.loads(raw)
    assert written["credsStore"] == "desktop"
    assert written["auths"]["ghcr.io"] == other["ghcr.io"]

    # And once the identity is changed by the user, it is filled again.
    changed = replace(filled, annotations={**merged, annotations.IDENTITY: OTHER_UID})
    assert _decide(changed, now=ISSUED + 2) == Fill(identity=OTHER_UID, reason="identity changed")


def test_secret_view_repr_hides_the_data() -> None:
    assert TOKEN not in repr(_secret(raw=_ours()))
