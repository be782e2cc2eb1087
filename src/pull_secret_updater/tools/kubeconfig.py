"""Opening the cluster a person means, the way kubectl finds it.

The helpers are run by people at a terminal, so configuration is looked up in kubectl's order
(`--kubeconfig`, then `$KUBECONFIG`, then `~/.kube/config`, and only then the in-cluster
ServiceAccount) and a context can be chosen with `--context`. The controller's own
`kube.client.make_client` prefers the in-cluster ServiceAccount and has no context to choose;
this module builds the same kind of client (same User-Agent, bounded requests) for a context.

Every way a kubeconfig can be unusable (missing, unreadable, not YAML, not a kubeconfig, no
such context, a certificate file it names is missing) becomes one `ToolError` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx2
import lightkube
import yaml
from lightkube import KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from pull_secret_updater.core.redaction import truncate
from pull_secret_updater.kube.client import DEFAULT_FIELD_MANAGER, http_client
from pull_secret_updater.tools.errors import USAGE, ToolError
from pull_secret_updater.version import user_agent

__all__ = ["Cluster", "open_cluster"]

DEFAULT_KUBECONFIG = Path("~/.kube/config")

#: How much of a library's explanation of a bad kubeconfig ends up in a message.
_MAX_DETAIL = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """A client for the chosen context, and what that context says about it."""

    client: lightkube.AsyncClient
    #: The context's namespace (`default` when it names none), as kubectl would use.
    namespace: str
    context: str
    source: str


def open_cluster(
    *, kubeconfig: Path | None = None, context: str | None = None, timeout: float = 10.0
) -> Cluster:
    """A client for `context` (default: the current one) of the kubeconfig kubectl would use."""
    config, source = _load(kubeconfig)
    try:
        single = config.get(context_name=context)
    except lightkube.ConfigError as e:
        raise ToolError(f"cannot use kubeconfig {source}: {_flat(e)}", exit_code=USAGE) from None
    except KeyError as e:
        raise ToolError(
            f"cannot use kubeconfig {source}: its context refers to a missing cluster or user {e}",
            exit_code=USAGE,
        ) from None
    if single is None:  # pragma: no cover - get() without a default never returns None
        raise ToolError(f"kubeconfig {source} has no current context", exit_code=USAGE)
    client = _client(single, source=source, timeout=timeout)
    return Cluster(
        client=client, namespace=single.namespace, context=single.context_name, source=source
    )


def _load(kubeconfig: Path | None) -> tuple[KubeConfig, str]:
    if kubeconfig is not None:
        return _from_file(kubeconfig), str(kubeconfig)
    paths = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if paths:
        # NB: kubectl merges every file of a KUBECONFIG list; lightkube reads one, so take the
        # first that exists, and name them all when none does.
        existing = next((p for p in paths if p.expanduser().exists()), None)
        if existing is None:
            named = os.pathsep.join(str(p) for p in paths)
            raise ToolError(f"no kubeconfig: KUBECONFIG={named} does not exist", exit_code=USAGE)
        return _from_file(existing), str(existing)
    default = DEFAULT_KUBECONFIG.expanduser()
    if default.exists():
        return _from_file(default), str(DEFAULT_KUBECONFIG)
    try:
        return KubeConfig.from_service_account(), "the in-cluster ServiceAccount"
    except (lightkube.ConfigError, KeyError, OSError):
        raise ToolError(
            "no kubeconfig: pass --kubeconfig or set KUBECONFIG (~/.kube/config does not exist "
            "and this is not a pod)",
            exit_code=USAGE,
        ) from None


def _from_file(path: Path) -> KubeConfig:
    try:
        config = KubeConfig.from_file(path)
    except lightkube.ConfigError:
        problem = "it does not exist or is not a file"
    except OSError as e:
        problem = f"it cannot be read ({e.strerror or type(e).__name__})"
    except yaml.YAMLError:
        problem = "it is not valid YAML"
    except (KeyError, TypeError, AttributeError, ValueError):
        problem = "it is not a kubeconfig (clusters, contexts, users)"
    else:
        return config
    raise ToolError(f"cannot use kubeconfig {path}: {problem}", exit_code=USAGE)


def _client(single: SingleConfig, *, source: str, timeout: float) -> lightkube.AsyncClient:
    try:
        client = lightkube.AsyncClient(
            config=single, field_manager=DEFAULT_FIELD_MANAGER, timeout=httpx2.Timeout(timeout)
        )
    except lightkube.ConfigError as e:
        problem = _flat(e)
    except OSError as e:
        # A certificate or key file the kubeconfig names is missing or unreadable.
        problem = f"{e.strerror or type(e).__name__}: {e.filename or ''}".rstrip(": ")
    except (ValueError, TypeError) as e:
        problem = f"{type(e).__name__}: {_flat(e)}"
    else:
        http_client(client).headers["User-Agent"] = user_agent()
        return client
    raise ToolError(f"cannot use kubeconfig {source}: {problem}", exit_code=USAGE)


def _flat(error: BaseException) -> str:
    return truncate(str(error), limit=_MAX_DETAIL)
