"""The plugin starts at every pull the kubelet has no cached credential for: what it loads is
the token layer and the core, never the Kubernetes client, the controller, the settings model
or structlog. import-linter checks the imports it can see; this checks what Python really
loads, package ``__init__`` modules included."""

from __future__ import annotations

import subprocess
import sys

import pytest

NEVER = (
    "lightkube",
    "structlog",
    "pydantic",
    "pydantic_settings",
    "yaml",
    "prometheus_client",
    "pull_secret_updater.kube",
    "pull_secret_updater.runtime",
    "pull_secret_updater.settings",
    "pull_secret_updater.wiring",
    "pull_secret_updater.cli",
    "pull_secret_updater.tools",
)


def loaded_by(module: str) -> set[str]:
    """Every module a fresh interpreter loads to import `module` (python -X importtime)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize(
    "module",
    ["pull_secret_updater.credentialprovider.plugin", "pull_secret_updater.credentialprovider"],
)
def test_the_plugin_loads_neither_the_kubernetes_client_nor_the_controller(module: str) -> None:
    loaded = loaded_by(module)
    exchange = "pull_secret_updater.providers.chainguard.exchange"
    assert exchange in loaded or module.endswith("credentialprovider")
    heavy = sorted(
        name for name in loaded if any(name == n or name.startswith(f"{n}.") for n in NEVER)
    )
    assert heavy == []


def test_the_check_can_see_a_heavy_import() -> None:
    # The same reading of the same interpreter finds lightkube when it is loaded.
    assert "lightkube" in loaded_by("pull_secret_updater.tokens.satoken, lightkube")
