"""Settings of the running controller: what it watches, leadership, serving, logging."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from pull_secret_updater.settings.checks import (
    Section,
    check_subdomain,
)

_LOG_LEVELS = ("debug", "info", "warning", "error")


class RunSettings(Section):
    """The managed names, leader election, the metrics endpoint, workers, logs."""

    secret_names: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["pull-secret"],
        description=(
            "Names of the Secrets the controller manages, in every namespace; comma-separated "
            "or a JSON list. The RBAC rules must grant the same names. Default: pull-secret."
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

    @field_validator("secret_names")
    @classmethod
    def _check_secret_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one Secret")
        for name in value:
            check_subdomain(name, what=f"{name!r} ")
        if len(set(value)) != len(value):
            raise ValueError("names a Secret more than once")
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

    @field_validator("metrics_port")
    @classmethod
    def _check_port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be a port number from 0 to 65535")
        return value

    @model_validator(mode="after")
    def _check_leader_election(self) -> Self:
        if self.leader_election and not (
            self.retry_period < self.renew_deadline < self.lease_duration
        ):
            raise ValueError(
                f"leader election needs retry_period ({self.retry_period:g}s) < renew_deadline "
                f"({self.renew_deadline:g}s) < lease_duration ({self.lease_duration:g}s)"
            )
        return self
