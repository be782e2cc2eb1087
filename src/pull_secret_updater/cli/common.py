"""What the install-time commands share: the program name, usage errors, the parser."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

PROG = "pull-secret-updater"


class UsageError(Exception):
    """The command was called wrongly (a flag missing, unknown or malformed)."""


class CommandParser(argparse.ArgumentParser):
    # One line and exit status 2 for a usage mistake, as for every other failure.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def command_parser(
    command: str, description: str, *, parents: Sequence[argparse.ArgumentParser] = ()
) -> CommandParser:
    return CommandParser(
        prog=f"{PROG} {command}",
        description=description,
        parents=list(parents),
        allow_abbrev=False,
    )


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)",
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def note(message: str) -> None:
    # NB: never break inside a word: it may be an ARN or an annotation to copy.
    print(
        textwrap.fill(message, width=100, break_on_hyphens=False, break_long_words=False),
        file=sys.stderr,
    )
