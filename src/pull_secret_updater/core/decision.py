"""What to do with one managed Secret, decided from its current state alone.

The decision is a pure function of the Secret, the clock and the settings, so the reconcile
loop stays trivial (look at the Secret, act on the answer) and a restart, a relist or a
duplicate event changes nothing: the same Secret at the same time gets the same answer. In
particular the refresh time is jittered with a random source seeded from the token itself,
so every replica and every restart computes the same moment for the same token.

The checks run from the cheapest and most fundamental to the most specific: is the Secret
ours at all, is the request well-formed, is it allowed, can its content be merged into, and
only then is the credential in it still good.
"""

# NB: no `from __future__ import annotations`: it would shadow the module of that name.

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pull_secret_updater.core import annotations
from pull_secret_updater.core.claims import InvalidToken, read_claims
from pull_secret_updater.core.dockerconfig import RegistryEntry, parse_docker_config
from pull_secret_updater.core.errors import BadInput, Reason
from pull_secret_updater.core.policy import Policy
from pull_secret_updater.core.timing import Schedule, refresh_at

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"

FillReason = Literal[
    "empty",
    "no entry for registry",
    "entry not written by this controller",
    "identity changed",
    "expiry unknown",
    "expired",
    "due for refresh",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretView:
    """What the decision needs to know about a Secret; `docker_config_raw` is base64-decoded."""

    namespace: str
    name: str
    type: str
    annotations: Mapping[str, str]
    docker_config_raw: bytes | None = field(repr=False)
    resource_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """Obtain a token for `identity` and write it now."""

    identity: str
    reason: FillReason


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """The entry is ours and valid; look again at `refresh_at` (epoch seconds)."""

    identity: str
    refresh_at: float
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Invalid:
    """The Secret asks for something the controller cannot do; report it, do not retry."""

    reason_code: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Ignore:
    """The Secret has no identity annotation: it is not ours to fill."""


Decision = Fill | Wait | Invalid | Ignore


def decide(
    secret: SecretView,
    *,
    now: float,
    registry: str,
    policy: Policy | None,
    namespace_labels: Mapping[str, str] | None,
    schedule: Schedule,
) -> Decision:
    """The decision for `secret` at time `now`, for the registry entry named `registry`.

    `policy` None allows every identity everywhere; `namespace_labels` None means unknown
    (read them only when `policy.needs_labels`).
    """
    if annotations.IDENTITY not in secret.annotations:
        return Ignore()
    try:
        identity = annotations.validate_identity(secret.annotations[annotations.IDENTITY])
    except BadInput as e:
        return Invalid(reason_code=e.reason, message=e.message)
    if secret.type != DOCKER_CONFIG_JSON:
        return Invalid(
            reason_code="WrongType",
            message=(
                f"Secret type is {secret.type[:100]}; only {DOCKER_CONFIG_JSON} Secrets can be "
                "filled, and type is immutable: recreate the Secret with that type"
            ),
        )
    if policy is not None and not policy.allows(
        identity=identity, namespace=secret.namespace, namespace_labels=namespace_labels
    ):
        return Invalid(
            reason_code="PolicyDenied",
            message=(
                f"identity {identity} may not be used in namespace {secret.namespace} "
                "by the controller's policy"
            ),
        )
    try:
        config = parse_docker_config(secret.docker_config_raw)
    except BadInput as e:
        return Invalid(reason_code=e.reason, message=e.message)

    entry = config.entry(registry)
    if entry is None:
        return Fill(
            identity=identity,
            reason="no entry for registry" if config.registries else "empty",
        )
    ownership = _ownership(entry, identity=identity, registry=registry, secret=secret)
    if ownership is not None:
        return Fill(identity=identity, reason=ownership)
    assert entry.password is not None  # a matching hash needs a token

    expires_at, issued_at = _validity(entry.password, status=secret.annotations)
    if expires_at is None or issued_at is None:
        return Fill(identity=identity, reason="expiry unknown")
    if now >= expires_at:
        return Fill(identity=identity, reason="expired")
    stored_hash = secret.annotations[annotations.TOKEN_HASH]
    when = refresh_at(
        issued_at=issued_at,
        expires_at=expires_at,
        fraction=schedule.fraction,
        jitter=schedule.jitter,
        margin=schedule.margin,
        # Seeded from the token, so the jitter is stable across restarts and replicas, and
        # the Secrets sharing a token come due together and share one exchange (the spread
        # between identities comes from their tokens). Not used for anything secret.
        rng=random.Random(int(stored_hash, 16)),  # noqa: S311
    )
    if now >= when:
        return Fill(identity=identity, reason="due for refresh")
    return Wait(identity=identity, refresh_at=when, expires_at=expires_at)


def status_annotations(
    *, identity: str, expires_at: float, refreshed_at: float, token_hash: str
) -> dict[str, str | None]:
    """The annotation patch after a successful write (None removes `last-error`)."""
    return {
        annotations.EXPIRES_AT: annotations.format_time(expires_at),
        annotations.LAST_REFRESH: annotations.format_time(refreshed_at),
        annotations.TOKEN_HASH: token_hash,
        annotations.FILLED_IDENTITY: identity,
        annotations.LAST_ERROR: None,
    }


def error_annotation(message: str) -> dict[str, str | None]:
    """The annotation patch after a failure; the credential annotations are left as they are."""
    return {annotations.LAST_ERROR: annotations.truncate_error(message)}


def _ownership(
    entry: RegistryEntry, *, identity: str, registry: str, secret: SecretView
) -> FillReason | None:
    # None when the entry is the one this controller wrote for this identity.
    stored = secret.annotations.get(annotations.TOKEN_HASH)
    if stored is None or entry.password is None or entry.key != registry:
        return "entry not written by this controller"
    if stored == annotations.token_hash(identity=identity, registry=registry, token=entry.password):
        return None
    previous = secret.annotations.get(annotations.FILLED_IDENTITY)
    if (
        previous is not None
        and previous != identity
        and stored
        == annotations.token_hash(identity=previous, registry=registry, token=entry.password)
    ):
        return "identity changed"
    return "entry not written by this controller"


def _validity(token: str, *, status: Mapping[str, str]) -> tuple[float | None, float | None]:
    # (expires_at, issued_at) from the token's claims when it is a JWT; otherwise (tokens of
    # other registries need not be JWTs) from the status the controller wrote with it.
    obtained_at = annotations.parse_time(status.get(annotations.LAST_REFRESH))
    try:
        claims = read_claims(token)
    except InvalidToken:
        return annotations.parse_time(status.get(annotations.EXPIRES_AT)), obtained_at
    return claims.exp, claims.iat if claims.iat is not None else obtained_at
