"""The Kubernetes adapters: everything the controller asks of the API server, and nothing else.

Managed Secrets are read, written and followed (`secrets`), Events recorded (`events`), the
leader Lease held (`leader`), all through one lightkube client (`client`), and every failure
reaches the layers above as one of the `errors` classes. Nothing here decides anything about a
Secret's content; that is the core's job.
"""

from pull_secret_updater.kube.client import make_client
from pull_secret_updater.kube.errors import (
    Conflict,
    Forbidden,
    Gone,
    KubeError,
    NotFound,
    Transient,
    Unprocessable,
    translate,
    translated,
)
from pull_secret_updater.kube.events import EventRecorder, EventType
from pull_secret_updater.kube.leader import LeaderElector, LeaseRecord
from pull_secret_updater.kube.secrets import (
    SecretObject,
    SecretRef,
    WatchEvent,
    get_secret,
    list_and_watch,
    list_secrets,
    write_secret,
)

__all__ = [
    "Conflict",
    "EventRecorder",
    "EventType",
    "Forbidden",
    "Gone",
    "KubeError",
    "LeaderElector",
    "LeaseRecord",
    "NotFound",
    "SecretObject",
    "SecretRef",
    "Transient",
    "Unprocessable",
    "WatchEvent",
    "get_secret",
    "list_and_watch",
    "list_secrets",
    "make_client",
    "translate",
    "translated",
    "write_secret",
]
