"""The pure core: what to do with a pull Secret, decided without any I/O.

Everything here is a function of its arguments (the clock and the random source included),
so the layers that talk to Kubernetes and the token service stay thin, and the behaviour
that matters is tested here, fast and deterministically.
"""

from pull_secret_updater.core.claims import InvalidToken, TokenClaims, check_fresh, read_claims
from pull_secret_updater.core.decision import (
    DOCKER_CONFIG_JSON,
    Decision,
    Fill,
    FillReason,
    Ignore,
    Invalid,
    SecretView,
    Wait,
    decide,
    error_annotation,
    status_annotations,
)
from pull_secret_updater.core.dockerconfig import (
    DockerConfig,
    RegistryEntry,
    parse_docker_config,
    with_token,
)
from pull_secret_updater.core.errors import BadInput, Reason
from pull_secret_updater.core.policy import Policy, parse_policy
from pull_secret_updater.core.timing import Schedule, backoff, refresh_at

__all__ = [
    "DOCKER_CONFIG_JSON",
    "BadInput",
    "Decision",
    "DockerConfig",
    "Fill",
    "FillReason",
    "Ignore",
    "Invalid",
    "InvalidToken",
    "Policy",
    "Reason",
    "RegistryEntry",
    "Schedule",
    "SecretView",
    "TokenClaims",
    "Wait",
    "backoff",
    "check_fresh",
    "decide",
    "error_annotation",
    "parse_docker_config",
    "parse_policy",
    "read_claims",
    "refresh_at",
    "status_annotations",
    "with_token",
]
