"""config/components/ecr/: Amazon ECR beside Chainguard for kubectl apply -k.

The component changes the Deployment only: PSU_PROVIDERS_ECR with the ECR provider, and the
controller's token with audience sts.amazonaws.com projected where that provider reads it by
default. The overlays are the ones config/README.md documents, written out here; what they
render must load as the controller's settings and say what the chart says for the same entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pull_secret_updater.providers.ecr import DEFAULT_TOKEN_PATH
from tests.deploy.support import (
    CONFIG,
    Helm,
    Obj,
    container,
    ecr_section,
    kustomize,
    load_pod_settings,
    volume_for,
)
from tests.helpers import ClusterHelper

COMPONENT = CONFIG / "components" / "ecr"
NAMESPACE_SCOPED = CONFIG / "components" / "namespace-scoped"

#: config/README.md's patch of the provider's fields, by the container's and variable's names.
PROVIDERS_PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pull-secret-updater
  namespace: pull-secret-updater
spec:
  template:
    spec:
      containers:
        - name: controller
          env:
            - name: PSU_PROVIDERS_ECR
              value: '{"kind": "ecr", "sts_endpoint": "https://sts.eu-west-1.amazonaws.com"}'
"""


def overlay(
    directory: Path,
    *,
    base: Path = CONFIG,
    components: tuple[Path, ...] = (COMPONENT,),
    patches: tuple[str, ...] = (),
) -> list[Obj]:
    """A kustomization of `base` with `components` (in that order) and `patches`, rendered."""
    kustomization: dict[str, object] = {
        "resources": [os.path.relpath(base, directory)],
        "components": [os.path.relpath(c, directory) for c in components],
    }
    if patches:
        kustomization["patches"] = [{"patch": p} for p in patches]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(directory)


def test_component_says_what_the_chart_says(
    tmp_path: Path, helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    kustomized = overlay(tmp_path)
    chart = helm_binary.template(values={"providers": [{"kind": "ecr"}]})

    for objects in (kustomized, chart):
        assert volume_for(objects, DEFAULT_TOKEN_PATH) == volume_for(chart, DEFAULT_TOKEN_PATH)
    mounts = [
        [m for m in container(objects)["volumeMounts"] if m["name"] == "ecr-token"]
        for objects in (kustomized, chart)
    ]
    assert mounts[0] == mounts[1]
    assert ecr_section(load_pod_settings(kustomized, monkeypatch)) == ecr_section(
        load_pod_settings(chart, monkeypatch)
    )


def test_the_documented_patch_sets_the_providers_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = overlay(tmp_path, patches=(PROVIDERS_PATCH,))

    names = [e["name"] for e in container(objects)["env"]]
    assert names.count("PSU_PROVIDERS_ECR") == 1
    ecr = ecr_section(load_pod_settings(objects, monkeypatch))
    assert ecr.sts_endpoint == "https://sts.eu-west-1.amazonaws.com"
    assert str(ecr.token_path) == DEFAULT_TOKEN_PATH


@pytest.mark.stack
def test_component_passes_server_side_dry_run(
    tmp_path: Path, cluster: ClusterHelper, installed: str
) -> None:
    overlay(tmp_path)

    out = cluster.kubectl("apply", "--dry-run=server", "-k", str(tmp_path), "-o", "name")

    assert "deployment.apps/pull-secret-updater" in out.split()
