"""Kubernetes name rules, as the API server applies them."""

from __future__ import annotations

import pytest

from pull_secret_updater.core.names import is_dns_label, is_dns_subdomain


@pytest.mark.parametrize("name", ["a", "pull-secret", "team-a", "0abc", "a" * 63])
def test_valid_labels(name: str) -> None:
    assert is_dns_label(name)


@pytest.mark.parametrize(
    "name", ["", "A", "a.b", "-a", "a-", "a_b", "a b", "a" * 64, "pull-secret\n"]
)
def test_invalid_labels(name: str) -> None:
    assert not is_dns_label(name)


@pytest.mark.parametrize(
    "name", ["a", "pull-secret", "team.pull-secret", "a.b.c", "0.0", "a" * 253, "a." * 126 + "a"]
)
def test_valid_subdomains(name: str) -> None:
    assert is_dns_subdomain(name)


@pytest.mark.parametrize(
    "name",
    ["", "Pull_Secret", "-x", "x-", ".a", "a.", "a..b", "a.-b", "a-.b", "a=b", "a" * 254, "a/b"],
)
def test_invalid_subdomains(name: str) -> None:
    assert not is_dns_subdomain(name)
