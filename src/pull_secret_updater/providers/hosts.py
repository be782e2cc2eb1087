"""Checks every provider's settings share: a registry host, an https endpoint."""

from __future__ import annotations

import re

_REGISTRY_HOST = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?")


def check_registry_host(value: str) -> str:
    """`value` if it is a bare registry host (with an optional port); raises ValueError."""
    if not _REGISTRY_HOST.fullmatch(value):
        raise ValueError("must be a bare registry host such as cgr.dev or localhost:5000")
    return value


def check_https_url(value: str, *, example: str) -> str:
    """`value` as an https URL without a trailing slash (a bare host is taken as https://);
    raises ValueError: a token exchange is never sent in clear."""
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = f"https://{value}"
    if not value.startswith("https://"):
        raise ValueError("must be an https:// URL; the token exchange is never sent in clear")
    host = value.removeprefix("https://").split("/", 1)[0]
    if not host or any(c.isspace() for c in value) or "?" in value or "#" in value:
        raise ValueError(f"must be a URL such as {example}")
    return value
