"""The ``pull-secret-updater`` command: which commands there are, and how each one ends.

``run`` is the controller. The other commands are helpers for the people who install it:
``identity-command`` prints the ``chainctl iam identities create`` command for the cluster of
the current kubeconfig (with ``--provider ecr``, the AWS CLI commands of an IAM role),
``status`` shows the managed Secrets, ``check`` performs one exchange, ``credential-provider``
prints what installs the kubelet plugin on nodes.
Every failure is one line on stderr and a non-zero exit, never a traceback: 2 when the command
is called or configured wrongly, 1 when what it talks to fails.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx2
import lightkube

from pull_secret_updater import version
from pull_secret_updater.cli import common, helpers, identity, nodes
from pull_secret_updater.cli.flags import load_settings
from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.kube.errors import KubeError, translate
from pull_secret_updater.settings import SettingsError
from pull_secret_updater.tokens.errors import ExchangeError, TokenSourceError
from pull_secret_updater.tools.errors import FAILURE, USAGE, ToolError

PROG = common.PROG

#: The longest line a failure may print.
MAX_LINE = 1000


@dataclass(frozen=True, slots=True)
class _Command:
    summary: str
    handler: Callable[[list[str]], int]


_COMMANDS: dict[str, _Command] = {
    "identity-command": _Command(
        "print the chainctl (or, with --provider ecr, AWS CLI) commands that create the "
        "identity for this cluster",
        identity.identity_command,
    ),
    "status": _Command(
        "show the managed Secrets: identity, expiry, last refresh, last error", helpers.status
    ),
    "check": _Command("exchange once for an identity, as the controller would", helpers.check),
    "credential-provider": _Command(
        "print the kubelet plugin's CredentialProviderConfig or RBAC (config, rbac)",
        nodes.credential_provider,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(_usage(), file=sys.stderr)
        return USAGE
    if args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        print(f"{PROG} {version.version()}")
        return 0
    command, rest = args[0], args[1:]
    if command == "run":
        return _run(rest)
    found = _COMMANDS.get(command)
    if found is None:
        print(f"{PROG}: unknown command {command!r} (see {PROG} --help)", file=sys.stderr)
        return USAGE
    # NB: a helper's stdout is its answer (a command to paste, a table, JSON), and a failure
    # is one line on stderr: log lines of the layers below would only repeat it, so only
    # errors (none expected) are let through, to stderr.
    from pull_secret_updater.runtime.logs import configure_logging

    configure_logging("error", stream=sys.stderr)
    return _guarded(f"{PROG} {command}", found.handler, rest)


def _usage() -> str:
    width = max(len(name) for name in ("run", *_COMMANDS))
    lines = [
        f"usage: {PROG} COMMAND [options]",
        "",
        "Keeps image pull Secrets filled with short-lived registry tokens.",
        "",
        "commands:",
        f"  {'run'.ljust(width)}  run the controller (settings from flags or PSU_* variables)",
        *(f"  {name.ljust(width)}  {command.summary}" for name, command in _COMMANDS.items()),
        "",
        f"'{PROG} COMMAND --help' describes a command's options.",
    ]
    return "\n".join(lines)


def _run(argv: list[str]) -> int:
    # NB: imported here so that the helpers start without the controller's machinery.
    from pull_secret_updater.runtime.app import ConfigurationError, run
    from pull_secret_updater.runtime.logs import configure_logging

    try:
        settings = load_settings(argv, prog="pull-secret-updater run")
    except SettingsError as e:
        print(f"pull-secret-updater run: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        asyncio.run(run(settings))
    except ConfigurationError as e:
        print(f"pull-secret-updater run: {e}", file=sys.stderr)
        return 2
    return 0


def _guarded(prog: str, handler: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a helper; whatever goes wrong becomes one line on stderr and an exit status."""
    try:
        return handler(argv)
    except common.UsageError as e:
        return _fail(prog, f"{e} (see {prog} --help)", USAGE)
    except ToolError as e:
        return _fail(prog, e.message, e.exit_code)
    except SettingsError as e:
        return _fail(prog, str(e), USAGE)
    except TokenSourceError as e:
        return _fail(prog, e.message, USAGE)
    except ExchangeError as e:
        return _fail(prog, e.message, FAILURE)
    except KubeError as e:
        return _fail(prog, e.message, FAILURE)
    except (lightkube.ApiError, httpx2.HTTPError) as e:
        return _fail(prog, translate(e).message, FAILURE)
    except lightkube.ConfigError as e:
        return _fail(prog, f"kubeconfig: {e}", USAGE)
    except OSError as e:
        problem = e.strerror or type(e).__name__
        return _fail(prog, f"{problem}: {e.filename}" if e.filename else problem, USAGE)
    except KeyboardInterrupt:
        return _fail(prog, "interrupted", 130)
    except Exception as e:
        return _fail(prog, f"unexpected {type(e).__name__}: {e}", FAILURE)


def _fail(prog: str, message: str, code: int) -> int:
    # Last line of defence: the messages are built never to hold a token, and this makes sure.
    print(f"{prog}: {truncate(redact(message), limit=MAX_LINE)}", file=sys.stderr)
    return code
