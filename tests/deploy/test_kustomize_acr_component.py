"""config/components/acr/: Azure Container Registry beside Chainguard for kubectl apply -k.

The component changes the Deployment only: PSU_PROVIDERS with the ACR provider, and the
controller's token with audience api://AzureADTokenExchange projected where that provider
reads it by default. What it renders must load as the controller's settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pull_secret_updater.providers.acr import DEFAULT_AUDIENCE, DEFAULT_TOKEN_PATH
from pull_secret_updater.providers.acr.section import AcrSection
from tests.deploy.support import (
    CONFIG,
    container,
    kustomize,
    load_pod_settings,
    plain_env,
    volume_for,
)
from tests.deploy.test_kustomize_ecr_component import overlay

COMPONENT = CONFIG / "components" / "acr"


def test_component_turns_acr_on_with_its_token_where_the_provider_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = overlay(tmp_path, components=(COMPONENT,))

    assert json.loads(plain_env(objects)["PSU_PROVIDERS"]) == [{"kind": "acr"}]
    settings = load_pod_settings(objects, monkeypatch)
    (acr,) = [s for s in settings.sections if isinstance(s, AcrSection)]
    assert str(acr.token_path) == DEFAULT_TOKEN_PATH
    assert acr.sa_audience == DEFAULT_AUDIENCE
    volume, key = volume_for(objects, str(acr.token_path))
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": key,
        "audience": DEFAULT_AUDIENCE,
        "expirationSeconds": 3600,
    }


def test_component_keeps_what_config_had(tmp_path: Path) -> None:
    objects, config = overlay(tmp_path, components=(COMPONENT,)), kustomize(CONFIG)
    ours, theirs = container(objects), container(config)
    assert all(e in ours["env"] for e in theirs["env"])
    assert all(m in ours["volumeMounts"] for m in theirs["volumeMounts"])
