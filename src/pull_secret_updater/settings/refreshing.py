"""Settings of when credentials are refreshed and how failed refreshes are retried."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Self

from pydantic import Field, field_validator, model_validator

from pull_secret_updater.core import backoff as _backoff
from pull_secret_updater.core import schedule as _schedule
from pull_secret_updater.core.backoff import Backoff
from pull_secret_updater.core.ratelimit import NamespaceBudget
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.settings.checks import Section, non_negative_seconds


class RefreshSettings(Section):
    """When a credential is refreshed, and how failures are retried."""

    exchange_timeout: float = Field(
        default=10.0,
        description=(
            "Seconds allowed to connect to the token service and to read its answer, each; "
            "a whole exchange gets twice that. Default: 10."
        ),
    )
    refresh_fraction: float = Field(
        default=_schedule.DEFAULT_FRACTION,
        description=(
            "Share of a token's lifetime (from its iat and exp claims) after which it is "
            "refreshed; between 0 and 1. Default: 0.66."
        ),
    )
    refresh_jitter: float = Field(
        default=_schedule.DEFAULT_JITTER,
        description=(
            "Random spread added to refresh_fraction, as a share of the lifetime (+/-), so "
            "Secrets filled together are not refreshed together. Default: 0.1."
        ),
    )
    refresh_margin: float = Field(
        default=_schedule.DEFAULT_MARGIN,
        description=(
            "A token is refreshed at the latest this many seconds before it expires, whatever "
            "the fraction says. Default: 60."
        ),
    )
    max_refresh_interval: float = Field(
        default=_schedule.DEFAULT_MAX_INTERVAL,
        description=(
            "A token is refreshed at the latest this many seconds after it was issued, however "
            "far away its expiry is, so a deleted identity or a changed policy is noticed "
            "within that time. Default: 14400 (4 hours)."
        ),
    )
    min_token_lifetime: float = Field(
        default=30.0,
        description=(
            "A newly issued token that expires within this many seconds is refused as unusable "
            "and the exchange is retried. Default: 30."
        ),
    )
    backoff_base: float = Field(
        default=_backoff.DEFAULT_BASE,
        description=(
            "Seconds to wait before the first retry of a failed refresh; doubles at each "
            "further failure (failures that waiting will not fix start slower). A failed "
            "exchange is also shared this long by all Secrets of its identity. Default: 1."
        ),
    )
    backoff_cap: float = Field(
        default=_backoff.DEFAULT_CAP,
        description=(
            "Longest wait, in seconds, between retries of a failed refresh; while the token in "
            "place is valid, a retry that waiting can help waits at most half of its remaining "
            "lifetime (or backoff_base), unless the token service asks for longer. Default: 300."
        ),
    )

    exchange_burst_per_namespace: int = Field(
        default=20,
        description=(
            "Exchanges one namespace's Secrets may start at once (served from the cache, "
            "they cost nothing); beyond it, exchange_rate_per_namespace. A Secret over its "
            "namespace's budget gets a RateLimited Event and is retried when the budget "
            "allows, and no other namespace waits for it. Default: 20."
        ),
    )
    exchange_rate_per_namespace: float = Field(
        default=20.0,
        description=(
            "Exchanges per minute one namespace's Secrets may start once its burst is spent, "
            "so a namespace that keeps naming new identities cannot spend the token service's "
            "patience for the others. Default: 20."
        ),
    )

    # NB: the same bounds as core.schedule.Schedule, which owns them; checked here per field
    # too, so that the message names the one flag and variable at fault.
    @field_validator("refresh_fraction")
    @classmethod
    def _check_fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("must be between 0 and 1 (exclusive)")
        return value

    @field_validator("refresh_jitter")
    @classmethod
    def _check_jitter(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError("must be at least 0 and less than 1")
        return value

    @field_validator("refresh_margin", "min_token_lifetime")
    @classmethod
    def _check_non_negative(cls, value: float) -> float:
        return non_negative_seconds(value)

    @property
    def schedule(self) -> Schedule:
        """The refresh rule these settings describe."""
        return Schedule(
            fraction=self.refresh_fraction,
            jitter=self.refresh_jitter,
            margin=self.refresh_margin,
            max_interval=self.max_refresh_interval,
        )

    def budget(self, clock: Callable[[], float] = time.monotonic) -> NamespaceBudget:
        """The per-namespace exchange budget these settings describe."""
        return NamespaceBudget(
            rate=self.exchange_rate_per_namespace / 60,
            burst=self.exchange_burst_per_namespace,
            clock=clock,
        )

    @property
    def backoff(self) -> Backoff:
        """The retry delays these settings describe."""
        return Backoff(base=self.backoff_base, cap=self.backoff_cap)

    @model_validator(mode="after")
    def _check_refresh(self) -> Self:
        # NB: the core's Schedule and Backoff own these rules; asking them is the check.
        try:
            _ = self.schedule
        except ValueError as e:
            raise ValueError(
                f"refresh settings (refresh_fraction, refresh_jitter, refresh_margin, "
                f"max_refresh_interval): {e}"
            ) from None
        try:
            _ = self.backoff
        except ValueError as e:
            raise ValueError(f"backoff settings (backoff_base, backoff_cap): {e}") from None
        if self.refresh_margin < self.exchange_timeout:
            raise ValueError(
                f"refresh_margin ({self.refresh_margin:g}s) must be at least exchange_timeout "
                f"({self.exchange_timeout:g}s): a refresh started at the margin must be able to "
                "finish before the token expires"
            )
        return self
