"""The ``pull-secret-updater`` command.

``run`` is the controller. The other commands are helpers for the people who install it:
``identity-command`` prints the ``chainctl iam identities create`` command for the cluster of
the current kubeconfig, ``status`` shows the managed Secrets, ``check`` performs one exchange.
Every failure is one line on stderr and a non-zero exit, never a traceback: 2 when the command
is called or configured wrongly, 1 when what it talks to fails.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import httpx2
import lightkube

from pull_secret_updater.core import annotations as keys
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.kube.client import make_client
from pull_secret_updater.kube.errors import KubeError, translate
from pull_secret_updater.settings import SettingsError, build_parser, load_settings
from pull_secret_updater.tokens.errors import ExchangeError, TokenSourceError
from pull_secret_updater.tools import check as checking
from pull_secret_updater.tools import identity as identities
from pull_secret_updater.tools import status as statuses
from pull_secret_updater.tools.discovery import fetch_issuer
from pull_secret_updater.tools.errors import FAILURE, USAGE, ToolError
from pull_secret_updater.tools.kubeconfig import open_cluster

PROG = "pull-secret-updater"

_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){0,2}")


@dataclass(frozen=True, slots=True)
class _Command:
    summary: str
    handler: Callable[[list[str]], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(_usage(), file=sys.stderr)
        return USAGE
    if args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        print(f"{PROG} {_version()}")
        return 0
    command, rest = args[0], args[1:]
    if command == "run":
        return _run(rest)
    found = _COMMANDS.get(command)
    if found is None:
        print(f"{PROG}: unknown command {command!r} (see {PROG} --help)", file=sys.stderr)
        return USAGE
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


# -- identity-command -------------------------------------------------------------------------


def _identity_command(argv: list[str]) -> int:
    parser = _parser(
        "identity-command",
        "Print the chainctl command that creates an assumable identity for the controller of "
        "the cluster in the current kubeconfig. The cluster's service-account issuer and keys "
        "are read through its API server; a cluster whose issuer is public (GKE, EKS, AKS, "
        "any public HTTPS issuer) needs no keys in the identity, a private one (KinD, "
        "kubeadm, k3s) gets its current keys copied in. The command goes to stdout, what was "
        "recognised and any warning to stderr.",
    )
    parser.add_argument(
        "--name", help="the identity's name (default: <kind>-pull-secrets, e.g. kind-pull-secrets)"
    )
    parser.add_argument(
        "--namespace",
        default="pull-secret-updater",
        help="the controller's namespace (default: pull-secret-updater)",
    )
    parser.add_argument(
        "--service-account",
        default="controller",
        help="the controller's ServiceAccount (default: controller)",
    )
    parser.add_argument(
        "--embed-keys",
        action="store_true",
        help="copy the cluster's keys into the identity even if its issuer looks public "
        "(for an issuer URL the token service cannot fetch)",
    )
    _add_cluster_flags(parser)
    args = parser.parse_args(argv)
    try:
        identities.check_target(
            namespace=args.namespace, service_account=args.service_account, name=args.name
        )
    except ValueError as e:
        raise ToolError(str(e), exit_code=USAGE) from None

    async def fetch() -> tuple[str, dict[str, object]]:
        cluster = open_cluster(kubeconfig=args.kubeconfig, context=args.context)
        try:
            found = await fetch_issuer(cluster.client)
        finally:
            await cluster.client.close()
        return found.issuer, dict(found.jwks)

    issuer, jwks = asyncio.run(fetch())
    issuer_class = identities.classify_issuer(issuer)
    try:
        plan = identities.plan_identity(
            issuer=issuer,
            issuer_class=issuer_class,
            namespace=args.namespace,
            service_account=args.service_account,
            name=args.name,
            jwks=jwks,
            embed_keys=args.embed_keys,
        )
    except ValueError as e:  # the names were checked above: this is about the cluster's keys
        raise ToolError(str(e), exit_code=FAILURE) from None
    consequence = (
        "the identity carries the cluster's keys"
        if plan.issuer_keys is not None
        else "the identity needs no keys"
    )
    _note(f"recognised: {issuer_class.label}: {issuer_class.reason}; {consequence}")
    if issuer_class.kind == "public" and plan.issuer_keys is None:
        _note("if the token service cannot fetch that document, run again with --embed-keys")
    print(plan.command(), flush=True)
    warning = identities.rotation_warning(plan)
    if warning is not None:
        _note(warning)
    return 0


# -- status -----------------------------------------------------------------------------------


def _status(argv: list[str]) -> int:
    parser = _parser(
        "status",
        "Show the managed Secrets and their state, from the annotations the controller writes: "
        "the identity, when the token expires, when it was last refreshed and the last error. "
        "Only metadata is read, never a Secret's data. Without -n, every namespace is listed; "
        "if that is not allowed, the kubeconfig's current namespace is.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="list this namespace only")
    where.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="list every namespace, failing if that is not allowed",
    )
    parser.add_argument(
        "--names",
        default="pull-secret",
        metavar="NAME[,NAME...]",
        help="names of the managed Secrets, comma-separated (default: pull-secret)",
    )
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="(default: table)"
    )
    _add_cluster_flags(parser)
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.names.split(",") if name.strip()]
    if not names:
        parser.error("--names needs at least one name")
    for name in names:
        try:
            statuses.check_secret_name(name)
        except ValueError as e:
            parser.error(f"--names: {e}")

    async def listing() -> statuses.Listing:
        cluster = open_cluster(kubeconfig=args.kubeconfig, context=args.context)
        try:
            return await statuses.list_statuses(
                cluster.client,
                names=names,
                namespace=args.namespace,
                fallback_namespace=None if args.all_namespaces else cluster.namespace,
            )
        finally:
            await cluster.client.close()

    found = asyncio.run(listing())
    if found.notice:
        _note(found.notice)
    now = time.time()
    if args.output == "json":
        print(statuses.render_json(found.rows, now=now))
    elif found.rows:
        print(statuses.render_table(found.rows, now=now))
    if not found.rows:
        _note(f"no Secrets named {', '.join(names)} in {found.scope}")
    return 0


# -- check ------------------------------------------------------------------------------------


def _check(argv: list[str]) -> int:
    parser = _parser(
        "check",
        "Exchange the controller's service-account token once for an identity's registry "
        "token, with the same settings as 'run' (flags or PSU_* variables), and report the "
        "outcome: exit 0 if a token was issued, 1 if the exchange failed, 2 if the settings "
        "do not allow one. Prints the tokens' issuers and subjects, never a token.",
        parents=[build_parser(add_help=False)],
    )
    parser.add_argument("--identity", required=True, metavar="UID", help="the identity's UID")
    args = parser.parse_args(argv)
    try:
        identity = keys.validate_identity(args.identity)
    except BadInput as e:
        raise ToolError(
            e.message.replace(f"annotation {keys.IDENTITY}", "--identity"), exit_code=USAGE
        ) from None
    # The settings are loaded as `run` loads them (environment, then flags), from every flag
    # but --identity.
    only_identity = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    only_identity.add_argument("--identity")
    _, setting_flags = only_identity.parse_known_args(argv)
    settings = load_settings(setting_flags, prog=f"{PROG} check")

    def open_client() -> lightkube.AsyncClient:
        try:
            return make_client(kubeconfig=settings.kubeconfig)
        except (lightkube.ConfigError, OSError, ValueError, KeyError) as e:
            where = settings.kubeconfig or "the kubeconfig"
            raise ToolError(
                f"cannot use {where}: {_one_line(str(e)) or type(e).__name__}", exit_code=USAGE
            ) from None

    outcome = asyncio.run(checking.run_check(settings, identity=identity, open_client=open_client))
    for line in checking.describe_outcome(outcome):
        print(line)
    if outcome.error is not None:
        code = USAGE if isinstance(outcome.error, TokenSourceError) else FAILURE
        raise ToolError(f"exchange for identity {identity} failed: {outcome.error}", exit_code=code)
    return 0


# -- shared -----------------------------------------------------------------------------------


_COMMANDS: dict[str, _Command] = {
    "identity-command": _Command(
        "print the chainctl command that creates the identity for this cluster", _identity_command
    ),
    "status": _Command(
        "show the managed Secrets: identity, expiry, last refresh, last error", _status
    ),
    "check": _Command("exchange once for an identity, as the controller would", _check),
}


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # One line and exit status 2 for a usage mistake, as for every other failure.
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser(
    command: str, description: str, *, parents: Sequence[argparse.ArgumentParser] = ()
) -> _Parser:
    return _Parser(
        prog=f"{PROG} {command}",
        description=description,
        parents=list(parents),
        allow_abbrev=False,
    )


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)",
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def _guarded(prog: str, handler: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a helper; whatever goes wrong becomes one line on stderr and an exit status."""
    try:
        return handler(argv)
    except _UsageError as e:
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
    print(f"{prog}: {_one_line(message)}", file=sys.stderr)
    return code


def _note(message: str) -> None:
    print(textwrap.fill(message, width=100, break_on_hyphens=False), file=sys.stderr)


def _one_line(text: str, limit: int = 1000) -> str:
    # Last line of defence: the messages are built never to hold a token, and this makes sure.
    line = _JWT_LIKE.sub("[redacted]", " ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _version() -> str:
    try:
        return metadata.version("pull-secret-updater")
    except metadata.PackageNotFoundError:
        return "unknown"
