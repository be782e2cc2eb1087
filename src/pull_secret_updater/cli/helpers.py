"""The status and check commands for the people who install the controller.

Each turns its arguments into a call of `tools` (where the work is done and tested) and prints
the outcome: results on stdout, what was recognised and any warning on stderr. Failures are
raised, not printed; `commands` makes one line of each.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import lightkube

from pull_secret_updater.cli.common import (
    PROG,
    add_cluster_flags,
    command_parser,
    note,
)
from pull_secret_updater.cli.flags import build_parser, load_settings
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.names import is_dns_label
from pull_secret_updater.core.providers import Want
from pull_secret_updater.kube.client import make_client
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.providers.ecr import spec as ecr_spec
from pull_secret_updater.tokens.errors import TokenSourceError
from pull_secret_updater.tools import check as checking
from pull_secret_updater.tools import status as statuses
from pull_secret_updater.tools.errors import FAILURE, USAGE, ToolError
from pull_secret_updater.tools.kubeconfig import open_cluster

__all__ = ["check", "status"]


def status(argv: list[str]) -> int:
    parser = command_parser(
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
    add_cluster_flags(parser)
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
        note(found.notice)
    now = time.time()
    if args.output == "json":
        print(statuses.render_json(found.rows, now=now))
    elif found.rows:
        print(statuses.render_table(found.rows, now=now))
    if not found.rows:
        note(f"no Secrets named {', '.join(names)} in {found.scope}")
    return 0


def check(argv: list[str]) -> int:
    parser = command_parser(
        "check",
        "Exchange the controller's service-account token once, for a Chainguard identity's "
        "registry token (--identity) or an ECR role's password (--role-arn, --registries), "
        "with the same settings as 'run' (flags or PSU_* variables), and report the outcome: "
        "exit 0 if a credential was issued, 1 if the exchange failed, 2 if the settings do "
        "not allow one. Prints the tokens' issuers and subjects and the expiry, never a token.",
        parents=[build_parser(add_help=False)],
    )
    parser.add_argument("--identity", metavar="UID", help="a Chainguard identity's UID")
    parser.add_argument(
        "--role-arn",
        metavar="ARN",
        help="an IAM role to assume for ECR (with --registries; the ECR provider must be "
        "configured in providers)",
    )
    parser.add_argument(
        "--registries",
        metavar="HOSTS",
        help="the ECR registry hosts, comma-separated, in one region (with --role-arn)",
    )
    parser.add_argument(
        "--secret-namespace",
        metavar="NAMESPACE",
        help="exchange as the controller would for a Secret in this namespace (with "
        "token_subject namespace, as that namespace's ServiceAccount; default: the "
        "controller's own namespace)",
    )
    args = parser.parse_args(argv)
    if args.secret_namespace is not None and not is_dns_label(args.secret_namespace):
        raise ToolError(
            f"--secret-namespace: {args.secret_namespace!r} is not a valid namespace name",
            exit_code=USAGE,
        )
    ecr_asked = args.role_arn is not None or args.registries is not None
    if (args.identity is None) == (not ecr_asked):
        raise ToolError(
            "give either --identity (Chainguard) or --role-arn and --registries (ECR)",
            exit_code=USAGE,
        )
    want: Want | None = None
    identity: str | None = None
    try:
        if ecr_asked:
            annotations = {
                key: value
                for key, value in (
                    (ecr_spec.ROLE_ARN, args.role_arn),
                    (ecr_spec.REGISTRIES, args.registries),
                )
                if value is not None
            }
            want = ecr_spec.EcrSpec().wants(annotations)
            assert want is not None
            asked = want.identity
        else:
            identity = chainguard_spec.validate_identity(args.identity)
            asked = identity
    except BadInput as e:
        message = (
            e.message.replace(f"annotation {chainguard_spec.IDENTITY}", "--identity")
            .replace(f"annotation {ecr_spec.ROLE_ARN}", "--role-arn")
            .replace(f"annotation {ecr_spec.REGISTRIES}", "--registries")
            .replace(ecr_spec.ROLE_ARN, "--role-arn")
            .replace(ecr_spec.REGISTRIES, "--registries")
        )
        raise ToolError(message, exit_code=USAGE) from None
    # The settings are loaded as `run` loads them (environment, then flags), from every flag
    # but --identity.
    only_identity = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--identity", "--role-arn", "--registries", "--secret-namespace"):
        only_identity.add_argument(flag)
    _, setting_flags = only_identity.parse_known_args(argv)
    settings = load_settings(setting_flags, prog=f"{PROG} check")

    def open_client() -> lightkube.AsyncClient:
        try:
            return make_client(kubeconfig=settings.kubeconfig)
        except (lightkube.ConfigError, OSError, ValueError, KeyError) as e:
            where = settings.kubeconfig or "the kubeconfig"
            raise ToolError(
                f"cannot use {where}: {str(e).strip() or type(e).__name__}", exit_code=USAGE
            ) from None

    outcome = asyncio.run(
        checking.run_check(
            settings,
            identity=identity,
            want=want,
            open_client=open_client,
            namespace=args.secret_namespace,
        )
    )
    for line in checking.describe_outcome(outcome):
        print(line)
    if outcome.error is not None:
        code = USAGE if isinstance(outcome.error, TokenSourceError) else FAILURE
        raise ToolError(f"exchange for identity {asked} failed: {outcome.error}", exit_code=code)
    return 0
