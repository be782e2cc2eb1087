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
from pull_secret_updater.core.providers import ProviderSpec, Want
from pull_secret_updater.kube.client import make_client
from pull_secret_updater.providers.acr import spec as acr_spec
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.providers.ecr import spec as ecr_spec
from pull_secret_updater.providers.gar import spec as gar_spec
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


#: What `check` may ask of each registry provider besides Chainguard: its flags (argparse
#: destinations), each standing for the Secret annotation it fills in, so that the provider's
#: own spec validates them as the controller would. --registries goes with any of them.
_ASKS: dict[str, tuple[tuple[str, str], ...]] = {
    "ecr": (("role_arn", ecr_spec.ROLE_ARN), ("registries", ecr_spec.REGISTRIES)),
    "gar": (
        ("workload_identity_provider", gar_spec.WORKLOAD_IDENTITY_PROVIDER),
        ("gcp_service_account", gar_spec.SERVICE_ACCOUNT),
        ("registries", gar_spec.REGISTRIES),
    ),
    "acr": (
        ("tenant_id", acr_spec.TENANT_ID),
        ("client_id", acr_spec.CLIENT_ID),
        ("registries", acr_spec.REGISTRY),
    ),
}
_SPECS: dict[str, ProviderSpec] = {
    "ecr": ecr_spec.EcrSpec(),
    "gar": gar_spec.GarSpec(),
    "acr": acr_spec.AcrSpec(),
}
_ASK_FLAGS = ("identity", "role_arn", "workload_identity_provider", "gcp_service_account",
              "tenant_id", "client_id", "registries", "secret_namespace")  # fmt: skip
_GIVE_ONE = (
    "give one of --identity (Chainguard), --role-arn and --registries (ECR), "
    "--workload-identity-provider [--gcp-service-account] and --registries (Artifact Registry), "
    "or --tenant-id, --client-id and --registries (ACR)"
)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _asked_kind(args: argparse.Namespace) -> str:
    """The one provider the flags ask for; raises ToolError unless exactly one is asked."""
    kinds = ["chainguard"] if args.identity is not None else []
    kinds += [
        kind
        for kind, asks in _ASKS.items()
        if any(getattr(args, dest) is not None for dest, _ in asks if dest != "registries")
    ]
    if len(kinds) != 1 or (kinds == ["chainguard"] and args.registries is not None):
        raise ToolError(_GIVE_ONE, exit_code=USAGE)
    return kinds[0]


def _want(spec: ProviderSpec, kind: str, args: argparse.Namespace) -> Want:
    """What the flags ask of `kind`, validated by `spec` as the Secret's annotations would be;
    raises ToolError naming the flags."""
    asks = _ASKS[kind]
    annotations = {
        key: getattr(args, dest) for dest, key in asks if getattr(args, dest) is not None
    }
    try:
        want = spec.wants(annotations)
    except BadInput as e:
        message = e.message
        for dest, key in asks:
            message = message.replace(f"annotation {key}", _flag(dest)).replace(key, _flag(dest))
        raise ToolError(message, exit_code=USAGE) from None
    assert want is not None, "a flag of the provider was given"
    return want


def check(argv: list[str]) -> int:
    parser = command_parser(
        "check",
        "Exchange the controller's service-account token once, for a Chainguard identity's "
        "registry token (--identity), an ECR role's password (--role-arn, --registries), a "
        "Google access token (--workload-identity-provider, optionally --gcp-service-account, "
        "--registries) or an ACR refresh token (--tenant-id, --client-id, --registries), "
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
        "--workload-identity-provider",
        metavar="NAME",
        help="a workload identity pool provider for Artifact Registry, "
        "projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<id> "
        "(with --registries; the gar provider must be configured in providers)",
    )
    parser.add_argument(
        "--gcp-service-account",
        metavar="EMAIL",
        help="a Google service account to impersonate (with --workload-identity-provider)",
    )
    parser.add_argument(
        "--tenant-id",
        metavar="GUID",
        help="the Entra ID tenant of an ACR identity (with --client-id and --registries; the "
        "acr provider must be configured in providers)",
    )
    parser.add_argument(
        "--client-id", metavar="GUID", help="the ACR identity's client ID (with --tenant-id)"
    )
    parser.add_argument(
        "--registries",
        metavar="HOSTS",
        help="the registry hosts, comma-separated: ECR hosts in one region (with --role-arn), "
        "Google hosts (with --workload-identity-provider), or one <name>.azurecr.io (with "
        "--tenant-id and --client-id)",
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
    kind = _asked_kind(args)
    want: Want | None = None
    identity: str | None = None
    if kind == "chainguard":
        try:
            identity = chainguard_spec.validate_identity(args.identity)
        except BadInput as e:
            message = e.message.replace(f"annotation {chainguard_spec.IDENTITY}", "--identity")
            raise ToolError(message, exit_code=USAGE) from None
        asked = identity
    else:
        want = _want(_SPECS[kind], kind, args)
        asked = want.identity
    # The settings are loaded as `run` loads them (environment, then flags), from every flag
    # but those that say what to ask for.
    only_asks = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for dest in _ASK_FLAGS:
        only_asks.add_argument(_flag(dest))
    _, setting_flags = only_asks.parse_known_args(argv)
    settings = load_settings(setting_flags, prog=f"{PROG} check")
    if want is not None:
        # The configured provider's own spec has the last word, as for a Secret: Google's
        # refuses a provider that the controller's token audience does not name.
        configured = next((s for s in settings.sections if s.spec().name == kind), None)
        if configured is not None:
            want = _want(configured.spec(), kind, args)

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
