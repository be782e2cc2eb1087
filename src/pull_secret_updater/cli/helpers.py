"""The commands for the people who install the controller: identity-command, status, check.

Each turns its arguments into a call of `tools` (where the work is done and tested) and prints
the outcome: results on stdout, what was recognised and any warning on stderr. Failures are
raised, not printed; `commands` makes one line of each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import lightkube
import yaml

from pull_secret_updater.cli.flags import build_parser, load_settings
from pull_secret_updater.core import annotations as keys
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.names import is_dns_label
from pull_secret_updater.credentialprovider import install
from pull_secret_updater.credentialprovider.options import DEFAULT_AUDIENCE
from pull_secret_updater.kube.client import make_client
from pull_secret_updater.tokens.errors import TokenSourceError
from pull_secret_updater.tools import check as checking
from pull_secret_updater.tools import identity as identities
from pull_secret_updater.tools import status as statuses
from pull_secret_updater.tools.discovery import fetch_issuer
from pull_secret_updater.tools.errors import FAILURE, USAGE, ToolError
from pull_secret_updater.tools.kubeconfig import open_cluster

__all__ = ["PROG", "UsageError", "check", "identity_command", "status"]

PROG = "pull-secret-updater"


class UsageError(Exception):
    """The command was called wrongly (a flag missing, unknown or malformed)."""


def identity_command(argv: list[str]) -> int:
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
    parser.add_argument(
        "--for-namespace",
        action="append",
        metavar="NAMESPACE",
        help="namespace-scoped identities (token_subject namespace): print one command per "
        "namespace given (repeat the flag), for the ServiceAccount --namespace-service-account "
        "in that namespace, so that each identity trusts that one namespace only",
    )
    parser.add_argument(
        "--namespace-service-account",
        default="pull-secret-updater",
        help="with --for-namespace: the ServiceAccount whose tokens the controller exchanges in "
        "each namespace (default: pull-secret-updater)",
    )
    parser.add_argument(
        "--for-service-account",
        action="append",
        metavar="NAMESPACE/NAME",
        help="kubelet credential-provider mode: print one command per ServiceAccount given "
        "(repeat the flag), for an identity that trusts that ServiceAccount's tokens with the "
        "audience the kubelet requests (--audience or --provider-config)",
    )
    audience = parser.add_mutually_exclusive_group()
    audience.add_argument(
        "--audience",
        help="with --for-service-account: the tokens' audience, tokenAttributes."
        f"serviceAccountTokenAudience in the kubelet's config (default: {DEFAULT_AUDIENCE})",
    )
    audience.add_argument(
        "--provider-config",
        type=Path,
        metavar="PATH",
        help="with --for-service-account: take the audience from this CredentialProviderConfig "
        "(the output of 'credential-provider config')",
    )
    _add_cluster_flags(parser)
    args = parser.parse_args(argv)
    scoped: list[str] = args.for_namespace or []
    workloads: list[str] = args.for_service_account or []
    if scoped and workloads:
        parser.error("--for-namespace and --for-service-account are different modes: choose one")
    if not workloads and (args.audience is not None or args.provider_config is not None):
        parser.error("--audience and --provider-config go with --for-service-account")
    token_audience = _workload_audience(args) if workloads else None
    if workloads:
        targets = [_namespaced_name(value) for value in workloads]
    elif scoped:
        targets = [(ns, args.namespace_service_account) for ns in scoped]
    else:
        targets = [(args.namespace, args.service_account)]
    try:
        for namespace, service_account in targets:
            identities.check_target(
                namespace=namespace, service_account=service_account, name=args.name
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
        plans = [
            identities.plan_identity(
                issuer=issuer,
                issuer_class=issuer_class,
                namespace=namespace,
                service_account=service_account,
                name=_identity_name(
                    args.name,
                    issuer_class,
                    namespace,
                    service_account,
                    scoped=bool(scoped),
                    workload=bool(workloads),
                ),
                jwks=jwks,
                embed_keys=args.embed_keys,
                audience=token_audience,
            )
            for namespace, service_account in targets
        ]
    except ValueError as e:  # the names were checked above: this is about the cluster's keys
        raise ToolError(str(e), exit_code=FAILURE) from None
    plan = plans[0]
    consequence = (
        "the identity carries the cluster's keys"
        if plan.issuer_keys is not None
        else "the identity needs no keys"
    )
    _note(f"recognised: {issuer_class.label}: {issuer_class.reason}; {consequence}")
    if issuer_class.kind == "public" and plan.issuer_keys is None:
        _note("if the token service cannot fetch that document, run again with --embed-keys")
    if scoped:
        _note(
            "namespace-scoped: each identity trusts one namespace's ServiceAccount; annotate that "
            "namespace's Secrets with its UID, and create the ServiceAccount there: "
            + "; ".join(f"kubectl create serviceaccount {sa} -n {ns}" for ns, sa in targets)
        )
    if workloads:
        _note(
            "credential-provider mode: each identity trusts one ServiceAccount's tokens with "
            f"audience {token_audience}, as the kubelet requests them for its Pods; annotate "
            "that ServiceAccount with the identity's UID: "
            + "; ".join(
                f"kubectl annotate serviceaccount {sa} -n {ns} {keys.IDENTITY}=<UID>"
                for ns, sa in targets
            )
        )
    print("\n\n".join(p.command() for p in plans), flush=True)
    warning = identities.rotation_warning(plan)
    if warning is not None:
        _note(warning)
    return 0


def _namespaced_name(value: str) -> tuple[str, str]:
    namespace, slash, name = value.partition("/")
    if not slash or not namespace or not name:
        raise UsageError(f"--for-service-account {value!r}: expected NAMESPACE/NAME")
    return namespace, name


def _workload_audience(args: argparse.Namespace) -> str:
    if args.audience is not None:
        if not args.audience.strip():
            raise UsageError("--audience must not be empty")
        return str(args.audience)
    if args.provider_config is None:
        return DEFAULT_AUDIENCE
    try:
        document = yaml.safe_load(args.provider_config.read_text())
        return install.audience_in_config(document)
    except (OSError, yaml.YAMLError, ValueError) as e:
        problem = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ToolError(
            f"cannot read the audience from {args.provider_config}: {problem}", exit_code=USAGE
        ) from None


def _identity_name(
    name: str | None,
    issuer_class: identities.IssuerClass,
    namespace: str,
    service_account: str,
    *,
    scoped: bool,
    workload: bool,
) -> str | None:
    if workload:
        if name:
            return f"{name}-{namespace}-{service_account}"
        return issuer_class.workload_name(namespace, service_account)
    if scoped:
        return f"{name or issuer_class.default_name}-{namespace}"
    return name


def status(argv: list[str]) -> int:
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


def check(argv: list[str]) -> int:
    parser = _parser(
        "check",
        "Exchange the controller's service-account token once for an identity's registry "
        "token, with the same settings as 'run' (flags or PSU_* variables), and report the "
        "outcome: exit 0 if a token was issued, 1 if the exchange failed, 2 if the settings "
        "do not allow one. Prints the tokens' issuers and subjects, never a token.",
        parents=[build_parser(add_help=False)],
    )
    parser.add_argument("--identity", required=True, metavar="UID", help="the identity's UID")
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
    only_identity.add_argument("--secret-namespace")
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
            open_client=open_client,
            namespace=args.secret_namespace,
        )
    )
    for line in checking.describe_outcome(outcome):
        print(line)
    if outcome.error is not None:
        code = USAGE if isinstance(outcome.error, TokenSourceError) else FAILURE
        raise ToolError(f"exchange for identity {identity} failed: {outcome.error}", exit_code=code)
    return 0


class _CommandParser(argparse.ArgumentParser):
    # One line and exit status 2 for a usage mistake, as for every other failure.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser(
    command: str, description: str, *, parents: Sequence[argparse.ArgumentParser] = ()
) -> _CommandParser:
    return _CommandParser(
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


def _note(message: str) -> None:
    print(textwrap.fill(message, width=100, break_on_hyphens=False), file=sys.stderr)
