"""The chart's `providers` value: registry providers besides Chainguard, rendered offline.

Each entry becomes a section of PSU_PROVIDERS, and with tokenSource file a projected token of
the entry's audience at the entry's token_path. What is checked is what the controller would
find in the pod: the environment loads as its settings, and the path each section names lies
on a volume that holds what it should (a token with that audience, a CA bundle). Without
providers nothing of this is rendered, so existing installs do not change.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import yaml

from devstack.stack import LocalStack
from pull_secret_updater.core.policy import parse_policy
from pull_secret_updater.providers import acr, gar
from pull_secret_updater.providers.acr.section import AcrSection
from pull_secret_updater.providers.ecr import DEFAULT_AUDIENCE, DEFAULT_TOKEN_PATH
from pull_secret_updater.providers.gar.section import GarSection
from tests.deploy.support import (
    CHART,
    Helm,
    HelmError,
    Obj,
    container,
    ecr_section,
    find,
    load_pod_settings,
    plain_env,
    value_args,
    volume_for,
)
from tests.helpers import ClusterHelper

ROLE = "arn:aws:iam::111122223333:role/puller"
CA_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    + base64.b64encode(b"an ECR endpoint's CA, only its shape" * 3).decode()
    + "\n-----END CERTIFICATE-----\n"
)
ECR: dict[str, Any] = {"kind": "ecr"}


def sections(objects: list[Obj]) -> list[Obj]:
    return list(json.loads(plain_env(objects)["PSU_PROVIDERS"]))


def pod_spec(objects: list[Obj]) -> Obj:
    return dict(find(objects, "Deployment")["spec"]["template"]["spec"])


# -- nothing without providers -------------------------------------------------------------------


def test_without_providers_nothing_of_them_is_rendered(helm_binary: Helm) -> None:
    default = helm_binary.run("template", "pull-secret-updater", str(CHART)).stdout
    empty = helm_binary.run(
        "template", "pull-secret-updater", str(CHART), *value_args({"providers": []})
    ).stdout

    assert empty == default
    objects = helm_binary.template()
    assert "PSU_PROVIDERS" not in plain_env(objects)
    assert [v["name"] for v in pod_spec(objects)["volumes"]] == ["tmp", "oidc-token"]
    assert not [o for o in objects if o["kind"] == "ConfigMap"]


# -- an ECR entry --------------------------------------------------------------------------------


def test_ecr_entry_is_in_psu_providers_with_its_defaults_written_out(
    helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = helm_binary.template(values={"providers": [ECR]})

    assert sections(objects) == [
        {"kind": "ecr", "sa_audience": DEFAULT_AUDIENCE, "token_path": DEFAULT_TOKEN_PATH}
    ]
    settings = load_pod_settings(objects, monkeypatch)
    ecr = ecr_section(settings)
    assert ecr.sa_audience == DEFAULT_AUDIENCE
    assert str(ecr.token_path) == DEFAULT_TOKEN_PATH
    # Chainguard stays configured by the flat values, beside it.
    assert [s.spec().name for s in settings.sections] == ["chainguard", "ecr"]
    assert settings.token_source == "file"


def test_ecr_token_is_projected_at_its_path_with_its_audience(helm_binary: Helm) -> None:
    objects = helm_binary.template(values={"providers": [ECR], "tokenExpirationSeconds": 7200})

    volume, key = volume_for(objects, DEFAULT_TOKEN_PATH)
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": key,
        "audience": "sts.amazonaws.com",
        "expirationSeconds": 7200,
    }
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == "/var/run/secrets/sts.amazonaws.com/serviceaccount"
    assert mount["readOnly"] is True
    # The Chainguard token keeps its own volume, audience and path.
    env = plain_env(objects)
    chainguard, _ = volume_for(objects, env["PSU_TOKEN_PATH"])
    assert chainguard["name"] != volume["name"]
    assert chainguard["projected"]["sources"][0]["serviceAccountToken"]["audience"] == (
        "issuer.enforce.dev"
    )


# -- a gar or acr entry, with its kind alone -------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "section_type", "audience", "path"),
    [
        ("gar", GarSection, gar.DEFAULT_AUDIENCE, gar.DEFAULT_TOKEN_PATH),
        ("acr", AcrSection, acr.DEFAULT_AUDIENCE, acr.DEFAULT_TOKEN_PATH),
    ],
)
def test_a_gar_or_acr_entry_alone_gets_its_defaults_and_its_token_like_ecr(
    helm_binary: Helm,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    section_type: type[GarSection] | type[AcrSection],
    audience: str,
    path: str,
) -> None:
    objects = helm_binary.template(values={"providers": [{"kind": kind}]})

    assert sections(objects) == [{"kind": kind, "sa_audience": audience, "token_path": path}]
    settings = load_pod_settings(objects, monkeypatch)
    (section,) = [s for s in settings.sections if isinstance(s, section_type)]
    assert section.sa_audience == audience
    assert str(section.token_path) == path
    assert [s.spec().name for s in settings.sections] == ["chainguard", kind]
    volume, key = volume_for(objects, path)
    assert volume["name"] == f"{kind}-token"
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": key,
        "audience": audience,
        "expirationSeconds": 3600,
    }
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == path.rsplit("/", 1)[0]
    assert mount["readOnly"] is True


def test_every_provider_at_once_gets_a_token_of_its_own(
    helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [{"kind": "ecr"}, {"kind": "gar"}, {"kind": "acr"}]
    objects = helm_binary.template(values={"providers": entries})

    settings = load_pod_settings(objects, monkeypatch)
    assert [s.spec().name for s in settings.sections] == ["chainguard", "ecr", "gar", "acr"]
    audiences = {
        volume_for(objects, str(s["token_path"]))[0]["projected"]["sources"][0][
            "serviceAccountToken"
        ]["audience"]
        for s in sections(objects)
    }
    assert audiences == {DEFAULT_AUDIENCE, gar.DEFAULT_AUDIENCE, acr.DEFAULT_AUDIENCE}


def test_a_gar_or_acr_entrys_own_fields_reach_the_controller(
    helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    google = {
        "kind": "gar",
        "sa_audience": "https://iam.googleapis.com/projects/123456789012/locations/global/"
        "workloadIdentityPools/cluster/providers/kubernetes",
        "sts_endpoint": "https://sts.example.com",
        "iamcredentials_endpoint": "https://iamcredentials.example.com",
    }
    azure = {
        "kind": "acr",
        "authority_host": "https://login.microsoftonline.us",
        "acr_endpoint": "https://proxy.example.com",
    }
    objects = helm_binary.template(values={"providers": [google, azure]})

    assert sections(objects) == [
        {**google, "token_path": gar.DEFAULT_TOKEN_PATH},
        {**azure, "sa_audience": acr.DEFAULT_AUDIENCE, "token_path": acr.DEFAULT_TOKEN_PATH},
    ]
    settings = load_pod_settings(objects, monkeypatch)
    (gar_section,) = [s for s in settings.sections if isinstance(s, GarSection)]
    (acr_section,) = [s for s in settings.sections if isinstance(s, AcrSection)]
    assert gar_section.iamcredentials_endpoint == "https://iamcredentials.example.com"
    assert acr_section.authority_host == "https://login.microsoftonline.us"
    token = volume_for(objects, gar.DEFAULT_TOKEN_PATH)[0]["projected"]["sources"][0]
    assert token["serviceAccountToken"]["audience"] == google["sa_audience"]


def test_an_entrys_own_audience_and_path_drive_its_volume(
    helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = "/var/run/aws/token/web-identity"
    entry: dict[str, object] = {
        "kind": "ecr",
        "sa_audience": "sts.example.com",
        "token_path": path,
        "sts_endpoint": "https://sts.eu-west-1.amazonaws.com",
        "session_duration": 3600,
    }
    objects = helm_binary.template(values={"providers": [entry]})

    assert sections(objects) == [entry]
    volume, key = volume_for(objects, path)
    assert key == "web-identity"
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "sts.example.com"
    ecr = ecr_section(load_pod_settings(objects, monkeypatch))
    assert ecr.session_duration == 3600
    assert ecr.sts_endpoint == "https://sts.eu-west-1.amazonaws.com"


def test_tokenrequest_source_projects_no_provider_token(
    helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = helm_binary.template(values={"providers": [ECR], "tokenSource": "tokenrequest"})

    assert not [v for v in pod_spec(objects)["volumes"] if "projected" in v]
    (section,) = sections(objects)
    assert section["sa_audience"] == DEFAULT_AUDIENCE
    settings = load_pod_settings(objects, monkeypatch)
    assert settings.token_source == "tokenrequest"


def test_an_entrys_ca_bundle_is_a_mounted_file_of_its_own(helm_binary: Helm) -> None:
    issuer_ca = CA_PEM.replace("YW4g", "dGhl")
    objects = helm_binary.template(
        values={"caBundle": issuer_ca, "providers": [{**ECR, "caBundle": CA_PEM}]}
    )

    (section,) = sections(objects)
    assert "caBundle" not in section
    volume, key = volume_for(objects, section["ca_bundle"])
    data = find(objects, "ConfigMap", volume["configMap"]["name"])["data"]
    assert data[key] == CA_PEM
    # The issuer's bundle is still the one PSU_CA_BUNDLE names, in the same ConfigMap.
    issuer_volume, issuer_key = volume_for(objects, plain_env(objects)["PSU_CA_BUNDLE"])
    assert issuer_volume == volume
    assert data[issuer_key] == issuer_ca
    # A new bundle restarts the pods, which read it at start.
    other = helm_binary.template(
        values={"caBundle": issuer_ca, "providers": [{**ECR, "caBundle": issuer_ca}]}
    )
    annotations = [
        find(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        for objs in (objects, other)
    ]
    assert annotations[0]["checksum/config"] != annotations[1]["checksum/config"]


def test_an_entrys_ca_bundle_alone_makes_the_config_map(helm_binary: Helm) -> None:
    objects = helm_binary.template(values={"providers": [{**ECR, "caBundle": CA_PEM}]})

    assert "PSU_CA_BUNDLE" not in plain_env(objects)
    config_map = find(objects, "ConfigMap")
    assert list(config_map["data"]) == ["ecr-ca.crt"]


def test_a_policy_rule_for_ecr_roles_reaches_the_policy_file(helm_binary: Helm) -> None:
    rules = [{"provider": "ecr", "identities": [ROLE], "namespaces": ["team-a"]}]
    objects = helm_binary.template(values={"providers": [ECR], "policy": {"rules": rules}})

    volume, key = volume_for(objects, plain_env(objects)["PSU_POLICY_FILE"])
    document = yaml.safe_load(find(objects, "ConfigMap", volume["configMap"]["name"])["data"][key])
    policy = parse_policy(document, default_provider="chainguard")
    assert policy.allows(provider="ecr", identity=ROLE, namespace="team-a", namespace_labels=None)
    assert not policy.allows(
        provider="ecr", identity=ROLE, namespace="team-b", namespace_labels=None
    )


def test_providers_leave_the_network_policy_as_it_was(helm_binary: Helm) -> None:
    with_ecr = find(helm_binary.template(values={"providers": [ECR]}), "NetworkPolicy")

    assert with_ecr == find(helm_binary.template(), "NetworkPolicy")
    # Egress stays open by default: STS and ECR are reached on 443 like the issuer.
    assert with_ecr["spec"]["policyTypes"] == ["Ingress"]


def test_chart_with_providers_passes_helm_lint_strict(helm_binary: Helm) -> None:
    values = {
        "providers": [
            {**ECR, "caBundle": CA_PEM, "session_duration": 1800},
            {"kind": "gar", "caBundle": CA_PEM},
            {"kind": "acr", "acr_endpoint": None},
        ]
    }
    result = helm_binary.run("lint", "--strict", str(CHART), *value_args(values))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        ([{"kind": "chainguard"}], "configured by the values issuer"),
        ([ECR, ECR], "one entry per kind"),
        ([{"kind": "ecr", "sts_endpiont": "https://sts.example.com"}], "sts_endpiont"),
        ([{"kind": "ecr", "sts_endpoint": "http://sts.example.com"}], "sts_endpoint"),
        ([{"kind": "ecr", "session_duration": 60}], "session_duration"),
        ([{"kind": "ecr", "token_path": "token"}], "token_path"),
        ([{"kind": "ecr", "token_path": "/var/run/chainguard/oidc/t"}], "directory of its own"),
        ([{"kind": "ecr", "token_path": "/etc/pull-secret-updater/ca/x/t"}], "in or around"),
        ([{"kind": "ecr", "token_path": "/var/run/t"}], "in or around /var/run/"),
        ([{"kind": "ecr", "caBundle": "not a PEM"}], "caBundle"),
        ([{**ECR, "caBundle": CA_PEM, "ca_bundle": "/etc/ca.crt"}], "give one"),
        ([{"kind": "fake"}], "needs token_path and sa_audience"),
        ([{"sa_audience": "x"}], "kind"),
        ([{"kind": "gar", "sts_endpiont": "https://sts.example.com"}], "sts_endpiont"),
        ([{"kind": "gar", "session_duration": 900}], "session_duration"),
        ([{"kind": "gar", "iamcredentials_endpoint": "http://iam.example.com"}], "iamcred"),
        ([{"kind": "acr", "authority_host": "http://login.example.com"}], "authority_host"),
        ([{"kind": "acr", "registry": "r.azurecr.io"}], "registry"),
        ([{"kind": "gar"}, {"kind": "acr", "token_path": gar.DEFAULT_TOKEN_PATH}], "in or around"),
    ],
    ids=[
        "chainguard-entry",
        "twice",
        "unknown-key",
        "http-endpoint",
        "short-session",
        "relative-path",
        "shared-directory",
        "inside-a-mount",
        "around-a-mount",
        "bad-pem",
        "two-bundles",
        "no-default-path",
        "no-kind",
        "gar-unknown-key",
        "gar-ecr-key",
        "gar-http-endpoint",
        "acr-http-authority",
        "acr-annotation-as-key",
        "gar-and-acr-one-token-path",
    ],
)
def test_bad_provider_entries_are_refused(
    helm_binary: Helm, providers: list[Obj], message: str
) -> None:
    with pytest.raises(HelmError, match=message):
        helm_binary.template(values={"providers": providers})


# -- the API server accepts it ----------------------------------------------------------------


@pytest.mark.stack
def test_rendered_ecr_entry_passes_server_side_dry_run(
    helm_binary: Helm, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("psu-ecr-dry")
    release = f"ecr-{uuid.uuid4().hex[:6]}"
    objects = helm_binary.template(
        release=release,
        namespace=namespace,
        values={"providers": [{**ECR, "caBundle": CA_PEM}], "caBundle": CA_PEM},
    )

    out = cluster.kubectl(
        "apply", "--dry-run=server", "-o", "name", "-f", "-", input=yaml.safe_dump_all(objects)
    )

    assert len(out.split()) == len(objects)


@pytest.mark.stack
def test_notes_say_how_to_ask_for_ecr_and_what_egress_must_allow(
    helm: Helm, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("psu-ecr-notes")
    release = f"ecr-notes-{uuid.uuid4().hex[:6]}"

    notes = helm.notes(
        release=release,
        namespace=namespace,
        values={"providers": [ECR], "networkPolicy": {"egress": []}},
    )

    flat = " ".join(notes.split())
    assert "ecr.pull-secret-updater.chainguard.dev/role-arn=" in flat
    assert "ecr.pull-secret-updater.chainguard.dev/registries=" in flat
    assert f"system:serviceaccount:{namespace}:controller" in flat
    assert "identity-command --provider ecr" in flat
    assert "must allow TCP 443 to STS and the ECR API" in flat
    without = " ".join(helm.notes(release=release, namespace=namespace).split())
    assert "Amazon ECR" not in without
