"""One reconcile of one Secret: look at it, do what the pure core decides, say when to look again.

The step, for a Secret the watch stored:

1. `core.decision.inspect` says whether it is ours and fit to be filled, and what each
   provider is asked for (a Secret may ask several);
2. each part's credential is looked at: verified by its provider, or recognised as one this
   process obtained (`TokenCache.known`); `core.decision.decide` says fill or wait;
3. the parts to fill get a credential from the cache (one exchange per identity per window),
   concurrently, and every credential obtained is written in one optimistic-concurrency write;
   a part whose exchange failed is reported, and does not hold up the others;
4. status: `expires-at` from the credentials trusted (never from what the Secret said), a
   Normal Event per part filled, the problems of the others in `last-error` and one Warning
   Event per new cause.

Every exit says why it is safe. NB: the controller's own write comes back as a watch event.
The object the write returned is stored, so that event carries a resourceVersion already in
the store and is dropped; if it does get reconciled, every part holds a trusted credential of
its own, the decision is `Wait`, and no write and no exchange follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from lightkube import AsyncClient

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.decision import (
    Fill,
    Ignore,
    Invalid,
    Part,
    Problem,
    Request,
    SecretView,
    Verdict,
    Wait,
    along_with,
    decide,
    inspect,
)
from pull_secret_updater.core.policy import Policy
from pull_secret_updater.core.providers import ProviderSpec
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.core.status import cleared_status, expiry_drift, problems_message
from pull_secret_updater.kube.errors import KubeError
from pull_secret_updater.kube.namespaces import NamespaceLabels
from pull_secret_updater.kube.secrets import SecretObject
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.filling import Filler, PartFailure, earliest_expiry
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.outcome import DONE, Key, Outcome
from pull_secret_updater.runtime.reporting import Reporter
from pull_secret_updater.runtime.store import SecretStore
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.errors import ExchangeError
from pull_secret_updater.tokens.provider import Subject, TokenProvider
from pull_secret_updater.tokens.trust import look_at

log = structlog.get_logger("pull_secret_updater.controller")


@dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    """What the controller manages and by which rules (built from settings by `wiring`).

    secret_names: the managed Secret names, each followed in every namespace.
    schedule: when a credential is refreshed.
    policy: which identities of which provider each namespace may use.
    subject_for: the ServiceAccount whose token is exchanged for a Secret in a namespace.
    """

    secret_names: tuple[str, ...]
    schedule: Schedule
    policy: Policy
    subject_for: Callable[[str], Subject]


@dataclass(kw_only=True)
class Reconciler:
    """Reconciles one Secret at a time (see the module docstring).

    `may_write` says whether this replica may write now; `not_writing` what a reconcile that
    may not concludes (the loop's leadership business).
    """

    config: ControllerConfig
    client: AsyncClient
    store: SecretStore
    tokens: TokenCache
    providers: Mapping[str, TokenProvider]
    reporter: Reporter
    failures: Failures
    metrics: Metrics
    may_write: Callable[[], bool]
    not_writing: Callable[[], Outcome]
    wake: Callable[[Key], None]
    labels: NamespaceLabels | None = None
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._specs: tuple[ProviderSpec, ...] = tuple(p.spec for p in self.providers.values())
        self._filler = Filler(
            client=self.client,
            store=self.store,
            tokens=self.tokens,
            specs=self._specs,
            schedule=self.config.schedule,
            reporter=self.reporter,
            failures=self.failures,
            metrics=self.metrics,
            may_write=self.may_write,
            not_writing=self.not_writing,
            wake=self.wake,
            drop=self.drop,
            clock=self.clock,
        )

    async def reconcile(self, key: Key) -> Outcome:
        """Look at the Secret `key` once and act on what the core decides."""
        secret = self.store.get(key)
        if secret is None or secret.deleting:
            self.drop(key)
            return DONE
        labels = None
        if self.config.policy.needs_labels and self.labels is not None:
            try:
                labels = await self.labels.get(secret.namespace)
            except KubeError as e:
                self.store.manage(key, expires_at=None)
                return await self.reporter.failed(
                    secret,
                    reason=Reason.POLICY_UNAVAILABLE,
                    message=f"cannot apply the identity policy: {e} (the policy selects "
                    "namespaces by label, so the controller needs get on namespaces)",
                )
        found = inspect(
            _view(secret),
            providers=self._specs,
            policy=self.config.policy,
            namespace_labels=labels,
        )
        if isinstance(found, Ignore):
            self.failures.clear(key)
            self.store.unmanage(key)
            await self.reporter.write_status(
                secret, cleared_status(secret.annotations, providers=self._specs)
            )
            return DONE
        if isinstance(found, Invalid):
            # Stays until the Secret is edited, which the watch reports: no retry.
            self.store.manage(key, expires_at=None)
            return await self.reporter.failed(
                secret, reason=found.reason_code, message=found.message, retry=False,
                retryable=False,
            )  # fmt: skip
        return await self._request(secret, found)

    def drop(self, key: Key) -> None:
        self.store.drop(key)
        self.failures.clear(key)

    async def _request(self, secret: SecretObject, request: Request) -> Outcome:
        key = (secret.namespace, secret.name)
        subject = self.config.subject_for(secret.namespace)
        now = self.clock()
        failed = [PartFailure(problem=p, retryable=False) for p in request.problems]
        waits: list[Wait] = []
        fills: list[Fill] = []
        for part in request.parts:
            try:
                verdict = await self._verdict(part, subject=subject)
            except ExchangeError as e:
                failed.append(
                    PartFailure(
                        problem=Problem(
                            provider=part.provider,
                            reason=Reason.VERIFICATION_UNAVAILABLE,
                            message=f"cannot verify the token in the Secret: {e}",
                        ),
                        retryable=e.retryable,
                    )
                )
                continue
            decision = decide(
                part,
                verdict=verdict,
                now=now,
                schedule=self.config.schedule,
                written_at=request.written_at,
            )
            if isinstance(decision, Wait):
                waits.append(decision)
                self.tokens.offer(subject=subject, want=decision.want, token=decision.token)
            else:
                fills.append(decision)
        # The Secret is written anyway: its other parts that a newer credential is at hand for,
        # or that come due soon, are refreshed in the same write rather than each in a write
        # of its own later (`along_with`). Should one of those fail, it keeps what it holds.
        early: dict[int, Wait] = {}
        if fills:
            for wait in list(waits):
                newer = self.tokens.newer(subject=subject, want=wait.want, than=wait.token)
                fill = along_with(wait, newer=newer, now=now, schedule=self.config.schedule)
                if fill is not None:
                    waits.remove(wait)
                    fills.append(fill)
                    early[id(fill)] = wait
        trusted = [w.token for w in waits]
        if fills and not self.may_write():
            held = [*trusted, *(w.token for w in early.values())]
            self.store.manage(key, expires_at=earliest_expiry(held))
            return self.not_writing()
        outcome = DONE
        for wait in waits:
            outcome = outcome.sooner(Outcome(wait.refresh_at - now))
        if fills:
            obtained, exchange_failures = await self._filler.obtain(
                fills, subject=subject, namespace=secret.namespace
            )
            for failure in exchange_failures:
                kept = early.get(id(failure.fill))
                if kept is None:
                    failed.append(failure)
                    continue
                waits.append(kept)
                trusted.append(kept.token)
                outcome = outcome.sooner(Outcome(kept.refresh_at - now))
            if obtained:
                written = await self._filler.write(
                    secret, request, obtained, trusted=trusted, clear_error=not failed
                )
                if isinstance(written, Outcome):
                    return written  # the write did not happen; it said when to look again
                secret = written
                next_look, due = self._filler.filled(written, obtained, subject=subject)
                outcome = outcome.sooner(next_look)
                failed += due
                trusted += [credential for _, credential in obtained]
        self.store.manage(key, expires_at=earliest_expiry(trusted))
        if failed:
            return outcome.sooner(await self._report(secret, request, failed))
        # Nothing failed: whatever failure was recorded is over, and the status says so. An
        # `expires-at` someone edited is put right then too, not with a write of its own: it
        # is never read, and a tenant must not be able to make the controller write at will.
        self.failures.clear(key)
        if ann.LAST_ERROR in secret.annotations:
            patch = expiry_drift(secret.annotations, expires_at=earliest_expiry(trusted))
            await self.reporter.write_status(secret, {**patch, ann.LAST_ERROR: None})
        return outcome

    async def _verdict(self, part: Part, *, subject: Subject) -> Verdict | None:
        if part.current is None:
            return None
        return await look_at(
            part.current,
            want=part.want,
            subject=subject,
            provider=self.providers[part.provider],
            cache=self.tokens,
        )

    async def _report(
        self, secret: SecretObject, request: Request, failed: Sequence[PartFailure]
    ) -> Outcome:
        """One report for the parts that failed; retried as the most urgent of them asks."""
        several = len(request.parts) + len(request.problems) > 1
        problems = [f.problem for f in failed]
        message = problems_message(problems)
        if several and len(problems) == 1:
            message = f"{problems[0].provider}: {message}"
        # Bad annotations stay until the Secret is edited (the watch says when); a denial that
        # depends on namespace labels can end without the Secret changing, and the rest are
        # failures that time may mend.
        timed = [f for f in failed if f.problem.reason != Reason.BAD_ANNOTATION]
        relabel = self.config.policy.needs_labels
        timed = [f for f in timed if f.problem.reason != Reason.POLICY_DENIED or relabel]
        befores = [f.before for f in timed if f.before is not None]
        return await self.reporter.failed(
            secret,
            reason=problems[0].reason,
            message=message,
            retry=bool(timed),
            retryable=any(f.retryable for f in timed),
            retry_after=max((f.retry_after for f in timed if f.retry_after), default=None),
            before=min(befores, default=None),
            awaits=next((f.awaits for f in timed if f.awaits is not None), None),
        )


def _view(secret: SecretObject) -> SecretView:
    return SecretView(
        namespace=secret.namespace,
        name=secret.name,
        type=secret.type,
        annotations=secret.annotations,
        docker_config_raw=secret.docker_config,
        resource_version=secret.resource_version,
    )
