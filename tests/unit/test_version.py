"""How the program names itself: one version, one User-Agent."""

from __future__ import annotations

from importlib import metadata

import pytest

from pull_secret_updater import version


def test_the_user_agent_carries_the_installed_version() -> None:
    assert version.user_agent() == f"pull-secret-updater/{metadata.version('pull-secret-updater')}"


def test_an_uninstalled_tree_says_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert version.version() == "unknown"
    assert version.user_agent() == "pull-secret-updater/unknown"
