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
from pull_secret_updater.credentialprovider.options import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_REGISTRY,
)
from pull_secret_updater.credentialprovider.options import PROG as PLUGIN
from pull_secret_updater.providers.chainguard.spec import IDENTITY
from pull_secret_updater.tools.errors import USAGE, ToolError

__all__ = ["credential_provider"]

_CONFIG_HEADER = """\
# The kubelet's image credential provider config for the plugin {name}.
# Install the plugin as <bin-dir>/{name} and start the kubelet with
#   --image-credential-provider-config=<this file>
#   --image-credential-provider-bin-dir=<bin-dir>
# The API server needs the RBAC of: {prog} credential-provider rbac --audience={audience}
"""


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
        "for the plugin: Pods whose ServiceAccount carries the identity annotation pull with "
        "that identity's tokens, exchanged for a token of the Pod's ServiceAccount. Values are "
        "as the node sees them (paths on the node).",
        allow_abbrev=False,
    )
    config.add_argument(
        "--name",
        default=PLUGIN,
        help=f"the plugin's file name in the kubelet's bin dir (default: {PLUGIN})",
    )
    config.add_argument(
        "--issuer", default=DEFAULT_ISSUER, help=f"the token service (default: {DEFAULT_ISSUER})"
    )
    config.add_argument(
        "--registry",
        default=DEFAULT_REGISTRY,
        help=f"the registry the tokens are for (default: {DEFAULT_REGISTRY})",
    )
    config.add_argument(
        "--match-image",
        action="append",
        metavar="PATTERN",
        help="an image pattern on the registry the kubelet calls the plugin for "
        "(repeat; default: the whole registry)",
    )
    _add_audience(config)
    config.add_argument(
        "--identity-annotation",
        default=IDENTITY,
        metavar="KEY",
        help=f"the ServiceAccount annotation naming the identity (default: {IDENTITY})",
    )
    config.add_argument(
        "--ca-bundle",
        metavar="PATH",
        help="CA certificates the plugin alone trusts for the token service "
        "(a path on the node; default: the system's)",
    )
    config.add_argument(
        "--node-token-file",
        metavar="PATH",
        help="fallback for Pods without an annotated ServiceAccount: a token "
        "file on the node, exchanged for --node-identity",
    )
    config.add_argument("--node-identity", metavar="UID", help="the identity of the node fallback")
    config.add_argument(
        "--plain",
        action="store_true",
        help="no ServiceAccount tokens (kubelets before 1.34, or the feature "
        "gate off): only the node fallback answers",
    )
    config.add_argument(
        "--cache-margin",
        type=float,
        metavar="SECONDS",
        help="the kubelet keeps a credential until this long before the token "
        "expires (default: the plugin's, 300)",
    )
    rbac = commands.add_parser(
        "rbac",
        help="print the RBAC that lets kubelets request tokens for the audience",
        description="Print the ClusterRole and ClusterRoleBinding that let kubelets (group "
        "system:nodes) request ServiceAccount tokens with the config's audience, as the API "
        "server's NodeRestriction admission requires for an audience the Pod does not mount. "
        "Apply them with kubectl apply -f -.",
        allow_abbrev=False,
    )
    _add_audience(rbac)
    rbac.add_argument(
        "--name", default=PLUGIN, help=f"the ClusterRole's and binding's name (default: {PLUGIN})"
    )
    args = parser.parse_args(argv)
    try:
        if args.what == "config":
            document = install.credential_provider_config([_plan(args)])
            header = _CONFIG_HEADER.format(name=args.name, prog=PROG, audience=args.audience)
            print(header + _yaml(document), end="")
        else:
            objects = install.rbac_objects(args.audience, name=args.name)
            print("---\n".join(_yaml(o) for o in objects), end="")
    except ValueError as e:
        raise ToolError(str(e), exit_code=USAGE) from None
    return 0


def _plan(args: argparse.Namespace) -> install.ProviderPlan:
    plugin_args: list[str] = []
    if args.ca_bundle:
        plugin_args.append(f"--ca-bundle={args.ca_bundle}")
    if args.cache_margin is not None:
        plugin_args.append(f"--cache-margin={args.cache_margin:g}")
    return install.ProviderPlan(
        name=args.name,
        issuer=args.issuer,
        registry=args.registry,
        match_images=tuple(args.match_image or ()),
        audience=args.audience,
        identity_annotation=args.identity_annotation,
        service_account_tokens=not args.plain,
        node_token_file=args.node_token_file,
        node_identity=args.node_identity,
        plugin_args=tuple(plugin_args),
    )


def _add_audience(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--audience",
        default=DEFAULT_AUDIENCE,
        help="the audience of the ServiceAccount tokens the kubelet requests, which the "
        f"identities must expect (default: {DEFAULT_AUDIENCE})",
    )


def _yaml(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
