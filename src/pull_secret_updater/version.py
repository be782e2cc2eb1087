"""Which release this is, and how it introduces itself to the servers it talks to.

Outside the layers on purpose: the CLI prints the version, and both the Kubernetes client and
the token-service client send the User-Agent, so every layer may import this module and it
imports nothing of ours. The version is the installed distribution's; a source tree that was
never installed says "unknown" rather than failing.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["DISTRIBUTION", "user_agent", "version"]

#: The distribution (and program) name, as in pyproject.toml.
DISTRIBUTION = "pull-secret-updater"


def version() -> str:
    """The installed version, e.g. `0.1.0`; `unknown` when the package is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def user_agent() -> str:
    """`pull-secret-updater/<version>`: what we tell the API server and the token service."""
    return f"{DISTRIBUTION}/{version()}"
