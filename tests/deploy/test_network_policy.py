"""The NetworkPolicy on the controller Pods, from config/ and from the chart.

/metrics carries identity UIDs in its labels and shares its port with /healthz and /readyz. The
policy must select the controller's Pods, admit the scraper only (one peer, so that its
namespace and Pod selectors must both match), only on that port, and leave egress alone. The
local API server validates and stores the objects, but no network plugin here enforces them:
these tests check the objects, not the filtering.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.controller import NAMESPACE
from tests.deploy.support import (
    CONFIG,
    WITHOUT_ADMISSION,
    Helm,
    Obj,
    container,
    find,
    kustomize,
)
from tests.helpers import ClusterHelper

SCRAPER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def metrics_port(objects: list[Obj]) -> int:
    """The container port that serves /metrics: the one the probes use too."""
    box = container(objects)
    name = box["livenessProbe"]["httpGet"]["port"]
    assert box["readinessProbe"]["httpGet"]["port"] == name
    (port,) = [p["containerPort"] for p in box["ports"] if p["name"] == name]
    return int(port)


def the_only_rule(objects: list[Obj]) -> Obj:
    """The policy's one ingress rule, after checking what it applies to."""
    policy = find(objects, "NetworkPolicy")
    deployment = find(objects, "Deployment")
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    selector = policy["spec"]["podSelector"]
    assert set(selector) == {"matchLabels"}
    assert selector["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    # Ingress only: egress stays open (API server, DNS, token service).
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]
    (rule,) = policy["spec"]["ingress"]
    return dict(rule)


# -- config/ ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [CONFIG, CONFIG / "namespace-scoped", WITHOUT_ADMISSION],
    ids=["config", "namespace-scoped", "without-admission"],
)
def test_config_admits_only_the_scraper_on_the_metrics_port(path: Path) -> None:
    objects = kustomize(path)

    rule = the_only_rule(objects)

    assert rule["from"] == [SCRAPER]
    assert rule["ports"] == [{"protocol": "TCP", "port": metrics_port(objects)}]


@pytest.mark.stack
def test_config_network_policy_is_stored_as_written(cluster: ClusterHelper, installed: str) -> None:
    rendered = find(kustomize(CONFIG), "NetworkPolicy")

    stored = json.loads(
        cluster.kubectl(
            "-n", NAMESPACE, "get", "networkpolicy", rendered["metadata"]["name"], "-o", "json"
        )
    )

    assert stored["spec"] == rendered["spec"]


# -- the chart ----------------------------------------------------------------------------------


def test_chart_admits_what_config_admits(helm_binary: Helm) -> None:
    chart = helm_binary.template()
    config = kustomize(CONFIG)

    rule = the_only_rule(chart)

    assert rule == the_only_rule(config)
    assert rule["ports"] == [{"protocol": "TCP", "port": metrics_port(chart)}]
    policy = find(chart, "NetworkPolicy")
    assert policy["metadata"]["name"] == find(config, "NetworkPolicy")["metadata"]["name"]
    # The release's Pods only: another release in the namespace has another instance label.
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == (
        "pull-secret-updater"
    )


def test_chart_scrapers_and_port_follow_the_values(helm_binary: Helm) -> None:
    scrapers = [
        # Every namespace labelled so, and its vmagent Pods only.
        {
            "namespaceSelector": {"matchLabels": {"team": "observability"}},
            "podSelector": {
                "matchExpressions": [
                    {"key": "app.kubernetes.io/name", "operator": "In", "values": ["vmagent"]}
                ]
            },
        },
        # Any Pod of every namespace named so (an empty podSelector is not the default's).
        {"namespaceSelector": {}, "podSelector": {}},
        # A Prometheus on the host network: no podSelector matches it.
        {"ipBlock": {"cidr": "10.0.0.0/16"}},
    ]
    objects = helm_binary.template(
        values={"networkPolicy": {"scrapers": scrapers}, "metrics": {"port": 9100}}
    )

    rule = the_only_rule(objects)

    assert rule["from"] == scrapers
    assert metrics_port(objects) == 9100
    assert rule["ports"] == [{"protocol": "TCP", "port": 9100}]


def test_chart_without_scrapers_admits_nothing(helm_binary: Helm) -> None:
    objects = helm_binary.template(values={"networkPolicy": {"scrapers": []}})

    spec = find(objects, "NetworkPolicy")["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == []


@pytest.mark.parametrize(
    "egress", [[{"ports": [{"protocol": "TCP", "port": 443}]}], []], ids=["rules", "none"]
)
def test_chart_egress_is_restricted_only_when_set(helm_binary: Helm, egress: list[Obj]) -> None:
    objects = helm_binary.template(values={"networkPolicy": {"egress": egress}})

    spec = find(objects, "NetworkPolicy")["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"] == egress
    assert spec["ingress"][0]["from"] == [SCRAPER]


def test_chart_network_policy_can_be_turned_off(helm_binary: Helm) -> None:
    objects = helm_binary.template(values={"networkPolicy": {"enabled": False}})

    assert "NetworkPolicy" not in {o["kind"] for o in objects}


@pytest.mark.stack
def test_chart_notes_name_the_scraper(helm: Helm, cluster: ClusterHelper) -> None:
    namespace = cluster.namespace("psu-np-notes")

    notes = helm.notes(release=f"np-{namespace.rsplit('-', 1)[1]}", namespace=namespace)

    assert json.dumps(SCRAPER, separators=(",", ":"), sort_keys=True) in notes
