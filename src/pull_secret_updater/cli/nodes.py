"""``credential-provider``: the pieces that install the kubelet plugin on nodes.

``credential-provider config`` prints the kubelet's CredentialProviderConfig for the plugin,
``credential-provider rbac`` the ClusterRole and binding the API server needs so that kubelets
may request tokens with the config's audience. Both are rendered from
`credentialprovider.install`; this module only turns flags into its values and prints YAML.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

import yaml

from pull_secret_updater.cli.common import PROG, UsageError
from pull_secret_updater.credentialprovider import install
from pull_secret_updater.credentialprovider.options import DEFAULT_PROVIDER
from pull_secret_updater.credentialprovider.options import PROG as PLUGIN
from pull_secret_updater.providers.chainguard import DEFAULT_ISSUER, DEFAULT_REGISTRY
from pull_secret_updater.providers.chainguard.spec import IDENTITY
from pull_secret_updater.providers.kubelet import KUBELET_PROVIDERS, kubelet_provider
from pull_secret_updater.tools.errors import USAGE, ToolError

__all__ = ["credential_provider"]

_CONFIG_HEADER = """\
# The kubelet's image credential provider config for pull-secret-updater's plugin: {what}.
# Install the plugin's executable under each name below in <bin-dir> (links to one
# executable; see the README) and start the kubelet with
#   --image-credential-provider-config=<this file>
#   --image-credential-provider-bin-dir=<bin-dir>
# Names: {names}
# The API server needs the RBAC of: {prog} credential-provider rbac {rbac}
"""

#: Options that name one provider's value; `<provider>:VALUE` says whose when several.
_PER_PROVIDER = ("name", "registry", "match_image", "audience", "endpoint")
#: Options of the Chainguard entry alone.
_CHAINGUARD = ("issuer", "identity_annotation", "node_token_file", "node_identity", "key_cache")


def credential_provider(argv: list[str]) -> int:
    parser = _Parser(
        prog=f"{PROG} credential-provider",
        description="Install the kubelet credential-provider plugin: 'config' prints the "
        "kubelet's CredentialProviderConfig, 'rbac' the RBAC the API server needs for it.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="what", required=True, parser_class=_Parser)
    config = commands.add_parser(
        "config",
        help="print the kubelet's CredentialProviderConfig",
        description="Print the kubelet's CredentialProviderConfig (kubelet.config.k8s.io/v1) "
        "for the plugin, one entry per registry provider (all of them unless --provider "
        "chooses): Pods whose ServiceAccount carries a provider's annotations pull with the "
        "credentials they name, exchanged for a token of the Pod's ServiceAccount. Values are "
        "as the node sees them (paths on the node). With several providers, an option of one "
        "provider is written <provider>:VALUE (--audience=gar:https://iam.googleapis.com/...).",
        allow_abbrev=False,
    )
    config.add_argument(
        "--provider",
        action="append",
        choices=KUBELET_PROVIDERS,
        help=f"a provider to configure (repeat; default: all: {', '.join(KUBELET_PROVIDERS)})",
    )
    config.add_argument(
        "--name",
        action="append",
        help=f"the plugin's file name in the kubelet's bin dir (default: {PLUGIN} for "
        f"chainguard, {PLUGIN}-<provider> for the others)",
    )
    config.add_argument(
        "--issuer", help=f"chainguard: the token service (default: {DEFAULT_ISSUER})"
    )
    config.add_argument(
        "--registry",
        action="append",
        help=f"the registry the tokens are for (chainguard; default: {DEFAULT_REGISTRY}), or "
        "the one registry a cloud provider's entry serves (default: any of its hosts)",
    )
    config.add_argument(
        "--match-image",
        action="append",
        metavar="PATTERN",
        help="an image pattern the kubelet calls the plugin for (repeat; default: chainguard's "
        "registry, the cloud providers' hosts: *.dkr.ecr.*.amazonaws.com, *-docker.pkg.dev, "
        "*.azurecr.io, ...)",
    )
    config.add_argument(
        "--audience",
        action="append",
        help="the audience of the ServiceAccount tokens the kubelet requests, which the "
        "identities must expect (default: the provider's: "
        + ", ".join(f"{n} {kubelet_provider(n).audience}" for n in KUBELET_PROVIDERS)
        + ")",
    )
    config.add_argument(
        "--endpoint",
        action="append",
        metavar="KEY=URL",
        help="override an endpoint of the provider (ecr: sts, ecr; gar: sts, iamcredentials; "
        "acr: authority, acr; chainguard: issuer)",
    )
    config.add_argument(
        "--identity-annotation",
        metavar="KEY",
        help=f"chainguard: the ServiceAccount annotation naming the identity (default: {IDENTITY})",
    )
    config.add_argument(
        "--ca-bundle",
        metavar="PATH",
        help="CA certificates the plugin alone trusts for the token services "
        "(a path on the node; default: the system's)",
    )
    config.add_argument(
        "--key-cache",
        metavar="DIR",
        help="chainguard: a directory on the node, writable by the kubelet's user alone, where "
        "the token service's verified keys are kept between calls (default: none)",
    )
    config.add_argument(
        "--node-token-file",
        metavar="PATH",
        help="chainguard: fallback for Pods without an annotated ServiceAccount: a token "
        "file on the node, exchanged for --node-identity",
    )
    config.add_argument(
        "--node-identity", metavar="UID", help="chainguard: the identity of the node fallback"
    )
    config.add_argument(
        "--plain",
        action="store_true",
        help="chainguard: no ServiceAccount tokens (kubelets before 1.34, or the feature "
        "gate off): only the node fallback answers",
    )
    config.add_argument(
        "--cache-margin",
        type=float,
        metavar="SECONDS",
        help="the kubelet keeps a credential until this long before it "
        "expires (default: the plugin's, 300)",
    )
    rbac = commands.add_parser(
        "rbac",
        help="print the RBAC that lets kubelets request tokens for the audiences",
        description="Print the ClusterRole and ClusterRoleBinding that let kubelets (group "
        "system:nodes) request ServiceAccount tokens with the config's audiences, as the API "
        "server's NodeRestriction admission requires for an audience the Pod does not mount. "
        "Apply them with kubectl apply -f -.",
        allow_abbrev=False,
    )
    rbac.add_argument(
        "--provider",
        action="append",
        choices=KUBELET_PROVIDERS,
        help="the providers whose default audiences are granted (repeat; default: all)",
    )
    rbac.add_argument(
        "--audience",
        action="append",
        help="an audience to grant, instead of the providers' defaults (repeat)",
    )
    rbac.add_argument(
        "--name", default=PLUGIN, help=f"the ClusterRole's and binding's name (default: {PLUGIN})"
    )
    args = parser.parse_args(argv)
    try:
        if args.what == "config":
            plans = _plans(args)
            document = install.credential_provider_config(plans)
            audiences = list(dict.fromkeys(plan.token_audience for plan in plans if
                                           plan.service_account_tokens))  # fmt: skip
            header = _CONFIG_HEADER.format(
                what=", ".join(plan.provider for plan in plans),
                names=" ".join(plan.file_name for plan in plans),
                prog=PROG,
                rbac=" ".join(f"--audience={a}" for a in audiences) or "(none: plain mode)",
            )
            print(header + _yaml(document), end="")
        else:
            providers = args.provider or list(KUBELET_PROVIDERS)
            audiences = args.audience or [kubelet_provider(p).audience for p in providers]
            objects = install.rbac_objects(audiences, name=args.name)
            print("---\n".join(_yaml(o) for o in objects), end="")
    except ValueError as e:
        raise ToolError(str(e), exit_code=USAGE) from None
    return 0


def _plans(args: argparse.Namespace) -> list[install.ProviderPlan]:
    chosen = list(dict.fromkeys(args.provider or ()))
    chainguard_only = [n for n in _CHAINGUARD if getattr(args, n) is not None]
    if args.plain:
        chainguard_only.append("plain")
    if not chosen:
        chosen = [DEFAULT_PROVIDER] if chainguard_only else list(KUBELET_PROVIDERS)
    if chainguard_only and DEFAULT_PROVIDER not in chosen:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in chainguard_only)
        raise ValueError(f"{flags}: for the chainguard provider only, which is not chosen")
    values = {option: _split(option, getattr(args, option), chosen) for option in _PER_PROVIDER}
    common: list[str] = []
    if args.ca_bundle:
        common.append(f"--ca-bundle={args.ca_bundle}")
    if args.cache_margin is not None:
        common.append(f"--cache-margin={args.cache_margin:g}")
    plans = []
    for provider in chosen:
        mine = {option: values[option].get(provider, []) for option in _PER_PROVIDER}
        for option in ("name", "registry", "audience"):
            if len(mine[option]) > 1:
                raise ValueError(f"--{option.replace('_', '-')} is given twice for {provider}")
        endpoints = []
        for item in mine["endpoint"]:
            key, equals, url = item.partition("=")
            if not equals:
                raise ValueError(f"--endpoint={item}: expected KEY=URL")
            endpoints.append((key, url))
        extra = list(common)
        chainguard: dict[str, object] = {}
        if provider == DEFAULT_PROVIDER:
            if args.key_cache:
                extra.append(f"--key-cache={args.key_cache}")
            chainguard = {
                "issuer": args.issuer or DEFAULT_ISSUER,
                "identity_annotation": args.identity_annotation or IDENTITY,
                "service_account_tokens": not args.plain,
                "node_token_file": args.node_token_file,
                "node_identity": args.node_identity,
            }
        plans.append(
            install.ProviderPlan(
                provider=provider,
                name=next(iter(mine["name"]), None),
                registry=next(iter(mine["registry"]), None),
                match_images=tuple(mine["match_image"]),
                audience=next(iter(mine["audience"]), None),
                endpoints=tuple(endpoints),
                plugin_args=tuple(extra),
                **chainguard,  # type: ignore[arg-type]
            )
        )
    return plans


def _split(option: str, given: list[str] | None, chosen: list[str]) -> dict[str, list[str]]:
    """`<provider>:VALUE` items by provider; a bare VALUE is the one chosen provider's."""
    found: dict[str, list[str]] = {}
    for item in given or ():
        prefix, colon, rest = item.partition(":")
        if colon and prefix in KUBELET_PROVIDERS:
            if prefix not in chosen:
                raise ValueError(f"--{option.replace('_', '-')}={item}: {prefix} is not chosen")
            found.setdefault(prefix, []).append(rest)
        elif len(chosen) == 1:
            found.setdefault(chosen[0], []).append(item)
        else:
            raise ValueError(
                f"--{option.replace('_', '-')}={item}: say which provider it is for "
                f"(<provider>:VALUE), or choose one with --provider"
            )
    return found


def _yaml(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
