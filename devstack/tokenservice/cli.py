"""``python -m devstack.tokenservice serve ...``: flags, start-up and the run until a signal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import ssl
import sys
from pathlib import Path

import aiohttp

from devstack.tokenservice.identities import IdentityStore
from devstack.tokenservice.keys import StsKeys, registry_signing
from devstack.tokenservice.oidc import IssuerKeys
from devstack.tokenservice.server import TokenService
from devstack.tokenservice.settings import (
    AwsSettings,
    AzureSettings,
    GcpSettings,
    HostPort,
    RuntimeConfig,
    Settings,
)
from devstack.tokenservice.state import ServiceState

log = logging.getLogger("devstack.tokenservice")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.tokenservice",
        description="A local STS and registry token endpoint for the development stack.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the token service until SIGTERM or SIGINT")
    addr = HostPort.parse
    serve.add_argument(
        "--listen",
        type=addr,
        default=HostPort("127.0.0.1", 0),
        help="STS listener HOST:PORT (port 0: any free port)",
    )
    serve.add_argument(
        "--registry-listen",
        type=addr,
        default=HostPort("127.0.0.1", 0),
        help="registry token endpoint listener HOST:PORT",
    )
    serve.add_argument(
        "--admin-listen",
        type=addr,
        default=HostPort("127.0.0.1", 0),
        help="admin API listener HOST:PORT",
    )
    serve.add_argument("--tls-cert", type=Path, required=True, help="serving cert (PEM)")
    serve.add_argument("--tls-key", type=Path, required=True, help="serving key (PEM)")
    serve.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="identities and signing keys; created if missing",
    )
    serve.add_argument("--issuer-url", help="own issuer URL (default: the STS listener's URL)")
    serve.add_argument(
        "--registry-key",
        type=Path,
        help="key signing registry tokens (default: generated in the state dir)",
    )
    serve.add_argument(
        "--registry-cert",
        type=Path,
        help="cert of --registry-key, the registry's auth.token.rootcertbundle",
    )
    serve.add_argument(
        "--registry-service",
        default="cgr.dev",
        help="the registry's auth.token.service (default: %(default)s)",
    )
    serve.add_argument(
        "--registry-issuer",
        default="devstack-tokenservice",
        help="the registry's auth.token.issuer (default: %(default)s)",
    )
    serve.add_argument(
        "--registry-audience",
        help="aud an STS token needs at the registry (default: --registry-service)",
    )
    serve.add_argument(
        "--registry-token-lifetime",
        type=int,
        default=300,
        help="seconds a registry token lives at most (default: %(default)s)",
    )
    serve.add_argument(
        "--lifetime",
        type=int,
        default=3600,
        help="seconds an STS token lives (default: %(default)s)",
    )
    serve.add_argument(
        "--sa-audience",
        default="issuer.enforce.dev",
        help="SA token audience for identities without one (default: %(default)s)",
    )
    serve.add_argument("--ca-bundle", type=Path, help="CA to trust for OIDC discovery")
    serve.add_argument("--admin-token", help="admin bearer token (default: random)")
    serve.add_argument(
        "--admin-password",
        help="password of registry user 'admin', who may push (default: disabled)",
    )
    aws = serve.add_argument_group("AWS stand-in (STS and ECR in front of moto's server)")
    aws.add_argument("--aws-listen", type=addr, help="its listener HOST:PORT (default: none)")
    aws.add_argument("--aws-moto-url", help="moto's server, e.g. https://127.0.0.1:PORT")
    aws.add_argument("--aws-moto-ca", type=Path, help="CA of moto's serving certificate")
    aws.add_argument("--aws-region", default="us-east-1", help="default: %(default)s")
    aws.add_argument(
        "--aws-registry-port", type=int, help="port of the ECR registries (in proxyEndpoint)"
    )
    gcp = serve.add_argument_group("Google stand-in (STS and IAM Credentials)")
    gcp.add_argument("--gcp-listen", type=addr, help="its listener HOST:PORT (default: none)")
    azure = serve.add_argument_group("Azure stand-in (Entra ID and ACR's OAuth endpoints)")
    azure.add_argument("--azure-listen", type=addr, help="its listener HOST:PORT (default: none)")
    serve.add_argument("--ready-file", type=Path, help="where to write ReadyInfo JSON")
    serve.add_argument("--log-level", default="INFO")
    return parser


def _resolve_registry_key(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    if (args.registry_key is None) != (args.registry_cert is None):
        raise SystemExit("--registry-key and --registry-cert go together")
    return args.registry_key, args.registry_cert


def _aws_settings(args: argparse.Namespace) -> AwsSettings | None:
    if args.aws_listen is None:
        return None
    if not args.aws_moto_url:
        raise SystemExit("--aws-listen needs --aws-moto-url")
    return AwsSettings(
        listen=args.aws_listen,
        moto_url=args.aws_moto_url,
        moto_ca=args.aws_moto_ca,
        region=args.aws_region,
        registry_port=args.aws_registry_port,
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    registry_key, registry_cert = _resolve_registry_key(args)
    return Settings(
        listen=args.listen,
        registry_listen=args.registry_listen,
        admin_listen=args.admin_listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        state_dir=args.state_dir,
        issuer_url=args.issuer_url.rstrip("/") if args.issuer_url else None,
        registry_key=registry_key,
        registry_cert=registry_cert,
        registry_service=args.registry_service,
        registry_issuer=args.registry_issuer,
        registry_audience=args.registry_audience or args.registry_service,
        registry_token_lifetime=args.registry_token_lifetime,
        lifetime=args.lifetime,
        sa_audience=args.sa_audience,
        ca_bundle=args.ca_bundle,
        admin_token=args.admin_token or secrets.token_urlsafe(32),
        admin_password=args.admin_password,
        ready_file=args.ready_file,
        aws=_aws_settings(args),
        gcp=GcpSettings(listen=args.gcp_listen) if args.gcp_listen is not None else None,
        azure=AzureSettings(listen=args.azure_listen) if args.azure_listen else None,
    )


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    registry_key, registry_cert = registry_signing(
        settings.state_dir, settings.registry_key, settings.registry_cert
    )
    discovery_tls = ssl.create_default_context(
        cafile=str(settings.ca_bundle) if settings.ca_bundle else None
    )
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(ssl=discovery_tls)
    ) as session:
        state = ServiceState(
            settings=settings,
            store=IdentityStore(settings.state_dir / "identities.json"),
            sts_keys=StsKeys(settings.state_dir),
            registry_key=registry_key,
            registry_cert=registry_cert,
            issuer_keys=IssuerKeys(session),
            config=RuntimeConfig(lifetime=settings.lifetime),
            issuer_url=settings.issuer_url or "",
        )
        service = TokenService(state)
        try:
            await service.start()
            ready = service.ready_info()
            if settings.ready_file is not None:
                ready.write(settings.ready_file)
            log.info(
                "serving STS at %s, registry realm %s, admin at %s",
                ready.sts_url,
                ready.registry_realm,
                ready.admin_url,
            )
            await _until_signalled()
        finally:
            await service.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(settings_from_args(args)))
    return 0
