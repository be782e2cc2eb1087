"""config/components/{ecr,gar,acr}/: each turns one cloud provider on beside Chainguard for
kubectl apply -k, and they combine, with each other and with components/namespace-scoped, in
any number and order.

Each component changes the Deployment only: its provider's variable (PSU_PROVIDERS_<KIND>)
and the controller's token with that provider's audience, projected where the provider reads
it by default (for Google, for the hour a federated token may last). What the overlays render
must load as the controller's settings.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from pull_secret_updater.providers import acr, ecr, gar
from pull_secret_updater.providers.base import ProviderSection
from tests.deploy.support import (
    CONFIG,
    WITHOUT_ADMISSION,
    Obj,
    container,
    find,
    kustomize,
    load_pod_settings,
    plain_env,
    rules_for,
    volume_for,
)
from tests.deploy.test_kustomize_ecr_component import overlay

COMPONENTS = CONFIG / "components"
NAMESPACE_SCOPED = COMPONENTS / "namespace-scoped"
#: Each cloud's default token audience, path and lifetime, as its component must project them.
CLOUDS = {
    "ecr": (ecr.DEFAULT_AUDIENCE, ecr.DEFAULT_TOKEN_PATH, 3600),
    "gar": (gar.DEFAULT_AUDIENCE, gar.DEFAULT_TOKEN_PATH, gar.MIN_SA_TOKEN_LIFETIME),
    "acr": (acr.DEFAULT_AUDIENCE, acr.DEFAULT_TOKEN_PATH, 3600),
}


def _section(objects: list[Obj], kind: str, monkeypatch: pytest.MonkeyPatch) -> ProviderSection:
    settings = load_pod_settings(objects, monkeypatch)
    (section,) = [s for s in settings.sections if s.spec().name == kind]
    return section


def _check_projected(objects: list[Obj], kind: str, section: ProviderSection) -> None:
    audience, path, seconds = CLOUDS[kind]
    assert str(getattr(section, "token_path", None)) == path
    assert getattr(section, "sa_audience", None) == audience
    volume, key = volume_for(objects, path)
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": key,
        "audience": audience,
        "expirationSeconds": seconds,
    }
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True


@pytest.mark.parametrize("kind", sorted(CLOUDS))
def test_component_turns_its_provider_on_with_its_token_where_the_provider_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    objects = overlay(tmp_path, components=(COMPONENTS / kind,))

    assert json.loads(plain_env(objects)[f"PSU_PROVIDERS_{kind.upper()}"]) == {"kind": kind}
    assert "PSU_PROVIDERS" not in plain_env(objects)
    _check_projected(objects, kind, _section(objects, kind, monkeypatch))


@pytest.mark.parametrize("kind", sorted(CLOUDS))
def test_component_changes_the_deployment_only_and_keeps_what_config_had(
    tmp_path: Path, kind: str
) -> None:
    objects, config = overlay(tmp_path, components=(COMPONENTS / kind,)), kustomize(CONFIG)

    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        (o["kind"], o["metadata"]["name"]) for o in config
    ]
    for obj in config:
        if obj["kind"] != "Deployment":
            assert find(objects, obj["kind"], obj["metadata"]["name"]) == obj
    ours, theirs = container(objects), container(config)
    assert all(e in ours["env"] for e in theirs["env"])
    assert all(m in ours["volumeMounts"] for m in theirs["volumeMounts"])


@pytest.mark.parametrize(
    "order",
    [
        *itertools.permutations(["ecr", "gar", "acr"]),
        ("gar", "namespace-scoped", "acr"),
        ("ecr", "acr", "namespace-scoped"),
    ],
    ids=lambda order: "+".join(order),
)
def test_components_combine_in_any_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: tuple[str, ...]
) -> None:
    objects = overlay(tmp_path, components=tuple(COMPONENTS / name for name in order))

    clouds = [name for name in order if name in CLOUDS]
    settings = load_pod_settings(objects, monkeypatch)
    assert sorted(s.spec().name for s in settings.sections) == sorted(["chainguard", *clouds])
    for kind in clouds:
        _check_projected(objects, kind, _section(objects, kind, monkeypatch))
    scoped = "namespace-scoped" in order
    assert settings.token_subject == ("namespace" if scoped else "controller")


@pytest.mark.parametrize("base", [CONFIG, WITHOUT_ADMISSION], ids=["config", "without-admission"])
@pytest.mark.parametrize("first", [True, False], ids=["scoped-first", "scoped-last"])
def test_namespace_scoped_combines_with_a_cloud_component_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Path, first: bool
) -> None:
    pair = (NAMESPACE_SCOPED, COMPONENTS / "ecr")
    objects = overlay(tmp_path, base=base, components=pair if first else pair[::-1])

    settings = load_pod_settings(objects, monkeypatch)
    assert settings.token_subject == "namespace"
    assert not settings.allow_any_identity
    assert [s.spec().name for s in settings.sections] == ["chainguard", "ecr"]
    (rule,) = rules_for(find(objects, "ClusterRole"), "serviceaccounts/token")
    assert rule["resourceNames"] == ["pull-secret-updater"]
    # The rest of config/'s environment is as it was.
    env = plain_env(objects)
    assert (env["PSU_SECRET_NAMES"], env["PSU_REGISTRY"]) == ("pull-secret", "cgr.dev")
