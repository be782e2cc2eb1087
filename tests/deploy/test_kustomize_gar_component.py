"""config/components/gar/: Google Artifact Registry beside Chainguard for kubectl apply -k.

The component changes the Deployment only: PSU_PROVIDERS with the gar provider, and the
controller's token with audience sts.googleapis.com projected where that provider reads it by
default, for the hour a federated token may last. What it renders must load as the
controller's settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pull_secret_updater.providers.gar import (
    DEFAULT_AUDIENCE,
    DEFAULT_TOKEN_PATH,
    MIN_SA_TOKEN_LIFETIME,
)
from pull_secret_updater.providers.gar.section import GarSection
from tests.deploy.support import (
    CONFIG,
    container,
    kustomize,
    load_pod_settings,
    plain_env,
    volume_for,
)
from tests.deploy.test_kustomize_ecr_component import overlay

COMPONENT = CONFIG / "components" / "gar"


def test_component_turns_gar_on_with_its_token_where_the_provider_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = overlay(tmp_path, components=(COMPONENT,))

    assert json.loads(plain_env(objects)["PSU_PROVIDERS"]) == [{"kind": "gar"}]
    settings = load_pod_settings(objects, monkeypatch)
    (gar,) = [s for s in settings.sections if isinstance(s, GarSection)]
    assert str(gar.token_path) == DEFAULT_TOKEN_PATH
    assert gar.sa_audience == DEFAULT_AUDIENCE
    volume, key = volume_for(objects, str(gar.token_path))
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": key,
        "audience": DEFAULT_AUDIENCE,
        "expirationSeconds": MIN_SA_TOKEN_LIFETIME,
    }
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True


def test_component_keeps_what_config_had(tmp_path: Path) -> None:
    objects, config = overlay(tmp_path, components=(COMPONENT,)), kustomize(CONFIG)
    ours, theirs = container(objects), container(config)
    assert all(e in ours["env"] for e in theirs["env"])
    assert all(m in ours["volumeMounts"] for m in theirs["volumeMounts"])
