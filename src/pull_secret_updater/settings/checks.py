"""Checks shared by the settings sections; each raises ValueError with the words to show.

`Section` applies the checks that several sections share to their fields by name, once: a
validator written in each section would need a name of its own there, since one name used
twice in the combined `Settings` shadows the other and its check silently never runs.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, field_validator

from pull_secret_updater.core.names import is_dns_subdomain


def empty_is_none(value: object) -> object:
    """An empty or blank string given for an optional path means "none"."""
    return None if isinstance(value, str) and not value.strip() else value


def positive_seconds(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a number of seconds greater than 0")
    return value


def non_negative_seconds(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def check_subdomain(value: str, *, what: str = "") -> None:
    if not is_dns_subdomain(value):
        raise ValueError(
            f"{what}is not a valid Kubernetes name (lower-case letters, digits, '-' and '.', "
            "at most 253 characters, starting and ending with a letter or digit)"
        )


def at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


class Section(BaseModel):
    """The base of every settings section: the shared checks, by field name."""

    # NB: check_fields=False: each section has only some of these fields.
    @field_validator("ca_bundle", "policy_file", "kubeconfig", mode="before", check_fields=False)
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return empty_is_none(value)

    @field_validator(
        "exchange_timeout",
        "max_refresh_interval",
        "backoff_base",
        "backoff_cap",
        "exchange_rate_per_namespace",
        "lease_duration",
        "renew_deadline",
        "retry_period",
        check_fields=False,
    )
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        return positive_seconds(value)

    @field_validator("sa_audience", "pod_name", check_fields=False)
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return not_blank(value)

    @field_validator(
        "service_account", "namespace_service_account", "lease_name", check_fields=False
    )
    @classmethod
    def _subdomain(cls, value: str) -> str:
        check_subdomain(value)
        return value

    @field_validator("workers", "watch_timeout", "exchange_burst_per_namespace", check_fields=False)
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        return at_least_one(value)
