"""Checks shared by the settings sections; each raises ValueError with the words to show."""

from __future__ import annotations

import math

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
