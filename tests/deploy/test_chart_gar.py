"""The chart with a gar entry, as the README's setup gives it: the section reaches the
controller as written, and the token of the section's audience is projected at its path for
the chart's token lifetime (a federated token lives no longer)."""

from __future__ import annotations

import json

import pytest

from pull_secret_updater.providers.gar import DEFAULT_AUDIENCE, DEFAULT_TOKEN_PATH
from pull_secret_updater.providers.gar.section import GarSection
from tests.deploy.support import Helm, load_pod_settings, plain_env, volume_for

GAR = {"kind": "gar", "sa_audience": DEFAULT_AUDIENCE, "token_path": DEFAULT_TOKEN_PATH}


def test_a_gar_entry_reaches_the_controller_with_its_token_projected(
    helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = helm_binary.template(values={"providers": [GAR], "tokenExpirationSeconds": 3600})

    assert json.loads(plain_env(objects)["PSU_PROVIDERS"]) == [GAR]
    settings = load_pod_settings(objects, monkeypatch)
    (section,) = [s for s in settings.sections if isinstance(s, GarSection)]
    assert section.sa_audience == DEFAULT_AUDIENCE
    assert section.sts_endpoint == "https://sts.googleapis.com"
    volume, key = volume_for(objects, DEFAULT_TOKEN_PATH)
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": key,
        "audience": DEFAULT_AUDIENCE,
        "expirationSeconds": 3600,
    }
