"""Settings fixed at start (from the command line) and the config the admin API may change."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from devstack.tokenservice.identities import parse_lifetime
from devstack.tokenservice.protocol import (
    ERROR_CODE_STYLES,
    ErrorCodes,
    JSONObject,
    bad_request,
    unknown_fields,
)


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def url(self, port: int) -> str:
        """A URL clients can reach; wildcard binds are reached over loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@dataclass(frozen=True)
class AwsSettings:
    """The AWS stand-in's listener (see ``devstack.tokenservice.aws``)."""

    listen: HostPort
    #: moto's server, which the front forwards to.
    moto_url: str
    #: The CA that moto's serving certificate chains to (None: the system's).
    moto_ca: Path | None
    region: str = "us-east-1"
    #: The port the ECR registries listen on, which each ``proxyEndpoint`` names.
    registry_port: int | None = None


@dataclass(frozen=True)
class GcpSettings:
    """The Google stand-in's listener (see ``devstack.tokenservice.gcp``)."""

    listen: HostPort


@dataclass(frozen=True)
class AzureSettings:
    """The Azure stand-in's listener (see ``devstack.tokenservice.azure``)."""

    listen: HostPort


@dataclass(frozen=True)
class Settings:
    listen: HostPort
    registry_listen: HostPort
    admin_listen: HostPort
    tls_cert: Path
    tls_key: Path
    state_dir: Path
    issuer_url: str | None
    registry_key: Path | None
    registry_cert: Path | None
    registry_service: str
    registry_issuer: str
    registry_audience: str
    registry_token_lifetime: int
    lifetime: int
    sa_audience: str
    ca_bundle: Path | None
    admin_token: str
    admin_password: str | None
    ready_file: Path | None
    #: The AWS stand-in, when ``--aws-listen`` is given.
    aws: AwsSettings | None = None
    #: The Google stand-in, when ``--gcp-listen`` is given.
    gcp: GcpSettings | None = None
    #: The Azure stand-in, when ``--azure-listen`` is given.
    azure: AzureSettings | None = None


_CONFIG_FIELDS: Final = frozenset({"lifetime", "error_codes"})


@dataclass(frozen=True)
class RuntimeConfig:
    """What ``/admin/config`` reads and changes; not persisted (a restart starts from flags)."""

    #: Seconds an STS token lives, unless its identity has a lifetime of its own.
    lifetime: int
    #: ``string`` (``"permission_denied"``) or ``numeric`` (``7``, as grpc-gateway sends) codes
    #: in the STS listener's error bodies.
    error_codes: ErrorCodes = "string"

    def to_json(self) -> JSONObject:
        return {"lifetime": self.lifetime, "error_codes": self.error_codes}

    def updated(self, body: Mapping[str, Any]) -> RuntimeConfig:
        """This config with the fields a ``POST /admin/config`` body names changed."""
        unknown_fields(body, _CONFIG_FIELDS)
        lifetime = parse_lifetime(body) if "lifetime" in body else self.lifetime
        if lifetime is None:
            raise bad_request("lifetime must be a positive number of seconds")
        codes = body.get("error_codes", self.error_codes)
        if codes not in ERROR_CODE_STYLES:
            raise bad_request(f"error_codes must be one of {', '.join(ERROR_CODE_STYLES)}")
        return RuntimeConfig(lifetime=lifetime, error_codes=codes)
