"""What to do with one managed Secret, decided from its current state alone.

The decision is pure: a function of the Secret, the verdicts on the credentials it holds, the
clock and the settings. So the reconcile step stays trivial (look, act on the answer), and a
restart, a relist or a duplicate event changes nothing: the same Secret at the same time gets
the same answer.

One Secret may ask several registry providers for credentials (a cgr.dev entry and an ECR
entry, say). Each provider's part is decided on its own: a bad annotation or a policy denial
for one provider is a `Problem` of that provider, and the others' entries are still filled.
What spoils the whole Secret (the wrong type, a `.dockerconfigjson` that does not parse) is
`Invalid`.

It is taken in two steps, because trusting a credential in a Secret needs its provider (a
token service's keys, or the credentials this process obtained), which only the token layer
has:

1. `inspect` reads the Secret: is it ours at all (`Ignore`), is it fit to be filled
   (`Invalid` otherwise), and if so what each provider is asked for and what credential its
   entry holds now (`Request`, one `Part` per provider);
2. the caller looks at each part's credential (a `Credential` when trusted, `Untrusted`
   otherwise) and hands the verdict to `decide`, which says `Fill` (obtain a credential and
   write it now) or `Wait` (look again at `refresh_at`).

NB: nothing a Secret's writer can compute makes a credential trusted. Only a verified or
self-obtained credential is used to schedule a refresh or shared with other Secrets; anything
else is replaced.

NB: a little over our usual module size because the sum type (`Request`, `Part`, `Fill`,
`Wait`, `Invalid`, `Ignore`) and the two functions that produce it are one piece: a reader
checking that every case of `inspect` and `decide` is handled needs both in view. What the
controller writes afterwards is `status`.
"""

# NB: no `from __future__ import annotations`: it would shadow the module of that name.

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pull_secret_updater.core import annotations
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.dockerconfig import DockerConfig, parse_docker_config
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.policy import Policy
from pull_secret_updater.core.providers import ProviderSpec, Want, filled_identity_key
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.core.schedule import Schedule

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"

FillReason = Literal[
    "empty",
    "no entry for registry",
    "token not trusted",
    "identity changed",
    "expired",
    "due for refresh",
    "newer token at hand",
    "due soon",
]

_EVENT_REASON: dict[FillReason, Reason] = {
    "empty": Reason.FILLED,
    "no entry for registry": Reason.FILLED,
    "token not trusted": Reason.FILLED,
    "identity changed": Reason.FILLED,
    "expired": Reason.REFRESHED,
    "due for refresh": Reason.REFRESHED,
    "newer token at hand": Reason.REFRESHED,
    "due soon": Reason.REFRESHED,
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
class Part:
    """One provider's part of a Secret: it wants `want`.

    `current` is the password its entry holds, when every registry of the want has an entry
    with the provider's user name and that same password (not yet trusted: look at it, then
    call `decide`); `filled_identity` what the controller last filled it for.
    """

    want: Want
    current: str | None = field(repr=False)
    filled_identity: str | None = None
    #: Whether the Secret had no registry entry at all (for the reason given when filling).
    empty: bool = False

    @property
    def provider(self) -> str:
        return self.want.provider

    @property
    def identity(self) -> str:
        return self.want.identity


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One provider's part cannot be filled: bad input, or the policy says no."""

    provider: str
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A Secret fit to be filled: its parts, and the problems of the parts that are not.

    `config` is its parsed `.dockerconfigjson`.
    """

    namespace: str
    config: DockerConfig = field(repr=False)
    parts: tuple[Part, ...]
    problems: tuple[Problem, ...] = ()
    written_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Untrusted:
    """The verdict on a credential that is not trusted; `why` never quotes it."""

    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """Obtain a credential for `want` and write it now.

    `stale` is the credential being replaced when it is a trusted one of this want: a cache
    must not hand that one back. `stale_expires_at` is its trusted expiry while it is still
    valid (a refresh, not a replacement of an expired credential): retries of a failed
    refresh must come before it (`core.backoff`).
    """

    want: Want
    reason: FillReason
    stale: str | None = field(default=None, repr=False)
    stale_expires_at: float | None = None
    detail: str | None = None

    @property
    def identity(self) -> str:
        return self.want.identity

    @property
    def event_reason(self) -> Reason:
        """The Event reason for a successful fill: `Filled` or `Refreshed`."""
        return _EVENT_REASON[self.reason]

    @property
    def why(self) -> str:
        """The reason in words, for Events and logs."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """The part holds a trusted credential of its want; look again at `refresh_at`."""

    want: Want
    token: Credential
    refresh_at: float

    @property
    def identity(self) -> str:
        return self.want.identity


def along_with(
    wait: Wait, *, newer: Credential | None, now: float, schedule: Schedule
) -> Fill | None:
    """A part that holds a trusted credential, refreshed anyway because the Secret is being
    written for its other parts: the write costs nothing more, and saves the part a write of
    its own later.

    It is, when `newer` (a credential of the same want and subject that the caller holds,
    obtained for another Secret, not due) is another one that expires later ("newer token at
    hand"); or when the part comes due within the schedule's jitter share of its lifetime
    ("due soon": a refresh that early is one the jitter could have chosen). Else None.
    """
    held = wait.token
    if (
        newer is not None
        and newer.provider == wait.want.provider
        and newer.token != held.token
        and newer.expires_at > held.expires_at
    ):
        reason: FillReason = "newer token at hand"
    elif wait.refresh_at - now <= schedule.jitter * (held.expires_at - held.issued_at):
        reason = "due soon"
    else:
        return None
    return Fill(want=wait.want, reason=reason, stale=held.token, stale_expires_at=held.expires_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class Invalid:
    """The Secret as a whole cannot be filled; report it, do not retry."""

    reason_code: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Ignore:
    """No provider's annotation is on the Secret: it is not ours to fill."""


Decision = Fill | Wait
Verdict = Credential | Untrusted


def inspect(
    secret: SecretView,
    *,
    providers: Sequence[ProviderSpec],
    policy: Policy,
    namespace_labels: Mapping[str, str] | None,
) -> Request | Invalid | Ignore:
    """Whether `secret` is ours and fit to be filled, and if so what each provider is asked.

    `namespace_labels` None means unknown (read them only when `policy.needs_labels`).
    """
    wants: list[tuple[ProviderSpec, Want]] = []
    problems: list[Problem] = []
    for spec in providers:
        try:
            want = spec.wants(secret.annotations)
        except BadInput as e:
            problems.append(Problem(provider=spec.name, reason=e.reason, message=e.message))
            continue
        if want is not None:
            wants.append((spec, want))
    if not wants and not problems:
        return Ignore()
    if secret.type != DOCKER_CONFIG_JSON:
        return Invalid(
            reason_code=Reason.WRONG_TYPE,
            message=(
                f"Secret type is {secret.type[:100]}; only {DOCKER_CONFIG_JSON} Secrets can be "
                "filled, and type is immutable: recreate the Secret with that type"
            ),
        )
    try:
        config = parse_docker_config(secret.docker_config_raw)
    except BadInput as e:
        return Invalid(reason_code=e.reason, message=e.message)
    parts: list[Part] = []
    taken: dict[str, str] = {}
    for spec, want in wants:
        problem = _problem(
            want, taken=taken, policy=policy, secret=secret, namespace_labels=namespace_labels
        )
        if problem is not None:
            problems.append(problem)
            continue
        taken.update(dict.fromkeys((host.lower() for host in want.registries), want.provider))
        parts.append(
            Part(
                want=want,
                current=_current(config, want, username=spec.username),
                filled_identity=secret.annotations.get(filled_identity_key(spec)),
                empty=not config.registries,
            )
        )
    return Request(
        namespace=secret.namespace,
        config=config,
        parts=tuple(parts),
        problems=tuple(problems),
        written_at=annotations.parse_time(secret.annotations.get(annotations.LAST_REFRESH)),
    )


def decide(
    part: Part,
    *,
    verdict: Verdict | None,
    now: float,
    schedule: Schedule,
    written_at: float | None = None,
) -> Fill | Wait:
    """Fill now or wait, given the verdict on `part.current` (None when there is none)."""
    want = part.want
    if verdict is None:
        return Fill(want=want, reason="empty" if part.empty else "no entry for registry")
    if isinstance(verdict, Untrusted):
        return Fill(want=want, reason="token not trusted", detail=verdict.why)
    if verdict.identity != want.identity or verdict.provider != want.provider:
        if verdict.identity == part.filled_identity and verdict.provider == want.provider:
            # It was filled for the identity the annotation named before: the user changed it.
            return Fill(want=want, reason="identity changed")
        return Fill(
            want=want, reason="token not trusted", detail="it was issued for another identity"
        )
    if now >= verdict.expires_at:
        return Fill(want=want, reason="expired", stale=verdict.token)
    when = schedule.refresh_at(
        token=verdict.token,
        issued_at=verdict.issued_at,
        expires_at=verdict.expires_at,
        written_at=written_at,
        now=now,
    )
    if now >= when:
        return Fill(
            want=want,
            reason="due for refresh",
            stale=verdict.token,
            stale_expires_at=verdict.expires_at,
        )
    return Wait(want=want, token=verdict, refresh_at=when)


def _problem(
    want: Want,
    *,
    taken: Mapping[str, str],
    policy: Policy,
    secret: SecretView,
    namespace_labels: Mapping[str, str] | None,
) -> Problem | None:
    for host in want.registries:
        other = taken.get(host.lower())
        if other is not None:
            return Problem(
                provider=want.provider,
                reason=Reason.BAD_ANNOTATION,
                message=(
                    f"provider {want.provider} would write the entry for {host}, which "
                    f"provider {other} writes already: one registry entry has one owner"
                ),
            )
    if not policy.allows(
        provider=want.provider,
        identity=want.identity,
        namespace=secret.namespace,
        namespace_labels=namespace_labels,
    ):
        return Problem(
            provider=want.provider,
            reason=Reason.POLICY_DENIED,
            message=(
                f"{want.provider} identity {want.identity} may not be used in namespace "
                f"{secret.namespace} by the controller's policy"
            ),
        )
    return None


def _current(config: DockerConfig, want: Want, *, username: str) -> str | None:
    """The password every registry's entry of `want` holds with `username`, or None."""
    found: str | None = None
    for host in want.registries:
        entry = config.entry(host)
        if entry is None or entry.key != host or entry.password is None:
            return None
        if entry.username != username:
            return None
        if found is None:
            found = entry.password
        elif entry.password != found:
            return None
    return found
