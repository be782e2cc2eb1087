"""The core's public names are deliberate: adding or dropping one should be a visible change."""

from __future__ import annotations

import pull_secret_updater.core as core


def test_public_api_is_pinned() -> None:
    assert set(core.__all__) == {
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
    }
    assert all(hasattr(core, name) for name in core.__all__)
