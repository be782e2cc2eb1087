"""Which release this is, and how it introduces itself to the servers it talks to.

Outside the layers on purpose: the CLI prints the version, and both the Kubernetes client and
the token-service client send the User-Agent, so every layer may import this module and it
imports nothing of ours but the package's `__version__` (where pyproject.toml reads the version
from). NB: not ``importlib.metadata``, which costs the kubelet plugin about 4 ms at every start.
"""

from __future__ import annotations

from pull_secret_updater import __version__

__all__ = ["DISTRIBUTION", "user_agent", "version"]

#: The distribution (and program) name, as in pyproject.toml.
DISTRIBUTION = "pull-secret-updater"


def version() -> str:
    """The release, e.g. `0.1.0`."""
    return __version__


def user_agent() -> str:
    """`pull-secret-updater/<version>`: what we tell the API server and the token service."""
    return f"{DISTRIBUTION}/{version()}"
