"""Prometheus metrics. Labels carry providers, outcomes and causes: a closed set each.

No label holds anything a tenant writes (an identity, a namespace, a Secret's name): label
values a tenant can choose would let one tenant grow the series, the controller's memory and
every scrape without bound, and would show one team's identities to anyone who can scrape.
Per-Secret detail is in the Secret's own status annotations and Events. Never a token or
Secret data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import ProviderSpec, Want
from pull_secret_updater.tokens.errors import (
    ExchangeError,
    MalformedResponse,
    RejectedExchangeError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.provider import Subject, TokenProvider

_PREFIX = "pull_secret_updater"

log = structlog.get_logger("pull_secret_updater.tokens")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.exchanges = Counter(
            f"{_PREFIX}_exchanges",
            "Token exchanges, by registry provider and outcome "
            "(success, transient, rejected, malformed, error).",
            ["provider", "outcome"],
            registry=r,
        )
        self.exchange_seconds = Histogram(
            f"{_PREFIX}_exchange_duration_seconds",
            "Latency of token exchanges, by registry provider.",
            ["provider"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.managed_secrets = Gauge(
            f"{_PREFIX}_managed_secrets",
            "Secrets with the identity annotation that the controller watches.",
            registry=r,
        )
        self.failing_secrets = Gauge(
            f"{_PREFIX}_failing_secrets",
            "Managed Secrets whose last refresh failed or whose input is invalid.",
            registry=r,
        )
        self.earliest_expiry = Gauge(
            f"{_PREFIX}_earliest_expiry_seconds",
            "Seconds until the earliest expiry among the credentials the controller trusts in "
            "managed Secrets (negative when one has expired).",
            registry=r,
        )
        self.refresh_failures = Counter(
            f"{_PREFIX}_refresh_failures",
            "Failed fills or refreshes of a Secret's entry, by registry provider and cause.",
            ["provider", "cause"],
            registry=r,
        )
        self.secret_writes = Counter(
            f"{_PREFIX}_secret_writes",
            "Writes of a token into a Secret, by outcome (success, conflict, error).",
            ["outcome"],
            registry=r,
        )
        self.events_waiting = Gauge(
            f"{_PREFIX}_events_waiting",
            "Normal Events (Filled, Refreshed) queued to be written in the background.",
            registry=r,
        )
        self.events_dropped = Counter(
            f"{_PREFIX}_events_dropped",
            "Normal Events dropped because too many were waiting to be written.",
            registry=r,
        )
        self.leader = Gauge(
            f"{_PREFIX}_leader",
            "1 while this replica holds the leader Lease and may write, else 0.",
            registry=r,
        )
        self.admission_policy_api = Gauge(
            f"{_PREFIX}_admission_policy_api",
            "1 when the API server serves ValidatingAdmissionPolicies, so the admission policy "
            "that confines the controller's writes can be installed (Kubernetes 1.30+), else 0.",
            registry=r,
        )
        self.open_policy = Gauge(
            f"{_PREFIX}_open_identity_policy",
            "1 when any namespace may use any identity that trusts the controller "
            "(allow_any_identity), else 0.",
            registry=r,
        )


class MeteredProvider:
    """A TokenProvider that counts and times every exchange of the provider it wraps
    (everything else is passed through as it is).

    Each exchange is also a debug log line naming its identity: the operator's view of who
    exchanged what, which the metrics, readable by whoever scrapes, do not give.
    """

    def __init__(self, provider: TokenProvider, *, metrics: Metrics) -> None:
        self._provider = provider
        self._metrics = metrics

    @property
    def spec(self) -> ProviderSpec:
        return self._provider.spec

    async def verify(self, token: str) -> Credential:
        return await self._provider.verify(token)

    def still_trusted(self, token: Credential) -> bool:
        return self._provider.still_trusted(token)

    def on_withdrawn(self, listener: Callable[[], None]) -> None:
        self._provider.on_withdrawn(listener)

    async def refresh_if_stale(self) -> None:
        await self._provider.refresh_if_stale()

    async def aclose(self) -> None:
        await self._provider.aclose()

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        started = time.monotonic()
        provider = want.provider
        outcome = "error"
        try:
            token = await self._provider.issue(want=want, subject=subject)
            outcome = "success"
        except ExchangeError as e:
            outcome = {
                TransientExchangeError: "transient",
                RejectedExchangeError: "rejected",
                MalformedResponse: "malformed",
            }.get(type(e), "error")
            raise
        finally:
            elapsed = time.monotonic() - started
            self._metrics.exchanges.labels(provider=provider, outcome=outcome).inc()
            self._metrics.exchange_seconds.labels(provider=provider).observe(elapsed)
            log.debug("exchange", provider=provider, identity=want.identity,
                      subject=str(subject), outcome=outcome, seconds=round(elapsed, 3))  # fmt: skip
        return token
