"""Which Kubernetes APIs the project uses, and which an API server serves.

Used: every lightkube resource that ``src/`` imports (the controller, its CLI commands and
the plugin; a subresource such as ``serviceaccounts/token`` under its parent's group version),
and every kind the shipped manifests and the chart's default render create. The plugin talks
to the kubelet only (``credentialprovider.kubelet.k8s.io/v1``), which no API server serves.

Served: from discovery (``/api/v1``, ``/apis`` and each group version in it), as
``{groupVersion: {resource: kind}}``. ``served-apis/<version>.json`` holds that document for
the oldest version tested, so that ``make unit`` catches an API it lacks without starting it;
record it again when the oldest version changes:

    KUBERNETES_VERSION=v1.30.14 uv run python -m tests.kube.served_apis
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devstack.binaries import REPO, find_binaries, find_helm
from devstack.kubeversions import KubeVersion, oldest
from tests.deploy.support import CONFIG, Helm, kustomize

Served = dict[str, dict[str, str]]  # groupVersion -> resource -> kind

RECORDED = Path(__file__).resolve().parent / "served-apis"
SOURCES = REPO / "src" / "pull_secret_updater"
#: The kustomizations a user applies (config/components/* are added to one of them).
MANIFESTS = (
    CONFIG,
    CONFIG / "without-admission",
    CONFIG / "namespace-scoped",
    CONFIG / "credential-provider",
)


def recorded_path(version: KubeVersion) -> Path:
    return RECORDED / f"{version}.json"


def read_recorded(version: KubeVersion) -> Served:
    document = json.loads(recorded_path(version).read_text())
    return {gv: dict(resources) for gv, resources in document["resources"].items()}


def served_resources(get: Callable[[str], Any]) -> Served:
    """Discovery, through ``get(path) -> JSON``."""
    served: Served = {}
    group_versions = ["v1"]
    for group in get("/apis")["groups"]:
        group_versions += [v["groupVersion"] for v in group["versions"]]
    for gv in group_versions:
        path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        served[gv] = {r["name"]: r["kind"] for r in get(path)["resources"]}
    return served


def _group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def resources_used_by_the_code() -> set[tuple[str, str]]:
    """(groupVersion, resource) for every lightkube resource imported under src/."""
    used: set[tuple[str, str]] = set()
    for path in sorted(SOURCES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            if not node.module.startswith("lightkube.resources."):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                info = getattr(module, alias.name)._api_info
                if info.parent is not None:
                    gv = _group_version(info.parent.group, info.parent.version)
                    used.add((gv, f"{info.plural}/{info.action}"))
                else:
                    gv = _group_version(info.resource.group, info.resource.version)
                    used.add((gv, info.plural))
    return used


def _objects() -> Iterator[dict[str, Any]]:
    for directory in MANIFESTS:
        yield from kustomize(directory)
    yield from Helm(find_helm()).template()


def kinds_in_the_manifests() -> set[tuple[str, str]]:
    """(apiVersion, kind) of every object config/ and the chart create."""
    return {(obj["apiVersion"], obj["kind"]) for obj in _objects()}


def missing_from(served: Served) -> list[str]:
    """What the code or the manifests use that ``served`` lacks, readable; empty if nothing."""
    missing = [
        f"{gv} {resource} (used in src/)"
        for gv, resource in sorted(resources_used_by_the_code())
        if resource not in served.get(gv, {})
    ]
    missing += [
        f"{gv} {kind} (in config/ or the chart)"
        for gv, kind in sorted(kinds_in_the_manifests())
        if kind not in served.get(gv, {}).values()
    ]
    return missing


def _record() -> Path:
    """Start the selected version's API server, and write what it serves."""
    from devstack import pki
    from devstack.cluster import ControlPlane

    binaries = find_binaries()
    version = KubeVersion.parse(binaries.kubernetes_version)
    with tempfile.TemporaryDirectory(prefix="psu-discovery-") as tmp:
        workdir = Path(tmp)
        control_plane = ControlPlane(workdir, binaries=binaries, ca=pki.create_ca(workdir))
        control_plane.start()
        try:
            with control_plane.admin.client() as client:

                def get(path: str) -> Any:
                    response = client.get(path)
                    response.raise_for_status()
                    return response.json()

                served = served_resources(get)
        finally:
            control_plane.stop()
    RECORDED.mkdir(exist_ok=True)
    path = recorded_path(version)
    document = {"gitVersion": str(version), "resources": served}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    written = _record()
    print(written)
    if KubeVersion.parse(written.stem) != oldest():
        print(f"note: the oldest version tested is {oldest()}", file=sys.stderr)
