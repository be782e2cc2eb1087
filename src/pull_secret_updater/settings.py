"""Every setting of the controller, in one place.

Each field is read from the environment (`PSU_<NAME>`, e.g. `PSU_SECRET_NAMES`) and from a
command-line flag (`--<name>` with dashes, e.g. `--secret-names`); a flag wins over the
environment, which wins over the default. The field descriptions are the documentation:
`--help` prints them and the README's table is rendered from them (both in `cli`), so a
description says what the setting does and what its default is.

This module is the model alone: the fields, what each may hold and which must agree. Turning
flags into settings (`cli.flags.load_settings`) and settings into Markdown (`cli.reference`)
is the command line's business.

Values are checked as a whole when loaded, and a bad one stops the controller at start with a
one-line `SettingsError` naming the flag and the variable, rather than failing at the first
refresh an hour later.

NB: longer than our other modules because every field carries its own documentation; the
model is one noun, and splitting it would scatter the reference it renders.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pull_secret_updater.core import backoff as _backoff
from pull_secret_updater.core import schedule as _schedule
from pull_secret_updater.core.backoff import Backoff
from pull_secret_updater.core.names import is_dns_label, is_dns_subdomain
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.providers import chainguard
from pull_secret_updater.providers.base import ProviderSection
from pull_secret_updater.providers.hosts import check_https_url, check_registry_host
from pull_secret_updater.providers.table import SECTIONS, ChainguardSection, parse_section

ENV_PREFIX = "PSU_"

_LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(Exception):
    """A setting has a value the controller cannot run with; the message is one line."""


class Settings(BaseSettings):
    """The controller's configuration. Immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    issuer: str = Field(
        default=chainguard.DEFAULT_ISSUER,
        description=(
            "Base URL of the security token service that exchanges the controller's "
            "service-account token for registry tokens (POST <issuer>/sts/exchange). Must be "
            "https; a bare host is taken as https://<host>. Default: https://issuer.enforce.dev."
        ),
    )
    registry: str = Field(
        default=chainguard.DEFAULT_REGISTRY,
        description=(
            "Registry host the tokens are for: sent as the exchange's aud parameter and used "
            "as the key of the entry written under auths in each Secret. Default: cgr.dev."
        ),
    )
    providers: Annotated[list[ProviderSection], NoDecode] = Field(
        default_factory=list,
        description=(
            "Registry providers besides the default one, as a JSON list of sections, each "
            f"with a kind ({', '.join(sorted(SECTIONS))}) and that provider's fields, e.g. "
            '[{"kind": "fake", "registry": "registry.example"}]. The flat settings issuer, '
            "registry, sa_audience, token_path and ca_bundle are the chainguard entry unless "
            "the list has one. One entry per kind. "
            "Default: none (Chainguard alone)."
        ),
    )
    secret_names: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["pull-secret"],
        description=(
            "Names of the Secrets the controller manages, in every namespace; comma-separated "
            "or a JSON list. The RBAC rules must grant the same names. Default: pull-secret."
        ),
    )
    token_path: Path = Field(
        default=Path(chainguard.DEFAULT_TOKEN_PATH),
        description=(
            "File holding the controller's projected service-account token (used when "
            "token_source is file); re-read at every exchange. "
            "Default: /var/run/chainguard/oidc/oidc-token."
        ),
    )
    token_source: Literal["file", "tokenrequest"] = Field(
        default="file",
        description=(
            "Where the controller's own service-account token comes from: file (a projected "
            "volume at token_path) or tokenrequest (the TokenRequest API, for running outside "
            "a pod; needs create on serviceaccounts/token). Default: file."
        ),
    )
    sa_audience: str = Field(
        default=chainguard.DEFAULT_AUDIENCE,
        description=(
            "Audience requested for the service-account token when token_source is "
            "tokenrequest; the identity must trust this audience. Default: issuer.enforce.dev."
        ),
    )
    ca_bundle: Path | None = Field(
        default=None,
        description=(
            "PEM file of CA certificates to verify the token service with, instead of the "
            "system trust store. TLS is always verified. Default: none (system trust store)."
        ),
    )
    exchange_timeout: float = Field(
        default=10.0,
        description=(
            "Seconds allowed to connect to the token service and to read its answer, each; "
            "a whole exchange gets twice that. Default: 10."
        ),
    )
    refresh_fraction: float = Field(
        default=_schedule.DEFAULT_FRACTION,
        description=(
            "Share of a token's lifetime (from its iat and exp claims) after which it is "
            "refreshed; between 0 and 1. Default: 0.66."
        ),
    )
    refresh_jitter: float = Field(
        default=_schedule.DEFAULT_JITTER,
        description=(
            "Random spread added to refresh_fraction, as a share of the lifetime (+/-), so "
            "Secrets filled together are not refreshed together. Default: 0.1."
        ),
    )
    refresh_margin: float = Field(
        default=_schedule.DEFAULT_MARGIN,
        description=(
            "A token is refreshed at the latest this many seconds before it expires, whatever "
            "the fraction says. Default: 60."
        ),
    )
    max_refresh_interval: float = Field(
        default=_schedule.DEFAULT_MAX_INTERVAL,
        description=(
            "A token is refreshed at the latest this many seconds after it was issued, however "
            "far away its expiry is, so a deleted identity or a changed policy is noticed "
            "within that time. Default: 14400 (4 hours)."
        ),
    )
    min_token_lifetime: float = Field(
        default=30.0,
        description=(
            "A newly issued token that expires within this many seconds is refused as unusable "
            "and the exchange is retried. Default: 30."
        ),
    )
    backoff_base: float = Field(
        default=_backoff.DEFAULT_BASE,
        description=(
            "Seconds to wait before the first retry of a failed refresh; doubles at each "
            "further failure (failures that waiting will not fix start slower). A failed "
            "exchange is also shared this long by all Secrets of its identity. Default: 1."
        ),
    )
    backoff_cap: float = Field(
        default=_backoff.DEFAULT_CAP,
        description=(
            "Longest wait, in seconds, between retries of a failed refresh; while the token in "
            "place is valid, a retry that waiting can help waits at most half of its remaining "
            "lifetime (or backoff_base), unless the token service asks for longer. Default: 300."
        ),
    )
    token_subject: Literal["controller", "namespace"] = Field(
        default="controller",
        description=(
            "Whose service-account token is exchanged for a Secret's token: controller (the "
            "controller's own; every identity trusts system:serviceaccount:<namespace>:"
            "<service_account>, so a policy must say which namespace may use which identity) "
            "or namespace (a token of the ServiceAccount namespace_service_account in the "
            "Secret's own namespace, requested with TokenRequest; each identity trusts one "
            "namespace, and the token service itself refuses the others). Default: controller."
        ),
    )
    namespace_service_account: str = Field(
        default="pull-secret-updater",
        description=(
            "With token_subject namespace: the ServiceAccount, in each Secret's namespace, whose "
            "token is exchanged; the RBAC grants create on serviceaccounts/token for this name "
            "only. Default: pull-secret-updater."
        ),
    )
    policy_file: Path | None = Field(
        default=None,
        description=(
            "YAML file saying which identities may be used in which namespaces. With "
            "token_subject controller, one is required unless allow_any_identity is set. "
            "Default: none."
        ),
    )
    allow_any_identity: bool = Field(
        default=False,
        description=(
            "With token_subject controller and no policy_file: let any namespace use any "
            "identity that trusts the controller (anyone who can create a Secret with a managed "
            "name can then obtain those tokens). Without it, the controller refuses to start "
            "until a policy is chosen. Default: false."
        ),
    )
    namespace: str = Field(
        default="pull-secret-updater",
        validation_alias=AliasChoices("PSU_NAMESPACE", "POD_NAMESPACE"),
        description=(
            "The controller's own namespace, where its Lease lives and its ServiceAccount is "
            "(for token_source tokenrequest). Also read from POD_NAMESPACE. "
            "Default: pull-secret-updater."
        ),
    )
    service_account: str = Field(
        default="controller",
        description=(
            "The controller's own ServiceAccount, whose token is exchanged when token_source "
            "is tokenrequest. Default: controller."
        ),
    )
    leader_election: bool = Field(
        default=True,
        description=(
            "Whether replicas elect a leader with a Lease, so only one writes Secrets. "
            "Default: true."
        ),
    )
    lease_name: str = Field(
        default="pull-secret-updater",
        description="Name of the Lease used for leader election. Default: pull-secret-updater.",
    )
    lease_duration: float = Field(
        default=15.0,
        description=(
            "Seconds a leader's Lease stays valid without renewal before another replica may "
            "take over. Default: 15."
        ),
    )
    renew_deadline: float = Field(
        default=10.0,
        description=(
            "Seconds the leader keeps trying to renew its Lease before it stops leading; less "
            "than lease_duration. Default: 10."
        ),
    )
    retry_period: float = Field(
        default=2.0,
        description=(
            "Seconds between attempts to acquire or renew the Lease; less than renew_deadline. "
            "Default: 2."
        ),
    )
    pod_name: str = Field(
        default_factory=socket.gethostname,
        validation_alias=AliasChoices("PSU_POD_NAME", "POD_NAME"),
        description=(
            "This replica's name, recorded as the Lease holder. Also read from POD_NAME. "
            "Default: the host name."
        ),
    )
    metrics_port: int = Field(
        default=8080,
        description=(
            "Port serving /metrics (Prometheus), /healthz and /readyz; 0 picks a free port. "
            "Default: 8080."
        ),
    )
    metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a pod is scraped and probed on its pod IP
        description=("Address the metrics and health endpoints listen on. Default: 0.0.0.0 (all)."),
    )
    workers: int = Field(
        default=4,
        description="How many Secrets are reconciled concurrently. Default: 4.",
    )
    watch_timeout: int = Field(
        default=60,
        description=(
            "Seconds after which the API server ends a watch and the controller resumes it, "
            "so a silently broken connection is noticed. Default: 60."
        ),
    )
    log_level: str = Field(
        default="info",
        description="Least severe log level written: debug, info, warning or error. Default: info.",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description=(
            "Kubeconfig file to reach the API server with. Default: none (in-cluster "
            "configuration, else KUBECONFIG, else ~/.kube/config)."
        ),
    )

    # -- one field at a time -----------------------------------------------------------------

    @field_validator("secret_names", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("is neither a JSON list nor comma-separated names") from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("providers", mode="before")
    @classmethod
    def _parse_providers(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("is not a JSON list of provider sections") from None
        if not isinstance(value, list):
            raise ValueError("must be a list of provider sections")
        return [parse_section(item) for item in value]

    @field_validator("ca_bundle", "policy_file", "kubeconfig", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        return check_https_url(value, example=chainguard.DEFAULT_ISSUER)

    @field_validator("registry")
    @classmethod
    def _check_registry(cls, value: str) -> str:
        return check_registry_host(value)

    @field_validator("secret_names")
    @classmethod
    def _check_secret_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one Secret")
        for name in value:
            _check_subdomain(name, what=f"{name!r} ")
        if len(set(value)) != len(value):
            raise ValueError("names a Secret more than once")
        return value

    @field_validator("service_account", "lease_name", "namespace_service_account")
    @classmethod
    def _check_subdomain_name(cls, value: str) -> str:
        _check_subdomain(value)
        return value

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not is_dns_label(value):
            raise ValueError(
                "is not a valid namespace name (lower-case letters, digits and '-', "
                "at most 63 characters, starting and ending with a letter or digit)"
            )
        return value

    @field_validator("sa_audience", "pod_name")
    @classmethod
    def _check_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    # NB: the same bounds as core.schedule.Schedule, which owns them; checked here per field
    # too, so that the message names the one flag and variable at fault.
    @field_validator("refresh_fraction")
    @classmethod
    def _check_fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("must be between 0 and 1 (exclusive)")
        return value

    @field_validator("refresh_jitter")
    @classmethod
    def _check_jitter(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError("must be at least 0 and less than 1")
        return value

    @field_validator(
        "exchange_timeout",
        "max_refresh_interval",
        "backoff_base",
        "backoff_cap",
        "lease_duration",
        "renew_deadline",
        "retry_period",
    )
    @classmethod
    def _check_positive(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must be a number of seconds greater than 0")
        return value

    @field_validator("refresh_margin", "min_token_lifetime")
    @classmethod
    def _check_non_negative(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError("must be a number of seconds, 0 or more")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _check_port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be a port number from 0 to 65535")
        return value

    @field_validator("workers", "watch_timeout")
    @classmethod
    def _check_at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    # -- the core's values, built from the fields ------------------------------------------

    @property
    def schedule(self) -> Schedule:
        """The refresh rule these settings describe."""
        return Schedule(
            fraction=self.refresh_fraction,
            jitter=self.refresh_jitter,
            margin=self.refresh_margin,
            max_interval=self.max_refresh_interval,
        )

    @property
    def backoff(self) -> Backoff:
        """The retry delays these settings describe."""
        return Backoff(base=self.backoff_base, cap=self.backoff_cap)

    @property
    def sections(self) -> tuple[ProviderSection, ...]:
        """Every provider's section: the default one from the flat settings unless `providers`
        has an entry of its kind, then the entries of `providers`."""
        listed = tuple(self.providers)
        if any(isinstance(section, ChainguardSection) for section in listed):
            return listed
        default = ChainguardSection(
            issuer=self.issuer,
            registry=self.registry,
            sa_audience=self.sa_audience,
            token_path=self.token_path,
            ca_bundle=self.ca_bundle,
        )
        return (default, *listed)

    # -- fields that must agree -----------------------------------------------------------

    @model_validator(mode="after")
    def _check_together(self) -> Self:
        # NB: the core's Schedule and Backoff own these rules; asking them is the check.
        try:
            _ = self.schedule
        except ValueError as e:
            raise ValueError(
                f"refresh settings (refresh_fraction, refresh_jitter, refresh_margin, "
                f"max_refresh_interval): {e}"
            ) from None
        try:
            _ = self.backoff
        except ValueError as e:
            raise ValueError(f"backoff settings (backoff_base, backoff_cap): {e}") from None
        kinds = [section.spec().name for section in self.sections]
        if len(set(kinds)) != len(kinds):
            raise ValueError("providers: one entry per kind")
        if self.refresh_margin < self.exchange_timeout:
            raise ValueError(
                f"refresh_margin ({self.refresh_margin:g}s) must be at least exchange_timeout "
                f"({self.exchange_timeout:g}s): a refresh started at the margin must be able to "
                "finish before the token expires"
            )
        if self.leader_election and not (
            self.retry_period < self.renew_deadline < self.lease_duration
        ):
            raise ValueError(
                f"leader election needs retry_period ({self.retry_period:g}s) < renew_deadline "
                f"({self.renew_deadline:g}s) < lease_duration ({self.lease_duration:g}s)"
            )
        return self


def _check_subdomain(value: str, *, what: str = "") -> None:
    if not is_dns_subdomain(value):
        raise ValueError(
            f"{what}is not a valid Kubernetes name (lower-case letters, digits, '-' and '.', "
            "at most 253 characters, starting and ending with a letter or digit)"
        )
