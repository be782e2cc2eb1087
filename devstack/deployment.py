"""The controller as a real Pod on the stack's node: its image, and the shipped manifests with
only what a loopback stack needs changed.

``push_controller_image`` builds the image with ``hack/build-image.sh`` (cached by its inputs)
and pushes it to the stack's registry, from where the kubelet pulls it with an image pull
Secret holding the registry's admin credentials (the controller cannot fill the Secret for its
own image). ``write_overlay`` writes a kustomize overlay over ``config/``; ``chart_values`` and
``post_render`` do the same for the Helm chart. What they change, and why:

- the image: the one just pushed, pulled with ``imagePullPolicy: Always``;
- ``hostNetwork: true``: the API server, the token service and the registry listen on
  loopback. So the metrics port is a free one (two Pods on one node cannot share a host port),
  the Deployment is recreated rather than surged on a change, and the namespace's Pod Security
  level is enforced as ``privileged`` (host networking is outside ``restricted``; the shipped
  level is kept as ``warn``, so anything else outside it still shows);
- ``KUBERNETES_SERVICE_HOST``/``PORT``: there is no kube-proxy to carry the ``kubernetes``
  Service's ClusterIP, so the in-cluster configuration points at the API server's loopback
  address; the ServiceAccount token and CA are the usual in-cluster files;
- the issuer, the registry and the CA bundle of the local token service;
- one replica, and short leader-election timings, so a replacement leads within seconds.

Everything else, the projected token at ``/var/run/chainguard/oidc/oidc-token`` included, is
the shipped configuration.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.binaries import REPO
from devstack.procs import free_port
from devstack.stack import LocalStack

BUILD_SCRIPT = REPO / "hack" / "build-image.sh"
CONFIG = REPO / "config"
IMAGE_REPOSITORY = "pull-secret-updater"
IMAGE_TAG = "dev"
SHIPPED_IMAGE = "ghcr.io/pull-secret-updater/pull-secret-updater"
IMAGE_PULL_SECRET = "controller-image"
CA_CONFIGMAP = "local-ca"
CA_DIR = "/etc/pull-secret-updater/local-ca"
# First build: the two Debian bases (~1.5 min) and the image (~1 min); cached: seconds.
BUILD_TIMEOUT = 1800
FAST_LEADER_ELECTION = {
    "PSU_LEASE_DURATION": "4",
    "PSU_RENEW_DEADLINE": "3",
    "PSU_RETRY_PERIOD": "0.5",
}


class ImageBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class ControllerImage:
    reference: str  # in the stack's registry
    build_seconds: float
    log: str


def image_build_prerequisites() -> list[str]:
    """What is missing to build the image here (empty when it can be built)."""
    missing = [] if os.geteuid() == 0 else ["root (buildah chroot isolation, mmdebstrap)"]
    missing += [t for t in ("buildah", "mmdebstrap", "skopeo") if shutil.which(t) is None]
    return missing


def push_controller_image(stack: LocalStack, *, tag: str = IMAGE_TAG) -> ControllerImage:
    """Build (or reuse) the controller's image and push it to the stack's registry."""
    missing = image_build_prerequisites()
    if missing:
        raise ImageBuildError(f"cannot build the image: missing {', '.join(missing)}")
    reference = f"{stack.registry.host}/{IMAGE_REPOSITORY}:{tag}"
    user, password = stack.registry_admin
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--push", reference, "--creds", f"{user}:{password}",
         "--ca-file", str(stack.ca_file)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ImageBuildError(f"hack/build-image.sh failed:\n{result.stderr[-6000:]}")
    return ControllerImage(reference, round(time.monotonic() - started, 1), result.stderr)


def image_pull_secret(stack: LocalStack, namespace: str) -> dict[str, Any]:
    """A pull Secret with the registry's admin credentials, for the controller's own image."""
    user, password = stack.registry_admin
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {stack.registry.host: {"username": user, "password": password,
                                              "auth": auth}}}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": IMAGE_PULL_SECRET, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def ecr_section(stack: LocalStack, *, ca_bundle: str, token_path: str | None = None) -> str:
    """PSU_PROVIDERS for the ECR provider on the stack's AWS stand-in (`ca_bundle` as the
    controller sees the stack's CA; `token_path` unless the provider's default)."""
    section: dict[str, str] = {
        "kind": "ecr",
        "sts_endpoint": stack.aws.endpoint,
        "ecr_endpoint": stack.aws.endpoint,
        "ca_bundle": ca_bundle,
    }
    if token_path is not None:
        section["token_path"] = token_path
    return json.dumps([section])


def local_env(stack: LocalStack, *, metrics_port: int) -> dict[str, str]:
    """The environment a Pod of the controller needs on the loopback stack."""
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(stack.control_plane.port),
        "PSU_ISSUER": stack.token_service.url,
        "PSU_REGISTRY": stack.registry.host,
        "PSU_METRICS_PORT": str(metrics_port),
        **FAST_LEADER_ELECTION,
    }


@dataclass(frozen=True)
class Overlay:
    directory: Path
    metrics_port: int


def write_overlay(
    stack: LocalStack,
    directory: Path,
    *,
    image: str,
    env: dict[str, str] | None = None,
    replicas: int = 1,
    components: tuple[Path, ...] = (),
    projected: tuple[tuple[str, str], ...] = (),
) -> Overlay:
    """A kustomize overlay of ``config/`` that runs the controller on the stack's node, with
    `components` (such as ``config/components/ecr``) added and, for each (audience, path) of
    `projected`, the controller's projected token of that audience at that path."""
    directory.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    shutil.copy(stack.ca_file, directory / "ca.crt")
    namespace = "pull-secret-updater"
    (directory / "image-pull-secret.yaml").write_text(
        yaml.safe_dump(image_pull_secret(stack, namespace))
    )
    environment = {
        **local_env(stack, metrics_port=metrics_port),
        "PSU_CA_BUNDLE": f"{CA_DIR}/ca.crt",
        **(env or {}),
    }
    container = {
        "name": "controller",
        "imagePullPolicy": "Always",
        "env": [{"name": k, "value": v} for k, v in environment.items()],
        "volumeMounts": [
            {"name": CA_CONFIGMAP, "mountPath": CA_DIR, "readOnly": True},
            *(
                {"name": f"token-{i}", "mountPath": os.path.dirname(path), "readOnly": True}
                for i, (_, path) in enumerate(projected)
            ),
        ],
    }
    token_volumes = [
        {
            "name": f"token-{i}",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "path": os.path.basename(path),
                            "audience": audience,
                            "expirationSeconds": 3600,
                        }
                    }
                ]
            },
        }
        for i, (audience, path) in enumerate(projected)
    ]
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pull-secret-updater", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "imagePullSecrets": [{"name": IMAGE_PULL_SECRET}],
                    "containers": [container],
                    "volumes": [
                        {"name": CA_CONFIGMAP, "configMap": {"name": CA_CONFIGMAP}},
                        *token_volumes,
                    ],
                }
            },
        },
    }
    # Lists that must be replaced, not merged (ports merge by containerPort).
    replace = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/ports",
         "value": [{"name": "metrics", "containerPort": metrics_port}]},
        {"op": "add", "path": "/spec/strategy", "value": {"type": "Recreate"}},
    ]  # fmt: skip
    name, tag = image.rsplit(":", 1)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(CONFIG, directory), "image-pull-secret.yaml"],
        **(
            {"components": [os.path.relpath(c, directory) for c in components]}
            if components
            else {}
        ),
        "images": [{"name": SHIPPED_IMAGE, "newName": name, "newTag": tag}],
        "configMapGenerator": [
            {
                "name": CA_CONFIGMAP,
                "namespace": namespace,
                "files": ["ca.crt"],
                "options": {"disableNameSuffixHash": True},
            }
        ],
        "patches": [
            {"patch": yaml.safe_dump(patch)},
            {
                "patch": yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {
                            "name": namespace,
                            "labels": {
                                "pod-security.kubernetes.io/enforce": "privileged",
                                "pod-security.kubernetes.io/warn": "restricted",
                            },
                        },
                    }
                )
            },
            {
                "target": {"kind": "Deployment", "name": "pull-secret-updater"},
                "patch": yaml.safe_dump(replace),
            },
        ],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return Overlay(directory, metrics_port)


def chart_values(
    stack: LocalStack, *, image: str, metrics_port: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Values for ``helm install`` of the chart on the stack's node (with ``post_render``)."""
    repository, tag = image.rsplit(":", 1)
    # The chart has values for the rest of local_env.
    environment = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(stack.control_plane.port),
        **(env or {}),
    }
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": IMAGE_PULL_SECRET}],
        "issuer": stack.token_service.url,
        "registry": stack.registry.host,
        "caBundle": stack.ca_file.read_text(),
        "replicas": 1,
        "metrics": {"port": metrics_port},
        "leaderElection": {"leaseDuration": 4, "renewDeadline": 3, "retryPeriod": 0.5},
        "extraEnv": [{"name": k, "value": v} for k, v in environment.items()],
    }


def post_render(manifests: str) -> str:
    """What ``helm install --post-renderer`` runs: the chart has no value for host networking,
    so this sets it (and Recreate) on every Deployment. See ``python -m devstack.postrender``."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not doc:
            continue
        if doc.get("kind") == "Deployment":
            spec = doc["spec"]
            spec["strategy"] = {"type": "Recreate"}
            spec["template"]["spec"]["hostNetwork"] = True
            spec["template"]["spec"]["dnsPolicy"] = "ClusterFirstWithHostNet"
        out.append(yaml.safe_dump(doc, sort_keys=False))
    return "---\n".join(out)


def write_post_renderer(directory: Path) -> Path:
    """An executable for ``helm install --post-renderer`` that runs ``post_render``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "post-render"
    script.write_text(
        f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m devstack.postrender\n"
    )
    script.chmod(0o755)
    return script


def pods(stack: LocalStack, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = stack.control_plane.kubectl(
        "-n", namespace, "get", "pods", f"--selector={selector}", "-o", "json"
    )
    return list(json.loads(out)["items"])


def ready_pods(stack: LocalStack, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Running Pods whose containers are all ready, not being deleted."""

    def ready(pod: dict[str, Any]) -> bool:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        return (
            pod["status"].get("phase") == "Running"
            and "deletionTimestamp" not in pod["metadata"]
            and bool(statuses)
            and all(s.get("ready") for s in statuses)
        )

    return [p for p in pods(stack, namespace, selector) if ready(p)]
