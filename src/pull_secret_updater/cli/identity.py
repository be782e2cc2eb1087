"""`identity-command`: the chainctl command that creates the identity a cluster's tokens assume.

For the controller's own ServiceAccount (the default), for one namespace's ServiceAccount
(`--for-namespace`, the namespace-scoped mode) or for a workload's ServiceAccount pulling
through the kubelet's credential provider (`--for-service-account`). The work is done in
`tools.identity`; this module turns flags into that call and prints the result.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import yaml

from pull_secret_updater.cli.common import (
    UsageError,
    add_cluster_flags,
    command_parser,
    note,
)
from pull_secret_updater.credentialprovider import install
from pull_secret_updater.credentialprovider.options import DEFAULT_AUDIENCE
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.tools import identity as identities
from pull_secret_updater.tools.discovery import fetch_issuer
from pull_secret_updater.tools.errors import FAILURE, USAGE, ToolError
from pull_secret_updater.tools.kubeconfig import open_cluster

__all__ = ["identity_command"]


def identity_command(argv: list[str]) -> int:
    parser = command_parser(
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
    add_cluster_flags(parser)
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
    note(f"recognised: {issuer_class.label}: {issuer_class.reason}; {consequence}")
    if issuer_class.kind == "public" and plan.issuer_keys is None:
        note("if the token service cannot fetch that document, run again with --embed-keys")
    if scoped:
        note(
            "namespace-scoped: each identity trusts one namespace's ServiceAccount; annotate that "
            "namespace's Secrets with its UID, and create the ServiceAccount there: "
            + "; ".join(f"kubectl create serviceaccount {sa} -n {ns}" for ns, sa in targets)
        )
    if workloads:
        note(
            "credential-provider mode: each identity trusts one ServiceAccount's tokens with "
            f"audience {token_audience}, as the kubelet requests them for its Pods; annotate "
            "that ServiceAccount with the identity's UID: "
            + "; ".join(
                f"kubectl annotate serviceaccount {sa} -n {ns} {chainguard_spec.IDENTITY}=<UID>"
                for ns, sa in targets
            )
        )
    print("\n\n".join(p.command() for p in plans), flush=True)
    warning = identities.rotation_warning(plan)
    if warning is not None:
        note(warning)
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
