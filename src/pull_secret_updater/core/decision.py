"""What to do with one managed Secret, decided from its current state alone.

The decision is pure: a function of the Secret, the verdict on the token it holds, the clock
and the settings. So the reconcile step stays trivial (look, act on the answer), and a
restart, a relist or a duplicate event changes nothing: the same Secret at the same time gets
the same answer.

It is taken in two steps, because trusting the token in a Secret needs the token service's
keys, which only the token layer can fetch:

1. `inspect` reads the Secret: is it ours at all (`Ignore`), is the request well-formed and
   allowed (`Invalid` otherwise), and if so which identity it asks for and what credential
   it holds now (`Request`);
2. the caller verifies that credential (signature, issuer, audience: `tokens.verification`)
   and hands the verdict to `decide`, which says `Fill` (obtain a token and write it now) or
   `Wait` (look again at `refresh_at`).

NB: nothing a Secret's writer can compute makes a token trusted. Only a verified token is
ever used to schedule a refresh or shared with other Secrets; anything else is replaced.
"""

# NB: no `from __future__ import annotations`: it would shadow the module of that name.

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pull_secret_updater.core import annotations
from pull_secret_updater.core.claims import VerifiedToken
from pull_secret_updater.core.dockerconfig import DockerConfig, parse_docker_config
from pull_secret_updater.core.errors import BadInput, Reason
from pull_secret_updater.core.policy import Policy
from pull_secret_updater.core.schedule import Schedule

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"

FillReason = Literal[
    "empty",
    "no entry for registry",
    "token not trusted",
    "identity changed",
    "expired",
    "due for refresh",
]

_EVENT_REASON: dict[FillReason, str] = {
    "empty": "Filled",
    "no entry for registry": "Filled",
    "token not trusted": "Filled",
    "identity changed": "Filled",
    "expired": "Refreshed",
    "due for refresh": "Refreshed",
}


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
class Request:
    """A well-formed, allowed Secret: it wants tokens of `identity`.

    `config` is its parsed `.dockerconfigjson`; `current` the token in the registry's entry,
    if there is one (not yet trusted: verify it, then call `decide`).
    """

    namespace: str
    identity: str
    config: DockerConfig = field(repr=False)
    current: str | None = field(repr=False)
    written_at: float | None
    filled_identity: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Untrusted:
    """The verdict on a token that failed verification; `why` never quotes it."""

    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """Obtain a token for `identity` and write it into `config` now.

    `stale` is the token being replaced when it is a verified token of this identity: a token
    cache must not hand that one back. `stale_expires_at` is its verified expiry while it is
    still valid (a refresh, not a replacement of an expired token): retries of a failed
    refresh must come before it (`core.backoff`).
    """

    identity: str
    reason: FillReason
    config: DockerConfig = field(repr=False)
    stale: str | None = field(default=None, repr=False)
    stale_expires_at: float | None = None
    detail: str | None = None

    @property
    def event_reason(self) -> str:
        """The Event reason for a successful fill: `Filled` or `Refreshed`."""
        return _EVENT_REASON[self.reason]

    @property
    def why(self) -> str:
        """The reason in words, for Events and logs."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """The Secret holds a verified token of its identity; look again at `refresh_at`."""

    identity: str
    token: VerifiedToken
    refresh_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Invalid:
    """The Secret asks for something the controller cannot do; report it, do not retry."""

    reason_code: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Ignore:
    """The Secret has no identity annotation: it is not ours to fill."""


Decision = Fill | Wait | Invalid | Ignore
Verdict = VerifiedToken | Untrusted


def inspect(
    secret: SecretView,
    *,
    registry: str,
    policy: Policy,
    namespace_labels: Mapping[str, str] | None,
) -> Request | Invalid | Ignore:
    """Whether `secret` is ours, valid and allowed, and if so what it asks for.

    `namespace_labels` None means unknown (read them only when `policy.needs_labels`).
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
    if not policy.allows(
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
    return Request(
        namespace=secret.namespace,
        identity=identity,
        config=config,
        current=entry.password if entry is not None and entry.key == registry else None,
        written_at=annotations.parse_time(secret.annotations.get(annotations.LAST_REFRESH)),
        filled_identity=secret.annotations.get(annotations.FILLED_IDENTITY),
    )


def decide(
    request: Request, *, verdict: Verdict | None, now: float, schedule: Schedule
) -> Fill | Wait:
    """Fill now or wait, given the verdict on `request.current` (None when there is none)."""
    if verdict is None:
        return Fill(
            identity=request.identity,
            reason="no entry for registry" if request.config.registries else "empty",
            config=request.config,
        )
    if isinstance(verdict, Untrusted):
        return Fill(
            identity=request.identity,
            reason="token not trusted",
            config=request.config,
            detail=verdict.why,
        )
    if verdict.identity != request.identity:
        if verdict.identity == request.filled_identity:
            # It was filled for the identity the annotation named before: the user changed it.
            return Fill(identity=request.identity, reason="identity changed", config=request.config)
        return Fill(
            identity=request.identity,
            reason="token not trusted",
            config=request.config,
            detail="it was issued for another identity",
        )
    if now >= verdict.expires_at:
        return Fill(
            identity=request.identity, reason="expired", config=request.config, stale=verdict.token
        )
    when = schedule.refresh_at(
        token=verdict.token,
        issued_at=verdict.issued_at,
        expires_at=verdict.expires_at,
        written_at=request.written_at,
        now=now,
    )
    if now >= when:
        return Fill(
            identity=request.identity,
            reason="due for refresh",
            config=request.config,
            stale=verdict.token,
            stale_expires_at=verdict.expires_at,
        )
    return Wait(identity=request.identity, token=verdict, refresh_at=when)


def status_annotations(
    *, identity: str, expires_at: float, refreshed_at: float
) -> dict[str, str | None]:
    """The annotation patch after a successful write (None removes an annotation)."""
    return {
        annotations.EXPIRES_AT: annotations.format_time(expires_at),
        annotations.LAST_REFRESH: annotations.format_time(refreshed_at),
        annotations.FILLED_IDENTITY: identity,
        annotations.LAST_ERROR: None,
        annotations.TOKEN_HASH: None,  # written by earlier versions; proves nothing
    }


def error_annotation(message: str) -> dict[str, str | None]:
    """The annotation patch after a failure; the credential annotations are left as they are."""
    return {annotations.LAST_ERROR: annotations.truncate_error(message)}


def cleared_status(present: Mapping[str, str]) -> dict[str, str | None]:
    """The patch removing the controller's status annotations that `present` has."""
    return {key: None for key in annotations.STATUS if key in present}
