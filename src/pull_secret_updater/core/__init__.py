"""The pure core: what to do with a pull Secret, decided without any I/O.

Everything here is a function of its arguments (the clock and the random source included),
so the layers that talk to Kubernetes and the token service stay thin, and the behaviour
that matters is tested here, fast and deterministically.
"""

from typing import TYPE_CHECKING

from pull_secret_updater.core.lazy import exports

if TYPE_CHECKING:
    from pull_secret_updater.core.backoff import Backoff
    from pull_secret_updater.core.claims import (
        InvalidToken,
        TokenClaims,
        check_claims,
        read_claims,
    )
    from pull_secret_updater.core.credential import Credential
    from pull_secret_updater.core.decision import (
        DOCKER_CONFIG_JSON,
        Decision,
        Fill,
        FillReason,
        Ignore,
        Invalid,
        Part,
        Problem,
        Request,
        SecretView,
        Untrusted,
        Verdict,
        Wait,
        along_with,
        decide,
        inspect,
    )
    from pull_secret_updater.core.dockerconfig import (
        DockerConfig,
        RegistryEntry,
        parse_docker_config,
        with_entries,
        with_token,
    )
    from pull_secret_updater.core.errors import BadInput, Reason
    from pull_secret_updater.core.policy import ALLOW_ALL, Policy, parse_policy
    from pull_secret_updater.core.providers import ProviderSpec, Want
    from pull_secret_updater.core.schedule import Schedule, cache_duration
    from pull_secret_updater.core.status import cleared_status, error_annotation, status_annotations

__all__ = [
    "ALLOW_ALL",
    "DOCKER_CONFIG_JSON",
    "Backoff",
    "BadInput",
    "Credential",
    "Decision",
    "DockerConfig",
    "Fill",
    "FillReason",
    "Ignore",
    "Invalid",
    "InvalidToken",
    "Part",
    "Policy",
    "Problem",
    "ProviderSpec",
    "Reason",
    "RegistryEntry",
    "Request",
    "Schedule",
    "SecretView",
    "TokenClaims",
    "Untrusted",
    "Verdict",
    "Wait",
    "Want",
    "along_with",
    "cache_duration",
    "check_claims",
    "cleared_status",
    "decide",
    "error_annotation",
    "inspect",
    "parse_docker_config",
    "parse_policy",
    "read_claims",
    "status_annotations",
    "with_entries",
    "with_token",
]

_HOMES = {
    "Backoff": "pull_secret_updater.core.backoff",
    "InvalidToken": "pull_secret_updater.core.claims",
    "TokenClaims": "pull_secret_updater.core.claims",
    "check_claims": "pull_secret_updater.core.claims",
    "read_claims": "pull_secret_updater.core.claims",
    "Credential": "pull_secret_updater.core.credential",
    "DOCKER_CONFIG_JSON": "pull_secret_updater.core.decision",
    "Decision": "pull_secret_updater.core.decision",
    "Fill": "pull_secret_updater.core.decision",
    "FillReason": "pull_secret_updater.core.decision",
    "Ignore": "pull_secret_updater.core.decision",
    "Invalid": "pull_secret_updater.core.decision",
    "Part": "pull_secret_updater.core.decision",
    "Problem": "pull_secret_updater.core.decision",
    "Request": "pull_secret_updater.core.decision",
    "SecretView": "pull_secret_updater.core.decision",
    "Untrusted": "pull_secret_updater.core.decision",
    "Verdict": "pull_secret_updater.core.decision",
    "Wait": "pull_secret_updater.core.decision",
    "along_with": "pull_secret_updater.core.decision",
    "decide": "pull_secret_updater.core.decision",
    "inspect": "pull_secret_updater.core.decision",
    "DockerConfig": "pull_secret_updater.core.dockerconfig",
    "RegistryEntry": "pull_secret_updater.core.dockerconfig",
    "parse_docker_config": "pull_secret_updater.core.dockerconfig",
    "with_entries": "pull_secret_updater.core.dockerconfig",
    "with_token": "pull_secret_updater.core.dockerconfig",
    "BadInput": "pull_secret_updater.core.errors",
    "Reason": "pull_secret_updater.core.errors",
    "ALLOW_ALL": "pull_secret_updater.core.policy",
    "Policy": "pull_secret_updater.core.policy",
    "parse_policy": "pull_secret_updater.core.policy",
    "ProviderSpec": "pull_secret_updater.core.providers",
    "Want": "pull_secret_updater.core.providers",
    "Schedule": "pull_secret_updater.core.schedule",
    "cache_duration": "pull_secret_updater.core.schedule",
    "cleared_status": "pull_secret_updater.core.status",
    "error_annotation": "pull_secret_updater.core.status",
    "status_annotations": "pull_secret_updater.core.status",
}


__getattr__ = exports(__name__, _HOMES)
