"""Where the stack's binaries are: the cache that ``hack/build-testbins.sh`` fills, by version."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_VERSIONS_FILE = REPO / "hack" / "versions.env"
_BUILD_SCRIPT = REPO / "hack" / "build-testbins.sh"


def versions() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in _VERSIONS_FILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def cache_dir() -> Path:
    if "PSU_CACHE_DIR" in os.environ:
        return Path(os.environ["PSU_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "pull-secret-updater"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    registry: Path
    skopeo: Path


class MissingBinary(RuntimeError):
    pass


def _system(name: str, hint: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise MissingBinary(f"{name} is not installed: {hint}")
    return Path(found)


def find_binaries(*, build: bool = False) -> Binaries:
    """Locate every binary; with ``build``, run the build script first (a no-op when cached)."""
    if build:
        subprocess.run(["bash", str(_BUILD_SCRIPT)], check=True, stdout=subprocess.DEVNULL)
    v = versions()
    bindir = cache_dir() / "bin"
    etcd = bindir / f"etcd-{v['ETCD_VERSION']}"
    apiserver = bindir / f"kube-apiserver-{v['KUBERNETES_VERSION']}"
    for path in (etcd, apiserver):
        if not path.exists():
            raise MissingBinary(f"{path} is missing: run hack/build-testbins.sh")
    built_kubectl = bindir / f"kubectl-{v['KUBERNETES_VERSION']}"
    kubectl = (
        built_kubectl
        if built_kubectl.exists()
        else _system(
            "kubectl", "run hack/build-testbins.sh (it builds kubectl when the machine has none)"
        )
    )
    return Binaries(
        etcd=etcd,
        kube_apiserver=apiserver,
        kubectl=kubectl,
        registry=_system("docker-registry", "apt-get install docker-registry"),
        skopeo=_system("skopeo", "apt-get install skopeo"),
    )


def find_helm(*, build: bool = False) -> Path:
    """The helm that ``hack/build-testbins.sh helm`` built, else the machine's.

    Optional: only the chart's tests need it. With ``build``, build it first (a no-op when
    cached; the first build takes a few minutes). Raises ``MissingBinary`` if there is none.
    """
    if build:
        subprocess.run(["bash", str(_BUILD_SCRIPT), "helm"], check=True, stdout=subprocess.DEVNULL)
    built = cache_dir() / "bin" / f"helm-{versions()['HELM_VERSION']}"
    if built.exists():
        return built
    return _system("helm", "run hack/build-testbins.sh helm")
