"""The Helm chart, rendered offline: it says what config/ says, and its values drive it.

Every value that matters to least privilege (the managed Secret names, the policy's namespace
labels, the token source) is checked where it lands: the RBAC rules, the environment the
controller reads, the volume a path points into. The last test hands the rendered objects to
the real API server (server-side dry run), which validates every field and compiles the
admission policy's CEL.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any

import pytest
import yaml

from devstack.stack import LocalStack
from pull_secret_updater.cli.flags import load_settings
from pull_secret_updater.core.policy import parse_policy
from tests.deploy.support import (
    ADMISSION,
    CHART,
    CONFIG,
    VAP_API,
    Helm,
    HelmError,
    Obj,
    container,
    find,
    kinds,
    kustomize,
    plain_env,
    rules_for,
    value_args,
    volume_for,
)
from tests.helpers import ClusterHelper

TOKEN_FILE = "/var/run/chainguard/oidc/oidc-token"
IDENTITY = "4cf15780a13a9b6576d8b357e6524554c8c12a18/1f29c3a4e9b1d7e2"
CA_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    + base64.b64encode(b"not a real certificate, only its shape" * 3).decode()
    + "\n-----END CERTIFICATE-----\n"
)


# -- lint and defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "secretNames": ["pull-secret", "registry-creds"],
            "tokenSource": "tokenrequest",
            "caBundle": CA_PEM,
            "policy": {"rules": [{"identities": [IDENTITY]}]},
            "serviceMonitor": {"enabled": True},
            "networkPolicy": {"scrapers": [{"ipBlock": {"cidr": "10.0.0.0/16"}}], "egress": []},
            "replicas": 1,
            "leaderElection": {"enabled": False},
        },
    ],
    ids=["defaults", "everything-changed"],
)
def test_chart_passes_helm_lint_strict(helm_binary: Helm, values: dict[str, Any]) -> None:
    result = helm_binary.run("lint", "--strict", str(CHART), *value_args(values))
    assert "0 chart(s) failed" in result.stdout


def test_default_render_says_what_config_says(helm_binary: Helm) -> None:
    chart = helm_binary.template()
    config = [o for o in kustomize(CONFIG) if o["kind"] != "Namespace"]

    # Same objects, same names: a user moving from kubectl apply -k to helm keeps them.
    for obj in config:
        ns = obj["metadata"].get("namespace")
        twin = find(chart, obj["kind"], obj["metadata"]["name"])
        assert twin["metadata"].get("namespace") == ns
    assert find(chart, "ClusterRole")["rules"] == find(config, "ClusterRole")["rules"]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert find(chart, kind)["subjects"] == find(config, kind)["subjects"]
    # config/ always grants serviceaccounts/token; the chart only in tokenrequest mode.
    tokenrequest = helm_binary.template(values={"tokenSource": "tokenrequest"})
    assert find(tokenrequest, "Role")["rules"] == find(config, "Role")["rules"]
    assert rules_for(find(chart, "Role"), "serviceaccounts/token") == []

    ours, theirs = container(chart), container(config)
    for key in (
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
        "volumeMounts",
    ):
        if key == "volumeMounts":
            assert all(m in ours[key] for m in theirs[key])
        else:
            assert ours[key] == theirs[key], key
    assert (
        ours["image"]
        == theirs["image"]
        == ("ghcr.io/pull-secret-updater/pull-secret-updater:0.1.0")
    )
    env = {e["name"]: e for e in ours["env"]}
    assert all(env[e["name"]] == e for e in theirs["env"])

    pod, their_pod = (find(objs, "Deployment")["spec"] for objs in (chart, config))
    assert pod["replicas"] == their_pod["replicas"] == 2
    their_security = their_pod["template"]["spec"]["securityContext"]
    assert their_security.items() <= pod["template"]["spec"]["securityContext"].items()
    assert pod["template"]["spec"]["serviceAccountName"] == "controller"
    volumes = pod["template"]["spec"]["volumes"]
    assert all(v in volumes for v in their_pod["template"]["spec"]["volumes"])

    service = find(chart, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"].items() <= (pod["template"]["metadata"]["labels"].items())


def test_defaults_run_hardened_with_leader_election(helm_binary: Helm) -> None:
    objects = helm_binary.template()
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    env = plain_env(objects)
    assert env["PSU_LEADER_ELECTION"] == "true"
    lease_rules = rules_for(find(objects, "Role"), "leases")
    assert {"resourceNames": [env["PSU_LEASE_NAME"]]}.items() <= lease_rules[1].items()
    assert "ServiceMonitor" not in {o["kind"] for o in objects}


def test_rendered_environment_loads_as_controller_settings(
    helm_binary: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = helm_binary.template(
        values={"secretNames": ["pull-secret", "ci-pull"], "refresh": {"jitter": 0, "margin": 90}}
    )
    for name in list(os.environ):
        if name.startswith("PSU_") or name in ("POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(name)
    for name, value in plain_env(objects).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_NAME", "pod-0")
    monkeypatch.setenv("POD_NAMESPACE", "pull-secret-updater")

    settings = load_settings([])

    assert settings.secret_names == ["pull-secret", "ci-pull"]
    assert settings.token_source == "file"
    assert str(settings.token_path) == TOKEN_FILE
    assert settings.refresh_jitter == 0
    assert settings.refresh_margin == 90
    assert settings.lease_name == "pull-secret-updater"
    assert settings.service_account == "controller"
    assert settings.namespace == "pull-secret-updater"


# -- values land where they matter ---------------------------------------------------------------


def test_secret_names_drive_rbac_and_environment(helm_binary: Helm) -> None:
    names = ["pull-secret", "registry-creds", "ci.pull"]
    objects = helm_binary.template(values={"secretNames": names})

    (secrets,) = rules_for(find(objects, "ClusterRole"), "secrets")
    assert secrets["resourceNames"] == names
    assert plain_env(objects)["PSU_SECRET_NAMES"] == "pull-secret,registry-creds,ci.pull"


def test_policy_is_a_mounted_file_the_controller_accepts(helm_binary: Helm) -> None:
    rules = [{"identities": [IDENTITY], "namespaces": ["team-a", "team-b-*"]}]
    objects = helm_binary.template(values={"policy": {"rules": rules}})

    path = plain_env(objects)["PSU_POLICY_FILE"]
    volume, key = volume_for(objects, path)
    config_map = find(objects, "ConfigMap", volume["configMap"]["name"])
    document = yaml.safe_load(config_map["data"][key])
    assert document == {"rules": rules}
    policy = parse_policy(document, default_provider="chainguard")
    assert policy.allows(
        provider="chainguard", identity=IDENTITY, namespace="team-b-1", namespace_labels=None
    )
    assert not policy.allows(
        provider="chainguard", identity=IDENTITY, namespace="team-c", namespace_labels=None
    )
    # Namespaces by name only: no reading of namespace labels.
    assert rules_for(find(objects, "ClusterRole"), "namespaces") == []


@pytest.mark.parametrize(
    "policy",
    [
        {"rules": [{"identities": [IDENTITY], "namespaceSelector": {"matchLabels": {"a": "b"}}}]},
        {"rules": [{"identities": [IDENTITY]}], "namespaceLabels": True},
    ],
    ids=["selector-in-a-rule", "namespaceLabels-value"],
)
def test_namespace_labels_grant_get_on_namespaces(helm_binary: Helm, policy: Obj) -> None:
    objects = helm_binary.template(values={"policy": policy})

    (rule,) = rules_for(find(objects, "ClusterRole"), "namespaces")
    assert rule["verbs"] == ["get"]
    assert "resourceNames" not in rule


def test_no_rules_means_no_policy_file_and_an_explicit_open_policy(helm_binary: Helm) -> None:
    objects = helm_binary.template()

    env = plain_env(objects)
    assert "PSU_POLICY_FILE" not in env
    assert env["PSU_ALLOW_ANY_IDENTITY"] == "true"
    assert not [o for o in objects if o["kind"] == "ConfigMap"]


def test_rules_replace_the_open_policy(helm_binary: Helm) -> None:
    policy = {"rules": [{"identities": [IDENTITY], "namespaces": ["team-a"]}]}
    env = plain_env(helm_binary.template(values={"policy": policy}))

    assert "PSU_POLICY_FILE" in env
    assert "PSU_ALLOW_ANY_IDENTITY" not in env


def test_without_rules_the_open_policy_must_be_chosen(helm_binary: Helm) -> None:
    with pytest.raises(HelmError, match=r"needs policy\.rules, or policy\.allowAnyIdentity"):
        helm_binary.template(values={"policy": {"allowAnyIdentity": False}})


def test_namespace_scoped_identities_grant_tokens_for_one_name_only(helm_binary: Helm) -> None:
    objects = helm_binary.template(
        values={"tokenSubject": "namespace", "policy": {"allowAnyIdentity": False}}
    )

    env = plain_env(objects)
    assert env["PSU_TOKEN_SUBJECT"] == "namespace"
    assert env["PSU_NAMESPACE_SERVICE_ACCOUNT"] == "pull-secret-updater"
    assert "PSU_ALLOW_ANY_IDENTITY" not in env
    (rule,) = rules_for(find(objects, "ClusterRole"), "serviceaccounts/token")
    assert rule == {
        "apiGroups": [""],
        "resources": ["serviceaccounts/token"],
        "resourceNames": ["pull-secret-updater"],
        "verbs": ["create"],
    }


def test_namespace_scoped_chart_says_what_config_namespace_scoped_says(
    helm_binary: Helm,
) -> None:
    config = kustomize(CONFIG / "namespace-scoped")
    chart = helm_binary.template(values={"tokenSubject": "namespace"})

    def role_rules(objects: list[Obj]) -> list[Obj]:
        return list(find(objects, "ClusterRole")["rules"])

    def canonical(rules: list[Obj]) -> list[str]:
        return sorted(json.dumps(rule, sort_keys=True) for rule in rules)

    assert canonical(role_rules(chart)) == canonical(role_rules(config))
    config_env = {
        e["name"]: e.get("value")
        for e in find(config, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    for name in ("PSU_TOKEN_SUBJECT", "PSU_NAMESPACE_SERVICE_ACCOUNT"):
        assert plain_env(chart)[name] == config_env[name]
    assert "PSU_ALLOW_ANY_IDENTITY" not in config_env


def test_ca_bundle_is_a_mounted_file(helm_binary: Helm) -> None:
    objects = helm_binary.template(values={"caBundle": CA_PEM})

    path = plain_env(objects)["PSU_CA_BUNDLE"]
    volume, key = volume_for(objects, path)
    config_map = find(objects, "ConfigMap", volume["configMap"]["name"])
    assert config_map["data"][key] == CA_PEM
    # A new bundle (or policy) must restart the pods, which read both at start.
    other = helm_binary.template(values={"caBundle": CA_PEM.replace("bm90", "Tk9U")})
    annotation = "checksum/config"
    checksums = {
        find(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"][annotation]
        for objs in (objects, other)
    }
    assert len(checksums) == 2


def test_file_token_source_projects_an_audience_bound_token(helm_binary: Helm) -> None:
    objects = helm_binary.template(values={"saAudience": "sts.example.com"})

    env = plain_env(objects)
    assert env["PSU_TOKEN_SOURCE"] == "file"
    volume, key = volume_for(objects, env["PSU_TOKEN_PATH"])
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {
        "path": key,
        "audience": "sts.example.com",
        "expirationSeconds": 3600,
    }
    assert env["PSU_TOKEN_PATH"] == TOKEN_FILE


def test_tokenrequest_source_drops_the_volume_and_grants_its_own_token(helm_binary: Helm) -> None:
    objects = helm_binary.template(values={"tokenSource": "tokenrequest"})

    env = plain_env(objects)
    assert env["PSU_TOKEN_SOURCE"] == "tokenrequest"
    assert "PSU_TOKEN_PATH" not in env
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "projected" in v]
    assert not [m for m in container(objects)["volumeMounts"] if "oidc" in m["mountPath"]]
    (rule,) = rules_for(find(objects, "Role"), "serviceaccounts/token")
    assert rule["resourceNames"] == ["controller"]
    assert rule["verbs"] == ["create"]


def test_pod_settings_pass_through(helm_binary: Helm) -> None:
    values: dict[str, Any] = {
        "image": {"tag": "0.2.0", "pullPolicy": "Always"},
        "extraEnv": [{"name": "PSU_WATCH_TIMEOUT", "value": "30"}],
        "podAnnotations": {"example.com/team": "platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "resources": {"requests": {"cpu": "50m"}},
        "refresh": {"margin": None},
        "replicas": 3,
    }
    objects = helm_binary.template(values=values)

    deployment = find(objects, "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["metadata"]["annotations"]["example.com/team"] == "platform"
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod["spec"][key] == values[key]
    box = container(objects)
    assert box["image"].endswith(":0.2.0")
    assert box["imagePullPolicy"] == "Always"
    # Maps merge with the defaults: the memory request and limit stay.
    assert box["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    env = plain_env(objects)
    assert env["PSU_WATCH_TIMEOUT"] == "30"
    assert "PSU_REFRESH_MARGIN" not in env  # null: the controller's own default


def test_service_monitor_is_optional(helm_binary: Helm) -> None:
    objects = helm_binary.template(
        values={"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}
    )

    monitor = find(objects, "ServiceMonitor")
    service = find(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2, "leaderElection": {"enabled": False}}, "needs leaderElection"),
        ({"tokenSource": "kubelet"}, "tokenSource"),
        ({"secretNames": []}, "secretNames"),
        ({"secretNames": ["Pull_Secret"]}, "secretNames"),
        ({"issuer": "http://issuer.example.com"}, "issuer"),
        ({"policy": {"rules": [{"namespaces": ["a"]}]}}, "identities"),
        ({"secretName": "typo"}, "secretName"),
        ({"networkPolicy": {"scrapers": [{}]}}, "scrapers"),
    ],
    ids=[
        "two-writers",
        "token-source",
        "no-names",
        "bad-name",
        "http-issuer",
        "rule-without-identities",
        "unknown-value",
        "empty-scraper",
    ],
)
def test_unsafe_or_invalid_values_are_refused(
    helm_binary: Helm, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmError, match=message):
        helm_binary.template(values=values)


# -- cluster-scoped objects and the admission policy ---------------------------------------------


def test_cluster_scoped_names_follow_the_release(helm_binary: Helm) -> None:
    objects = helm_binary.template(release="psu-blue", namespace="psu-blue-ns")

    assert find(objects, "ClusterRole")["metadata"]["name"] == "psu-blue-pull-secret-updater"
    binding = find(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "psu-blue-pull-secret-updater"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "controller", "namespace": "psu-blue-ns"}
    ]
    policy = find(objects, "ValidatingAdmissionPolicy")
    assert policy["metadata"]["name"] == "psu-blue-pull-secret-updater-controller-writes"
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:psu-blue-ns:controller'"
    )
    vap_binding = find(objects, "ValidatingAdmissionPolicyBinding")
    assert vap_binding["spec"]["policyName"] == policy["metadata"]["name"]


def test_admission_policy_is_the_one_in_config(helm_binary: Helm) -> None:
    chart = helm_binary.template()
    config = kustomize(ADMISSION)

    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        ours, theirs = find(chart, kind), find(config, kind)
        assert ours["metadata"]["name"] == theirs["metadata"]["name"]
        assert ours["spec"] == theirs["spec"]
    spec = find(chart, "ValidatingAdmissionPolicy")["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert find(chart, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] == ["Deny"]


def test_admission_policy_only_where_the_api_is_served(helm_binary: Helm) -> None:
    def admission_kinds(objects: list[Obj]) -> set[str]:
        return {o["kind"] for o in objects if o["kind"].startswith("ValidatingAdmission")}

    assert admission_kinds(helm_binary.template(api_versions=())) == set()
    assert (
        admission_kinds(helm_binary.template(values={"admissionPolicy": {"enabled": False}}))
        == set()
    )
    assert admission_kinds(helm_binary.template()) == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }


#: The start of the warning the chart's notes print when the policy could not be installed.
ADMISSION_WARNING = "WARNING: the admission policy was NOT installed"


def test_template_output_warns_where_the_admission_api_is_unknown(helm_binary: Helm) -> None:
    # helm template prints no notes: a comment in its output is what a reader of it sees.
    def rendered(*args: str) -> str:
        return helm_binary.run("template", "pull-secret-updater", str(CHART), *args).stdout

    warning = "# WARNING: the admission policy is not rendered"
    assert warning in rendered()
    assert warning not in rendered(f"--api-versions={VAP_API}")
    assert warning not in rendered("--set=admissionPolicy.enabled=false")


@pytest.mark.stack
@pytest.mark.parametrize(
    ("values", "note"),
    [({}, None), ({"admissionPolicy": {"enabled": False}}, "admissionPolicy.enabled is false")],
    ids=["policy-installed", "policy-turned-off"],
)
def test_notes_do_not_warn_where_the_cluster_serves_the_admission_api(
    helm: Helm, cluster: ClusterHelper, values: dict[str, Any], note: str | None
) -> None:
    # Another release and namespace: config/'s objects in pull-secret-updater belong to no
    # release, and helm refuses to take them over even in a dry run.
    namespace = cluster.namespace("psu-notes")
    release = f"notes-{uuid.uuid4().hex[:6]}"

    notes = helm.notes(release=release, namespace=namespace, values=values)

    assert ADMISSION_WARNING not in notes
    if note is None:
        assert "admissionPolicy.enabled is false" not in notes
    else:
        assert note in notes


# -- the API server accepts what the chart renders -----------------------------------------------


@pytest.mark.stack
@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "secretNames": ["pull-secret", "registry-creds"],
            "tokenSource": "tokenrequest",
            "caBundle": CA_PEM,
            "extraEnv": [{"name": "PSU_WATCH_TIMEOUT", "value": "30"}],
            "policy": {
                "rules": [
                    {"identities": [IDENTITY], "namespaceSelector": {"matchLabels": {"team": "a"}}}
                ]
            },
            "networkPolicy": {
                "scrapers": [
                    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "vmagent"}}},
                    {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}},
                ],
                "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
            },
        },
    ],
    ids=["defaults", "everything-changed"],
)
def test_rendered_chart_passes_server_side_dry_run(
    helm_binary: Helm, stack: LocalStack, cluster: ClusterHelper, values: dict[str, Any]
) -> None:
    namespace = cluster.namespace("psu-dry")
    release = f"dry-{uuid.uuid4().hex[:6]}"
    objects = helm_binary.template(release=release, namespace=namespace, values=values)
    assert "ValidatingAdmissionPolicy" in {o["kind"] for o in objects}, kinds(objects)

    out = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-o",
        "name",
        "-f",
        "-",
        input=yaml.safe_dump_all(objects),
    )

    assert len(out.split()) == len(objects)
