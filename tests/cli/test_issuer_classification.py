"""The kind of cluster is recognised from its service-account issuer URL alone."""

from __future__ import annotations

import pytest

from pull_secret_updater.tools.identity import classify_issuer

GKE = "https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/prod"
EKS = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
AKS = (
    "https://eastus.oic.prod-aks.azure.com/"
    "72f988bf-86f1-41af-91ab-2d7cd011db47/b3b5f8a4-1f45-4d67-9e4a-55cb1f8e5d2f/"
)


@pytest.mark.parametrize(
    ("issuer", "kind"),
    [
        pytest.param(GKE, "gke", id="gke"),
        pytest.param(GKE + "/", "gke", id="gke-trailing-slash"),
        pytest.param(
            "https://container.googleapis.com/v1/projects/p/zones/z/clusters/c",
            "public",
            id="googleapis-other-path",
        ),
        pytest.param(EKS, "eks", id="eks"),
        pytest.param(
            "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/ABCDEF0123", "eks", id="eks-china"
        ),
        pytest.param("https://oidc.eks.us-east-1.amazonaws.com/other", "public", id="eks-no-id"),
        pytest.param(AKS, "aks", id="aks"),
        pytest.param(
            "https://westeurope.oic.prod-aks.azure.com/tenant/guid/", "aks", id="aks-west-europe"
        ),
        pytest.param("https://oic.prod-aks.azure.com/x/", "public", id="aks-bare-domain"),
        pytest.param("https://kubernetes.default.svc.cluster.local", "kind", id="kind"),
        pytest.param("https://kubernetes.default.svc", "kind", id="kubeadm-short"),
        pytest.param("https://kubernetes.default.svc.cluster.local/", "kind", id="kind-slash"),
        pytest.param("https://kubernetes.default.svc.mycluster.local", "kind", id="custom-domain"),
        pytest.param("https://api.cluster.local", "private", id="cluster-local"),
        pytest.param("https://oidc.kube-system.svc", "private", id="svc"),
        pytest.param("https://k8s.corp.internal", "private", id="internal"),
        pytest.param("https://localhost:6443", "private", id="localhost"),
        pytest.param("https://kubernetes", "private", id="no-dot"),
        pytest.param("https://127.0.0.1:6443", "private", id="loopback"),
        pytest.param("https://10.0.0.1:6443", "private", id="rfc1918-10"),
        pytest.param("https://192.168.49.2:8443", "private", id="minikube"),
        pytest.param("https://172.18.0.2:6443", "private", id="rfc1918-172"),
        pytest.param("https://100.64.1.1", "private", id="cgnat"),
        pytest.param("https://169.254.1.1", "private", id="link-local"),
        pytest.param("https://[::1]:6443", "private", id="ipv6-loopback"),
        pytest.param("https://[fd00::1]", "private", id="ipv6-ula"),
        pytest.param("http://oidc.example.com", "private", id="plain-http"),
        pytest.param("https://", "private", id="no-host"),
        pytest.param("https://8.8.8.8/oidc", "public", id="public-ip"),
        pytest.param("https://oidc.example.com", "public", id="public-name"),
        pytest.param("https://token.actions.githubusercontent.com", "public", id="public-deep"),
        pytest.param("https://storage.googleapis.com/my-bucket/oidc", "public", id="public-bucket"),
        pytest.param("https://k8s.latest.example.com", "public", id="not-the-test-tld"),
    ],
)
def test_issuer_kind(issuer: str, kind: str) -> None:
    assert classify_issuer(issuer).kind == kind


@pytest.mark.parametrize(
    ("issuer", "public"),
    [
        (GKE, True),
        (EKS, True),
        (AKS, True),
        ("https://oidc.example.com", True),
        ("https://kubernetes.default.svc.cluster.local", False),
        ("https://10.0.0.1", False),
    ],
)
def test_only_public_issuers_do_without_keys(issuer: str, public: bool) -> None:
    assert classify_issuer(issuer).public is public


@pytest.mark.parametrize(
    ("issuer", "name"),
    [
        (GKE, "gke-pull-secrets"),
        (EKS, "eks-pull-secrets"),
        (AKS, "aks-pull-secrets"),
        ("https://kubernetes.default.svc.cluster.local", "kind-pull-secrets"),
        ("https://10.0.0.1", "cluster-pull-secrets"),
        ("https://oidc.example.com", "cluster-pull-secrets"),
    ],
)
def test_default_identity_name_follows_the_kind(issuer: str, name: str) -> None:
    assert classify_issuer(issuer).default_name == name


@pytest.mark.parametrize(
    ("issuer", "words"),
    [
        (GKE, ["my-project", "us-central1", "prod"]),
        (EKS, ["eu-west-1"]),
        (AKS, ["eastus"]),
        ("https://kubernetes.default.svc.cluster.local", ["in-cluster", "KinD"]),
        ("https://127.0.0.1:6443", ["loopback"]),
        ("https://10.0.0.1", ["private"]),
        ("https://kubernetes", ["no dot"]),
        ("https://api.cluster.local", [".local"]),
        ("http://oidc.example.com", ["https"]),
        ("https://oidc.example.com", ["/.well-known/openid-configuration"]),
    ],
)
def test_the_reason_says_why(issuer: str, words: list[str]) -> None:
    reason = classify_issuer(issuer).reason
    for word in words:
        assert word in reason
