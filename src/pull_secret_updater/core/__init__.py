"""The pure core: what to do with a pull Secret, decided without any I/O.

Everything here is a function of its arguments (the clock and the random source included),
so the layers that talk to Kubernetes and the token service stay thin, and the behaviour
that matters is tested here, fast and deterministically.
"""

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
