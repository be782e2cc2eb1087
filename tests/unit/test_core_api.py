"""The core's public names are deliberate: adding or dropping one should be a visible change."""

from __future__ import annotations

import pull_secret_updater.core as core


def test_public_api_is_pinned() -> None:
    assert set(core.__all__) == {
        "ALLOW_ALL",
        "DOCKER_CONFIG_JSON",
        "Backoff",
        "BadInput",
        "Decision",
        "DockerConfig",
        "Fill",
        "FillReason",
        "Ignore",
        "Invalid",
        "InvalidToken",
        "Part",
        "Problem",
        "ProviderSpec",
        "Want",
        "Policy",
        "Reason",
        "RegistryEntry",
        "Request",
        "Schedule",
        "SecretView",
        "TokenClaims",
        "Untrusted",
        "Verdict",
        "Credential",
        "Wait",
        "cache_duration",
        "check_claims",
        "along_with",
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
    }
    assert all(hasattr(core, name) for name in core.__all__)
