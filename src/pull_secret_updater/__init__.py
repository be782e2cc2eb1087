"""pull-secret-updater: short-lived registry credentials for Kubernetes workloads."""

#: The release (pyproject.toml reads it from here; `pull_secret_updater.version` tells it).
__version__ = "0.1.0"
