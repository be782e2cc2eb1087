"""`identity-command`: what creates the identity a cluster's tokens assume, for each provider.

With `--provider chainguard` (the default) the chainctl command that creates a Chainguard
identity; with `--provider ecr` the AWS CLI commands that create the cluster's IAM OIDC
provider and a role that trusts it; with `--provider gar` the gcloud commands of a workload
identity pool and its provider; with `--provider acr` the Azure CLI commands that create a
managed identity (or an app registration) with a federated credential and AcrPull. For the
controller's own ServiceAccount (the default), for one namespace's ServiceAccount
(`--for-namespace`, the namespace-scoped mode) or for a workload's ServiceAccount pulling
through the kubelet's credential provider (`--for-service-account`). The work is done in
`tools.identity`, `tools.awsrole`, `tools.gcpfederation` and `tools.azureidentity`; this
module turns flags into those calls and prints the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
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
from pull_secret_updater.providers import acr, ecr, gar
from pull_secret_updater.providers.acr import spec as acr_spec
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.providers.ecr import spec as ecr_spec
from pull_secret_updater.providers.gar import spec as gar_spec
from pull_secret_updater.tools import awsrole, azureidentity, gcpfederation
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
        "kubeadm, k3s) gets its current keys copied in. With --provider ecr, print the AWS CLI "
        "commands that create the cluster's IAM OIDC provider and a role for ECR pulls that "
        "trusts it (AWS must reach the issuer: a private one gets a warning). With --provider "
        "gar, print the gcloud commands that create a workload identity pool, its OIDC provider "
        "for the cluster's issuer (with its keys when the issuer is private) and the IAM "
        "binding that lets the ServiceAccount pull. With --provider acr, print the Azure CLI "
        "commands that create a managed identity (or app registration) whose federated "
        "credential trusts the cluster's tokens, with AcrPull on a registry (Entra must reach "
        "the issuer too). The commands go "
        "to stdout, what was recognised and any warning to stderr.",
    )
    parser.add_argument(
        "--provider",
        choices=("chainguard", ecr.NAME, gar.NAME, acr.NAME),
        default="chainguard",
        help="the registry provider: chainguard (a chainctl command), ecr (AWS CLI commands), "
        "gar (gcloud commands) or acr (Azure CLI commands) (default: chainguard)",
    )
    parser.add_argument(
        "--resource-group",
        help="with --provider acr: the managed identity's resource group (default: the "
        f"placeholder {azureidentity.RESOURCE_GROUP_PLACEHOLDER})",
    )
    parser.add_argument(
        "--registry-name",
        help="with --provider acr: the registry's name, <name>.azurecr.io (default: the "
        f"placeholder {azureidentity.REGISTRY_PLACEHOLDER})",
    )
    parser.add_argument(
        "--app-registration",
        action="store_true",
        help="with --provider acr: an app registration and its service principal instead of "
        "a user-assigned managed identity",
    )
    google = parser.add_argument_group("with --provider gar")
    google.add_argument("--project", help="the Google project's ID (default: a placeholder)")
    google.add_argument(
        "--project-number", help="the Google project's number (default: a placeholder)"
    )
    google.add_argument(
        "--pool", help="the workload identity pool's ID (default: <kind>-pull-secrets)"
    )
    google.add_argument(
        "--pool-provider",
        default="kubernetes",
        help="the pool's OIDC provider's ID (default: kubernetes)",
    )
    google.add_argument(
        "--gcp-service-account",
        metavar="EMAIL",
        help="a Google service account for the ServiceAccount to impersonate (binding "
        f"{gcpfederation.WORKLOAD_IDENTITY_USER}); without it, the principal itself gets "
        f"{gcpfederation.READER_ROLE} on --repository",
    )
    google.add_argument(
        "--repository", default="<REPOSITORY>", help="the Artifact Registry repository"
    )
    google.add_argument(
        "--location", default="<LOCATION>", help="the repository's location, e.g. europe-west4"
    )
    parser.add_argument(
        "--name", help="the identity's name (default: <kind>-pull-secrets, e.g. kind-pull-secrets)"
    )
    parser.add_argument(
        "--role-name",
        help="with --provider ecr: the IAM role's name (default: as --name's, <kind>-pull-secrets)",
    )
    parser.add_argument(
        "--account-id",
        metavar="ACCOUNT",
        help="with --provider ecr: the 12-digit AWS account of the role and the OIDC provider "
        f"(default: the placeholder {awsrole.ACCOUNT_PLACEHOLDER}, to replace before running)",
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
        f"serviceAccountTokenAudience in the kubelet's config (default: {DEFAULT_AUDIENCE}); "
        "with --provider ecr and the controller's tokens: the ECR provider's sa_audience "
        f"(default: {ecr.DEFAULT_AUDIENCE})",
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
    aws = args.provider == ecr.NAME
    google = args.provider == gar.NAME
    google_flags = ("project", "project_number", "pool", "gcp_service_account")
    if not google and any(getattr(args, flag) is not None for flag in google_flags):
        parser.error("--project, --project-number, --pool and --gcp-service-account go with "
                     "--provider gar")  # fmt: skip
    if google and (args.name is not None or args.role_name is not None):
        parser.error("with --provider gar, name the pool with --pool")
    if not workloads and args.provider_config is not None:
        parser.error("--provider-config goes with --for-service-account")
    azure = args.provider == acr.NAME
    if not workloads and not (aws or google or azure) and args.audience is not None:
        parser.error("--audience goes with --for-service-account or --provider ecr, gar or acr")
    if not azure and (args.resource_group or args.registry_name or args.app_registration):
        parser.error(
            "--resource-group, --registry-name and --app-registration go with --provider acr"
        )
    if azure and args.embed_keys:
        parser.error(
            "--embed-keys is for Chainguard identities: a federated credential cannot carry keys"
        )
    if aws and (args.name is not None or args.embed_keys):
        parser.error(
            "--name and --embed-keys are for Chainguard identities; with --provider ecr, name "
            "the role with --role-name (an IAM OIDC provider cannot carry keys)"
        )
    if not aws and (args.role_name is not None or args.account_id is not None):
        parser.error("--role-name and --account-id go with --provider ecr")
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
        if args.account_id is not None:
            awsrole.check_account_id(args.account_id)
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
    if azure:
        return _print_azure(
            args,
            issuer,
            issuer_class,
            targets,
            token_audience or args.audience or acr.DEFAULT_AUDIENCE,
            scoped=bool(scoped),
            workload=bool(workloads),
        )
    if google:
        gcp_audience = token_audience or args.audience or gar.DEFAULT_AUDIENCE
        return _print_gcp(args, issuer, issuer_class, jwks, targets, gcp_audience,
                          scoped=bool(scoped), workload=bool(workloads))  # fmt: skip
    if aws:
        aws_audience = token_audience or args.audience or ecr.DEFAULT_AUDIENCE
        return _print_aws(
            args,
            issuer,
            issuer_class,
            targets,
            aws_audience,
            scoped=bool(scoped),
            workload=bool(workloads),
        )
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


def _print_aws(
    args: argparse.Namespace,
    issuer: str,
    issuer_class: identities.IssuerClass,
    targets: list[tuple[str, str]],
    audience: str,
    *,
    scoped: bool,
    workload: bool,
) -> int:
    """The AWS CLI commands for ECR pulls to stdout, what to know about them to stderr."""
    roles = [
        (namespace, service_account, _identity_name(args.role_name, issuer_class, namespace,
         service_account, scoped=scoped, workload=workload) or issuer_class.default_name)
        for namespace, service_account in targets
    ]  # fmt: skip
    try:
        plan = awsrole.plan_aws(
            issuer=issuer, targets=roles, account=args.account_id, audience=audience
        )
    except ValueError as e:
        raise ToolError(str(e), exit_code=USAGE) from None
    warning = awsrole.private_issuer_warning(issuer, issuer_class)
    note(f"recognised: {issuer_class.label}: {issuer_class.reason}")
    note(
        "the IAM OIDC provider is one per cluster and account: if it exists already, skip its "
        "command (for another audience, add it: aws iam add-client-id-to-open-id-connect-"
        f"provider --open-id-connect-provider-arn {plan.roles[0].provider_arn} --client-id "
        f"{audience}). It has no --thumbprint-list: AWS verifies the issuer's TLS certificate "
        "against its own trusted root CAs and the list is optional; add one only if the "
        "issuer's JWKS host has a certificate from a private CA."
    )
    if args.account_id is None:
        note(
            f"replace {awsrole.ACCOUNT_PLACEHOLDER} with your AWS account ID (aws sts "
            "get-caller-identity --query Account --output text), or run again with --account-id"
        )
    note(
        f"{awsrole.READ_ONLY_POLICY.rsplit('/', 1)[1]} lets the role pull from every "
        "repository of the account (and list them); for less, instead of attach-role-policy "
        f"give it a policy of its own that allows {', '.join(awsrole.PULL_ACTIONS)} only, "
        "and narrow the second statement's Resource to your repositories' ARNs:"
    )
    policy = json.dumps(awsrole.narrower_policy(), separators=(",", ":"))
    # One line, unwrapped: a line break inside the quoted JSON would be pasted into it.
    print(
        f"  aws iam put-role-policy --role-name {shlex.quote(plan.roles[0].name)} "
        f"--policy-name ecr-pull --policy-document {shlex.quote(policy)}",
        file=sys.stderr,
    )
    host = f"{plan.roles[0].account}.dkr.ecr.<region>.amazonaws.com"
    if workload:
        note(
            f"credential-provider mode: each role trusts one ServiceAccount's tokens with "
            f"audience {audience}; annotate that ServiceAccount with its role and registries: "
            + "; ".join(
                f"kubectl annotate serviceaccount {sa} -n {ns} {ecr_spec.ROLE_ARN}={role.arn} "
                f"{ecr_spec.REGISTRIES}={host}"
                for (ns, sa, _), role in zip(roles, plan.roles, strict=True)
            )
        )
    else:
        note(
            "annotate the pull Secrets with their role and registries (the controller needs the "
            "ECR provider: the chart's providers value, or config/components/ecr): "
            + "; ".join(
                f"kubectl annotate secret pull-secret -n {ns if scoped else '<namespace>'} "
                f"{ecr_spec.ROLE_ARN}={role.arn} {ecr_spec.REGISTRIES}={host}"
                for (ns, _, _), role in zip(roles, plan.roles, strict=True)
            )
        )
    if scoped:
        note(
            "namespace-scoped: each role trusts one namespace's ServiceAccount; create it there: "
            + "; ".join(f"kubectl create serviceaccount {sa} -n {ns}" for ns, sa, _ in roles)
        )
    print(plan.script(), flush=True)
    if warning is not None:
        note(warning)
    return 0


def _print_gcp(
    args: argparse.Namespace,
    issuer: str,
    issuer_class: identities.IssuerClass,
    jwks: dict[str, object],
    targets: list[tuple[str, str]],
    audience: str,
    *,
    scoped: bool,
    workload: bool,
) -> int:
    """The gcloud commands for Artifact Registry pulls to stdout, what to know to stderr."""
    try:
        plan = gcpfederation.plan_gcp(
            issuer=issuer,
            issuer_class=issuer_class,
            jwks=jwks,
            targets=targets,
            pool=args.pool or issuer_class.default_name,
            provider=args.pool_provider,
            project=args.project,
            project_number=args.project_number,
            service_account=args.gcp_service_account,
            repository=args.repository,
            location=args.location,
            audience=audience,
            embed_keys=args.embed_keys,
        )
    except ValueError as e:
        raise ToolError(str(e), exit_code=USAGE) from None
    keys = "Google is given the cluster's keys" if plan.jwks else "Google fetches the keys"
    note(f"recognised: {issuer_class.label}: {issuer_class.reason}; {keys}")
    note(
        "the pool is one per project: if it exists already, skip its command. The provider "
        f"admits tokens with audience {audience} (the gar provider's sa_audience) and only "
        "the ServiceAccounts planned (its attribute condition)."
    )
    if args.project is None or args.project_number is None:
        note(
            f"replace {gcpfederation.PROJECT_ID_PLACEHOLDER} and "
            f"{gcpfederation.PROJECT_NUMBER_PLACEHOLDER} (gcloud projects describe <PROJECT_ID> "
            "--format='value(projectNumber)'), or run again with --project and --project-number"
        )
    host = (
        f"{args.location}-docker.pkg.dev"
        if args.location != "<LOCATION>"
        else "<LOCATION>-docker.pkg.dev"
    )
    account = f" {gar_spec.SERVICE_ACCOUNT}={plan.service_account}" if plan.service_account else ""
    annotations = (
        f"{gar_spec.WORKLOAD_IDENTITY_PROVIDER}={plan.provider_name} "
        f"{gar_spec.REGISTRIES}={host}{account}"
    )
    if workload:
        note(
            "credential-provider mode: annotate each ServiceAccount: "
            + "; ".join(
                f"kubectl annotate serviceaccount {sa} -n {ns} {annotations}" for ns, sa in targets
            )
        )
    else:
        note(
            "annotate the pull Secrets (the controller needs the gar provider: the chart's "
            "providers value): "
            + "; ".join(
                f"kubectl annotate secret pull-secret -n {ns if scoped else '<namespace>'} "
                f"{annotations}"
                for ns, _ in (targets if scoped else targets[:1])
            )
        )
    if scoped:
        note(
            "namespace-scoped: the condition admits one ServiceAccount per namespace; create "
            "them: "
            + "; ".join(f"kubectl create serviceaccount {sa} -n {ns}" for ns, sa in targets)
        )
    print(plan.script(), flush=True)
    if plan.jwks is not None:
        note(
            "the provider carries the cluster's current keys: when the cluster rotates its "
            "service-account signing key, update them (gcloud iam workload-identity-pools "
            f"providers update-oidc {plan.provider} --jwk-json-path=...), or exchanges fail"
        )
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


def _print_azure(
    args: argparse.Namespace,
    issuer: str,
    issuer_class: identities.IssuerClass,
    targets: list[tuple[str, str]],
    audience: str,
    *,
    scoped: bool,
    workload: bool,
) -> int:
    """The Azure CLI commands for ACR pulls to stdout, what to know about them to stderr: one
    identity per target (each trusting one ServiceAccount)."""
    try:
        plans = [
            azureidentity.plan_azure(
                issuer=issuer,
                name=_identity_name(
                    args.name,
                    issuer_class,
                    namespace,
                    service_account,
                    scoped=scoped,
                    workload=workload,
                )
                or issuer_class.default_name,
                targets=[(namespace, service_account)],
                resource_group=args.resource_group,
                registry=args.registry_name,
                audience=audience,
                app_registration=args.app_registration,
            )
            for namespace, service_account in targets
        ]
    except ValueError as e:
        raise ToolError(str(e), exit_code=USAGE) from None
    note(f"recognised: {issuer_class.label}: {issuer_class.reason}")
    if args.resource_group is None and not args.app_registration:
        note(f"replace {azureidentity.RESOURCE_GROUP_PLACEHOLDER} with the identity's resource "
             "group, or run again with --resource-group")  # fmt: skip
    if args.registry_name is None:
        note(f"replace {azureidentity.REGISTRY_PLACEHOLDER} with the registry's name, or run "
             "again with --registry-name")  # fmt: skip
    host = f"{plans[0].registry}.azurecr.io"
    tenant = "$(az account show --query tenantId --output tsv)"
    annotations = [
        f"{acr_spec.TENANT_ID}={tenant} "
        f'{acr_spec.CLIENT_ID}="$({plan.client_id_command()})" {acr_spec.REGISTRY}={host}'
        for plan in plans
    ]
    if workload:
        note(
            "credential-provider mode: each identity trusts one ServiceAccount's tokens with "
            f"audience {audience}; annotate that ServiceAccount with it: "
            + "; ".join(
                f"kubectl annotate serviceaccount {sa} -n {ns} {annotation}"
                for (ns, sa), annotation in zip(targets, annotations, strict=True)
            )
        )
    else:
        note(
            "annotate the pull Secrets with the tenant, the identity's client ID and the "
            "registry (the controller needs the ACR provider: its providers setting, "
            '[{"kind": "acr"}], and a projected token of audience '
            + audience
            + "): "
            + "; ".join(
                f"kubectl annotate secret pull-secret -n {ns if scoped else '<namespace>'} "
                f"{annotation}"
                for (ns, _), annotation in zip(targets, annotations, strict=True)
            )
        )
    if scoped:
        note(
            "namespace-scoped: each identity trusts one namespace's ServiceAccount; create it "
            "there: "
            + "; ".join(f"kubectl create serviceaccount {sa} -n {ns}" for ns, sa in targets)
        )
    print("\n\n".join(plan.script() for plan in plans), flush=True)
    warning = azureidentity.private_issuer_warning(issuer, issuer_class)
    if warning is not None:
        note(warning)
    return 0
