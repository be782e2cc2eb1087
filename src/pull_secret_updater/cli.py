"""The ``pull-secret-updater`` command.

``run`` is the controller. The other commands are helpers for the people who install it:
``identity-command`` prints the ``chainctl iam identities create`` command for the cluster of
the current kubeconfig, ``status`` shows the managed Secrets, ``check`` performs one exchange.
Every failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from pull_secret_updater.runtime.app import ConfigurationError, run
from pull_secret_updater.runtime.logs import configure_logging
from pull_secret_updater.settings import SettingsError, load_settings

_USAGE = """usage: pull-secret-updater COMMAND [options]

commands:
  run       run the controller (settings from flags or PSU_* variables; run --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "run":
        return _run(rest)
    print(f"pull-secret-updater: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


def _run(argv: list[str]) -> int:
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
