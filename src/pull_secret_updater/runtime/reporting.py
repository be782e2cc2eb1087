"""What the controller tells the user about a Secret: status annotations, Events, gauges.

A failure is reported where the user looks: a Warning Event once per new cause (not once per
retry), the `last-error` annotation while it lasts, a log line at each attempt. The
credential in the Secret is never touched here: a failed refresh leaves a valid credential in
place until it expires. Status is written only by the leader; a write that conflicts is
dropped, since the watch brings the newer version, which is decided anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import structlog
from lightkube import AsyncClient

from pull_secret_updater.core import annotations as ann
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.core.status import error_annotation
from pull_secret_updater.kube.errors import Conflict, KubeError
from pull_secret_updater.kube.events import EventRecorder
from pull_secret_updater.kube.secrets import SecretObject, write_secret
from pull_secret_updater.runtime.failures import Failures
from pull_secret_updater.runtime.metrics import Metrics
from pull_secret_updater.runtime.outcome import DONE, Outcome
from pull_secret_updater.runtime.store import SecretStore

log = structlog.get_logger("pull_secret_updater.controller")


@dataclass(kw_only=True)
class Reporter:
    """Reports on Secrets of `store`; writes only while `is_leader()`."""

    client: AsyncClient
    store: SecretStore
    events: EventRecorder
    failures: Failures
    metrics: Metrics
    is_leader: Callable[[], bool]
    clock: Callable[[], float] = time.time

    async def failed(
        self,
        secret: SecretObject,
        *,
        reason: Reason,
        message: str,
        retry: bool = True,
        retryable: bool = True,
        retry_after: float | None = None,
        before: float | None = None,
        awaits: Hashable | None = None,
    ) -> Outcome:
        """Warning Event and ``last-error`` when the cause is new; retry later if ``retry``.

        ``before``: the expiry of the credential in place, which the retries must come before;
        ``awaits``: what would end the failure (see `Failures.ready`).
        """
        key = (secret.namespace, secret.name)
        if key not in self.store:
            return DONE  # deleted while we were at it: nothing to report on, nothing to retry
        recorded = self.failures.record(
            key,
            message=message,
            retryable=retryable,
            retry_after=retry_after,
            expires_in=None if before is None else before - self.clock(),
            awaits=awaits,
        )
        log.warning("Secret not filled", namespace=key[0], name=key[1], reason=str(reason),
                    error=message, attempt=recorded.attempts)  # fmt: skip
        if self.is_leader():
            wanted = error_annotation(message)
            if secret.annotations.get(ann.LAST_ERROR) != wanted[ann.LAST_ERROR]:
                await self.write_status(secret, wanted)
            if recorded.new:
                await self.events.emit(
                    secret=secret, type="Warning", reason=str(reason), message=message
                )
                self.failures.mark_reported(key, message=message)
        return Outcome(recorded.delay) if retry else DONE

    async def write_status(self, secret: SecretObject, patch: dict[str, str | None]) -> None:
        """Write annotations only (never the data); dropped on conflict."""
        if not patch or not self.is_leader():
            return
        key = (secret.namespace, secret.name)
        try:
            self.store.keep(
                await write_secret(self.client, secret, docker_config=None, annotations=patch)
            )
        except Conflict:
            pass  # changed meanwhile: the watch brings the newer version, to be decided anew
        except KubeError as e:
            log.info("could not update the status annotations", namespace=key[0],
                     name=key[1], error=str(e))  # fmt: skip

    def filled(self, written: SecretObject, *, reason: Reason, message: str) -> None:
        """A Normal Event for a fill or refresh, sent in the background."""
        self.events.emit_soon(secret=written, type="Normal", reason=str(reason), message=message)

    def update_gauges(self) -> None:
        self.metrics.managed_secrets.set(self.store.managed)
        self.metrics.failing_secrets.set(len(self.failures))
        self.metrics.events_waiting.set(self.events.waiting)
        earliest = self.store.earliest_expiry()
        if earliest is not None:
            self.metrics.earliest_expiry.set(earliest - self.clock())
