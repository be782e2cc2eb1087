"""The plugin's options: the ``args`` of its entry in the kubelet's CredentialProviderConfig.

One executable serves every provider: ``--provider`` says which this entry is (Chainguard by
default, as before there were several), ``--endpoint=<key>=<url>`` overrides one of that
provider's endpoints (`providers.kubelet.Endpoint`), ``--audience`` is the audience of the
ServiceAccount tokens the kubelet requests for it (the config's ``tokenAttributes``).

The kubelet starts the plugin with the arguments the config gives (and its own environment),
so everything the plugin needs is a flag, and the generator (`config`) writes the same flags.
No environment variable is read: what a node's kubelet happens to have in its environment
must not change which token service gets the Pods' tokens.

Pure: argv in, `Options` out; a mistake raises `UsageError` with one line.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.schedule import DEFAULT_CACHE_MARGIN, DEFAULT_MAX_INTERVAL
from pull_secret_updater.providers.chainguard import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DEFAULT_REGISTRY,
)
from pull_secret_updater.providers.chainguard.spec import IDENTITY, validate_identity
from pull_secret_updater.providers.kubelet import KUBELET_PROVIDERS, kubelet_provider

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_DEADLINE",
    "DEFAULT_ISSUER",
    "DEFAULT_PROVIDER",
    "DEFAULT_REGISTRY",
    "PROG",
    "Options",
    "UsageError",
    "build_parser",
    "parse_options",
]

#: The executable's name, and so the provider's name in the kubelet's config.
PROG = "pull-secret-updater-credential-provider"
#: The provider an entry without ``--provider`` serves.
DEFAULT_PROVIDER = "chainguard"

DEFAULT_TIMEOUT = 10.0
#: The kubelet kills a plugin after one minute; answer (or fail with a reason) before that.
DEFAULT_DEADLINE = 45.0
DEFAULT_MIN_LIFETIME = 30.0


class UsageError(Exception):
    """The plugin was configured wrongly; the message is one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What the plugin does; see `build_parser` for each option's meaning and default."""

    provider: str = DEFAULT_PROVIDER
    issuer: str = DEFAULT_ISSUER
    registry: str | None = DEFAULT_REGISTRY
    audience: str = DEFAULT_AUDIENCE
    endpoints: tuple[tuple[str, str], ...] = ()
    key_cache: Path | None = None
    ca_bundle: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    min_lifetime: float = DEFAULT_MIN_LIFETIME
    cache_margin: float = DEFAULT_CACHE_MARGIN
    max_cache: float = DEFAULT_MAX_INTERVAL
    identity_annotation: str = IDENTITY
    node_token_file: Path | None = None
    node_identity: str | None = None

    @property
    def node_fallback(self) -> bool:
        """Whether a request without a workload identity uses the node's token and identity."""
        return self.node_token_file is not None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "A kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1) for "
            "Chainguard, Amazon ECR, Google Artifact Registry and Azure Container Registry, one "
            "provider per entry of the kubelet's config (--provider). Reads a "
            "CredentialProviderRequest on stdin, exchanges the Pod's ServiceAccount token at the "
            "provider's token service for what the ServiceAccount's annotations name (Chainguard's "
            "tokens verified against its published keys), and writes a "
            "CredentialProviderResponse on stdout. Errors are one line on stderr and a non-zero "
            "exit (2: the request or the options, 1: the exchange)."
        ),
        allow_abbrev=False,
    )
    add = parser.add_argument
    add(
        "--provider",
        choices=KUBELET_PROVIDERS,
        default=DEFAULT_PROVIDER,
        help="the registry provider this entry of the kubelet's config serves "
        f"(default: {DEFAULT_PROVIDER})",
    )
    add(
        "--issuer",
        default=DEFAULT_ISSUER,
        help=f"chainguard: base URL of the token service (https; default: {DEFAULT_ISSUER})",
    )
    add(
        "--registry",
        help="the one registry host served: chainguard's tokens are for it (their aud; "
        f"default: {DEFAULT_REGISTRY}); for the others, images of any other host are refused "
        "(default: any host of the provider)",
    )
    add(
        "--audience",
        help="the audience of the ServiceAccount tokens the config asks the kubelet for "
        "(default: the provider's: issuer.enforce.dev, sts.amazonaws.com, "
        "sts.googleapis.com, api://AzureADTokenExchange)",
    )
    add(
        "--endpoint",
        action="append",
        default=[],
        metavar="KEY=URL",
        help="override one of the provider's endpoints (https): ecr: sts, ecr; gar: sts, "
        "iamcredentials; acr: authority, acr; chainguard: issuer (repeat)",
    )
    add(
        "--key-cache",
        type=Path,
        metavar="DIR",
        help="chainguard: a directory, writable by the kubelet's user alone, where the token "
        "service's verified keys are kept between calls (default: fetched at every call)",
    )
    add(
        "--ca-bundle",
        type=Path,
        metavar="PATH",
        help="PEM file of the CA certificates that alone are trusted for the token service "
        "(default: the system's trust store)",
    )
    add(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"connect and read timeout of each request (default: {DEFAULT_TIMEOUT:g})",
    )
    add(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        metavar="SECONDS",
        help="the whole call's time limit; the kubelet kills a plugin after 60 "
        f"(default: {DEFAULT_DEADLINE:g})",
    )
    add(
        "--min-lifetime",
        type=float,
        default=DEFAULT_MIN_LIFETIME,
        metavar="SECONDS",
        help=f"refuse a token that expires sooner than this (default: {DEFAULT_MIN_LIFETIME:g})",
    )
    add(
        "--cache-margin",
        type=float,
        default=DEFAULT_CACHE_MARGIN,
        metavar="SECONDS",
        help="the kubelet keeps the credential until this long before the token expires "
        f"(default: {DEFAULT_CACHE_MARGIN:g})",
    )
    add(
        "--max-cache",
        type=float,
        default=DEFAULT_MAX_INTERVAL,
        metavar="SECONDS",
        help="and never longer than this after the token was issued "
        f"(default: {DEFAULT_MAX_INTERVAL:g})",
    )
    add(
        "--identity-annotation",
        default=IDENTITY,
        metavar="KEY",
        help="the ServiceAccount annotation that names the identity; the config must pass it "
        f"(tokenAttributes) (default: {IDENTITY})",
    )
    add(
        "--node-token-file",
        type=Path,
        metavar="PATH",
        help="fallback for requests without a workload identity (no ServiceAccount token, or "
        "one without the annotation): exchange the token in this file, re-read at each call, "
        "for --node-identity (default: no fallback; such requests fail)",
    )
    add(
        "--node-identity",
        metavar="UID",
        help="the identity the node's token is exchanged for (with --node-token-file)",
    )
    return parser


def node_fallback_problem(
    token_file: object | None, identity: str | None, *, unpaired: str, identity_name: str
) -> str | None:
    """What is wrong with a node fallback (a token file and its identity), or None.

    `unpaired` is the message for one without the other; `identity_name` names the identity
    in the message about a malformed one (a flag, or a config field).
    """
    if (token_file is None) != (identity is None):
        return unpaired
    if identity is not None:
        try:
            validate_identity(identity)
        except BadInput as e:
            return e.message.replace(f"annotation {IDENTITY}", identity_name)
    return None


def parse_options(argv: Sequence[str]) -> Options:
    """The options from the plugin's arguments; raises UsageError."""
    args = build_parser().parse_args(list(argv))
    described = kubelet_provider(args.provider)
    endpoints: dict[str, str] = {}
    for item in args.endpoint:
        key, _, url = str(item).partition("=")
        if described.endpoint(key) is None:
            known = ", ".join(e.key for e in described.endpoints)
            raise UsageError(f"--endpoint: {args.provider} has no endpoint {key!r} ({known})")
        endpoints[key] = _https(url, f"--endpoint={key}")
    issuer = _https(endpoints.pop("issuer", args.issuer), "--issuer")
    if args.provider != DEFAULT_PROVIDER:
        for flag, value in (("--issuer", args.issuer != DEFAULT_ISSUER),
                            ("--key-cache", args.key_cache is not None),
                            ("--identity-annotation", args.identity_annotation != IDENTITY),
                            ("--node-token-file", args.node_token_file is not None)):  # fmt: skip
            if value:
                raise UsageError(f"{flag} is for the chainguard provider only")
    registry = described.registry if args.registry is None else str(args.registry).strip()
    if registry is not None and (
        not registry or "/" in registry or any(c.isspace() for c in registry)
    ):
        raise UsageError("--registry must be a registry host (and port), such as cgr.dev")
    audience = described.audience if args.audience is None else str(args.audience)
    if not audience.strip() or any(c.isspace() for c in audience):
        raise UsageError("--audience must be a non-empty audience without spaces")
    for name in ("timeout", "deadline", "max_cache"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a number of seconds > 0")
    for name in ("min_lifetime", "cache_margin"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a number of seconds >= 0")
    if not args.identity_annotation or any(c.isspace() for c in args.identity_annotation):
        raise UsageError("--identity-annotation must be an annotation key")
    problem = node_fallback_problem(
        args.node_token_file,
        args.node_identity,
        unpaired="--node-token-file and --node-identity go together",
        identity_name="--node-identity",
    )
    if problem is not None:
        raise UsageError(problem)
    return Options(
        provider=args.provider,
        issuer=issuer,
        registry=registry,
        audience=audience,
        endpoints=tuple(sorted(endpoints.items())),
        key_cache=args.key_cache,
        ca_bundle=args.ca_bundle,
        timeout=args.timeout,
        deadline=args.deadline,
        min_lifetime=args.min_lifetime,
        cache_margin=args.cache_margin,
        max_cache=args.max_cache,
        identity_annotation=args.identity_annotation,
        node_token_file=args.node_token_file,
        node_identity=args.node_identity,
    )


def _https(value: str, flag: str) -> str:
    url = str(value).strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    if not url.startswith("https://") or any(c.isspace() for c in url):
        raise UsageError(f"{flag} must be an https:// URL; the exchange is never sent in clear")
    return url
