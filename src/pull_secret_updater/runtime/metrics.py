"""Prometheus metrics. Labels carry identity UIDs and outcomes, never tokens or Secret data."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pull_secret_updater.core.claims import VerifiedToken
from pull_secret_updater.tokens.errors import (
    ExchangeError,
    MalformedResponse,
    RejectedExchangeError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.provider import Subject, TokenProvider

_PREFIX = "pull_secret_updater"


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.exchanges = Counter(
            f"{_PREFIX}_exchanges",
            "Token exchanges at the STS, by identity UID and outcome "
            "(success, transient, rejected, malformed).",
            ["identity", "outcome"],
            registry=r,
        )
        self.exchange_seconds = Histogram(
            f"{_PREFIX}_exchange_duration_seconds",
            "Latency of token exchanges at the STS.",
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
            "Seconds until the earliest expiry among the tokens in managed Secrets "
            "(negative when one has expired).",
            registry=r,
        )
        self.refresh_failures = Counter(
            f"{_PREFIX}_refresh_failures",
            "Failed fills or refreshes of a Secret, by cause.",
            ["cause"],
            registry=r,
        )
        self.secret_writes = Counter(
            f"{_PREFIX}_secret_writes",
            "Writes of a token into a Secret, by outcome (success, conflict, error).",
            ["outcome"],
            registry=r,
        )
        self.leader = Gauge(
            f"{_PREFIX}_leader",
            "1 while this replica holds the leader Lease and may write, else 0.",
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
    (verification is passed through as it is)."""

    def __init__(self, provider: TokenProvider, *, metrics: Metrics) -> None:
        self._provider = provider
        self._metrics = metrics

    async def verify(self, token: str) -> VerifiedToken:
        return await self._provider.verify(token)

    def still_trusted(self, token: VerifiedToken) -> bool:
        return self._provider.still_trusted(token)

    async def issue(self, *, identity: str, subject: Subject) -> VerifiedToken:
        started = time.monotonic()
        try:
            token = await self._provider.issue(identity=identity, subject=subject)
        except ExchangeError as e:
            outcome = {
                TransientExchangeError: "transient",
                RejectedExchangeError: "rejected",
                MalformedResponse: "malformed",
            }.get(type(e), "error")
            self._metrics.exchanges.labels(identity=identity, outcome=outcome).inc()
            raise
        finally:
            self._metrics.exchange_seconds.observe(time.monotonic() - started)
        self._metrics.exchanges.labels(identity=identity, outcome="success").inc()
        return token
