"""Where the stack's binaries are: the cache that ``hack/build-testbins.sh`` fills, by version."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_VERSIONS_FILE = REPO / "hack" / "versions.env"
_BUILD_SCRIPT = REPO / "hack" / "build-testbins.sh"
_TINY_SOURCES = (REPO / "hack" / "tiny" / "go.mod", REPO / "hack" / "tiny" / "main.go")


def versions() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in _VERSIONS_FILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def kubernetes_version() -> str:
    """The Kubernetes version whose binaries the stack runs: ``KUBERNETES_VERSION`` from the
    environment, else the one pinned in hack/versions.env (``devstack.kubeversions``)."""
    chosen = os.environ.get("KUBERNETES_VERSION", "").strip()
    if not chosen:
        return versions()["KUBERNETES_VERSION"]
    return chosen if chosen.startswith("v") else f"v{chosen}"


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
    tiny: Path  # hack/tiny: the program in the test image and the pause image
    kubernetes_version: str  # of kube-apiserver (and of kubectl when built)


@dataclass(frozen=True)
class NodeBinaries:
    """What the node runs: built from Go modules (``build-testbins.sh node``) or from Debian."""

    kubelet: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    containerd_dir: Path  # containerd, containerd-shim-runc-v2 (found on PATH by name), ctr
    crictl: Path
    runc: Path
    cni_dir: Path
    tiny: Path
    kubernetes_version: str  # of the kubelet, controller-manager and scheduler

    @property
    def containerd(self) -> Path:
        return self.containerd_dir / "containerd"

    @property
    def ctr(self) -> Path:
        return self.containerd_dir / "ctr"


class MissingBinary(RuntimeError):
    pass


def tiny_path() -> Path:
    """Where ``build-testbins.sh`` puts hack/tiny: named by the hash of its source."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in _TINY_SOURCES)).hexdigest()
    return cache_dir() / "bin" / f"tiny-{digest[:12]}"


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
    k8s = kubernetes_version()
    bindir = cache_dir() / "bin"
    etcd = bindir / f"etcd-{v['ETCD_VERSION']}"
    apiserver = bindir / f"kube-apiserver-{k8s}"
    for path in (etcd, apiserver, tiny_path()):
        if not path.exists():
            raise MissingBinary(
                f"{path} is missing: run KUBERNETES_VERSION={k8s} hack/build-testbins.sh"
            )
    # One kubectl for every version of the matrix: the pinned version's when it was built.
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
        tiny=tiny_path(),
        kubernetes_version=k8s,
    )


# Where Debian's containernetworking-plugins puts the CNI plugins (upstream uses /opt/cni/bin).
CNI_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))


def find_node_binaries(*, build: bool = False) -> NodeBinaries:
    """Locate the node's binaries; with ``build``, build the missing ones first (a no-op when
    cached; the first build takes about 5 minutes after the control plane's)."""
    if build:
        subprocess.run(["bash", str(_BUILD_SCRIPT), "node"], check=True, stdout=subprocess.DEVNULL)
    v = versions()
    bindir = cache_dir() / "bin"
    k8s = kubernetes_version()
    built = {
        "kubelet": bindir / f"kubelet-{k8s}",
        "kube_controller_manager": bindir / f"kube-controller-manager-{k8s}",
        "kube_scheduler": bindir / f"kube-scheduler-{k8s}",
        "crictl": bindir / f"crictl-{v['CRI_TOOLS_VERSION']}",
        "tiny": tiny_path(),
    }
    containerd_dir = bindir / f"containerd-{v['CONTAINERD_VERSION']}"
    missing = [str(p) for p in built.values() if not p.exists()]
    missing += [
        str(containerd_dir / name)
        for name in ("containerd", "containerd-shim-runc-v2", "ctr")
        if not (containerd_dir / name).exists()
    ]
    if missing:
        raise MissingBinary(
            f"{', '.join(missing)} missing: run KUBERNETES_VERSION={k8s} "
            "hack/build-testbins.sh node (or hack/setup.sh)"
        )
    cni_dir = next((d for d in CNI_DIRS if (d / "loopback").exists()), None)
    if cni_dir is None:
        raise MissingBinary(
            "the CNI loopback plugin is not installed (looked in "
            f"{', '.join(map(str, CNI_DIRS))}): apt-get install containernetworking-plugins"
        )
    return NodeBinaries(
        containerd_dir=containerd_dir,
        runc=_system("runc", "apt-get install runc"),
        cni_dir=cni_dir,
        kubernetes_version=k8s,
        **built,
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


def find_ecr_credential_provider(*, build: bool = False) -> Path:
    """The official AWS ECR kubelet credential provider (k8s.io/cloud-provider-aws) that
    ``hack/build-testbins.sh ecr`` built, at ``ECR_CREDENTIAL_PROVIDER_VERSION``.

    Only the fidelity check of the AWS stand-in and the plugin start-up benchmark's baseline
    need it (``devstack/ecrplugin.py`` runs it). With ``build``, build it first (a no-op when
    cached; the first build takes about a minute). Raises ``MissingBinary`` if it is not built:
    a binary of another version is never used in its place.
    """
    if build:
        subprocess.run(["bash", str(_BUILD_SCRIPT), "ecr"], check=True, stdout=subprocess.DEVNULL)
    version = versions()["ECR_CREDENTIAL_PROVIDER_VERSION"]
    built = cache_dir() / "bin" / f"ecr-credential-provider-{version}"
    if not built.exists():
        raise MissingBinary(
            f"{built} is missing: run hack/build-testbins.sh ecr (or hack/setup.sh)"
        )
    return built
