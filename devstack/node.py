"""A real node for the local stack: containerd and a kubelet, plus the controllers that turn
Deployments into Pods on it (kube-controller-manager, kube-scheduler).

With it, Pods really pull with their ``imagePullSecrets`` and the controller's Deployment runs
as a Pod from the project's image. Everything is built from the same Kubernetes module as the
API server (``hack/build-testbins.sh node``) and lives in the stack's directory; what cannot
(kernel tunables, a cgroup root, a few hard-coded paths, mounts, shims) is recorded and put
back by ``devstack.hoststate``. Facts of the machines this runs on, and how they are met:

- cgroup v1 hosts: ``failCgroupV1: false`` and the cgroupfs driver (there is no systemd);
- VMs that forbid lowering ``oom_score_adj``: containerd's ``restrict_oom_score_adj``, and the
  kubelet keeps its own score;
- no internet: the sandbox ("pause") image is built here from ``hack/tiny`` and imported with
  ``ctr``; it is pinned, so image garbage collection keeps it;
- everything listens on loopback, so a Pod that must reach the stack (the controller) uses
  ``hostNetwork: true``. Other Pods, such as the quickstart's, get a network of their own: a
  bridge per node with no address on the host, no gateway and no masquerading (containerd
  pulls on the host, the Pod itself needs no network). The kubelet leaves the node IP to its
  own detection (loopback is refused there);
- no iptables chains (``makeIPTablesUtilChains: false``), pod logs under the stack's directory,
  and ``protectKernelDefaults``: the kubelet checks the tunables that ``hoststate`` set.

containerd trusts the stack's CA for the registry through a ``hosts.toml``; the registry's
token realm is reached with the same TLS settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from devstack import hoststate, oci, pki, shutdown
from devstack.binaries import NodeBinaries
from devstack.cluster import ControlPlane, write_kubeconfig
from devstack.kubeversions import KubeVersion, kubelet_config
from devstack.procs import Process, free_port, wait_until

NODE_NAME = "psu-node"
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for the CRI
# A local name: if the import were missing, containerd would fail at once instead of trying
# registry.k8s.io.
PAUSE_IMAGE = "localhost/pull-secret-updater/pause:tiny"
# Only inside Pods: the bridge has no address on the host, so this never meets a host route.
POD_SUBNET = "10.123.0.0/24"
_MAX_SOCKET_DIR = 40  # shim sockets are <dir>/<64 hex>; a unix socket path has 108 bytes


class NodeError(RuntimeError):
    pass


class Node:
    """containerd + kubelet registered as Node ``name``, with kube-controller-manager and
    kube-scheduler; ``start()`` returns when the Node is Ready."""

    def __init__(
        self,
        workdir: Path,
        *,
        control_plane: ControlPlane,
        ca: pki.CA,
        binaries: NodeBinaries,
        registries: tuple[str, ...],
        host_names: tuple[str, ...] = (),
        name: str = NODE_NAME,
    ) -> None:
        """``registries``: host:port of each registry containerd trusts the stack's CA for;
        ``host_names``: names that must resolve to 127.0.0.1 while the node runs (/etc/hosts,
        see ``devstack.hoststate``)."""
        self.name = name
        self.workdir = workdir
        self.control_plane = control_plane
        self._ca = ca
        self._bin = binaries
        self._registries = registries
        self.node_id = secrets.token_hex(4)
        self.log_dir = control_plane.log_dir
        self.pki_dir = workdir / "pki"
        self.containerd_socket = workdir / "containerd.sock"
        self.shim_socket_dir = workdir / "s"
        self.kubelet_root = workdir / "kubelet"
        self.pod_logs = workdir / "pod-logs"
        self.cgroup_root = f"/psu-node-{self.node_id}"
        self.bridge = f"psu-{self.node_id}"  # also the CNI network's name
        self.kubelet_port = free_port()
        self.timings: dict[str, float] = {}
        self._claim = hoststate.NodeClaim(
            node_id=self.node_id,
            owner_pid=os.getpid(),
            owner_start=hoststate.start_time(os.getpid()) or "",
            workdir=str(workdir),
            cgroup_root=self.cgroup_root,
            containerd_socket=str(self.containerd_socket),
            bridge=self.bridge,
            hosts=host_names,
        )
        self._acquired = False
        for d in (self.workdir, self.pki_dir, self.pod_logs, self.shim_socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.containerd, self.kubelet, self.controller_manager, self.scheduler = self._processes()

    # -- configuration ---------------------------------------------------------------------

    def _kubeconfig(self, stem: str, common_name: str, organizations: tuple[str, ...]) -> Path:
        cert = pki.issue_cert(
            self._ca,
            self.pki_dir,
            stem=stem,
            common_name=common_name,
            organizations=organizations,
            client=True,
        )
        return write_kubeconfig(
            self.pki_dir / f"{stem}.kubeconfig",
            server=self.control_plane.server,
            ca_file=self._ca.cert_file,
            user=common_name,
            client_cert=cert,
        )

    def _write_containerd_config(self) -> Path:
        certs_d = self.workdir / "certs.d"
        for registry in self._registries:
            host_dir = certs_d / registry
            host_dir.mkdir(parents=True, exist_ok=True)
            (host_dir / "hosts.toml").write_text(
                f'server = "https://{registry}"\n\n'
                f'[host."https://{registry}"]\n'
                '  capabilities = ["pull", "resolve"]\n'
                f'  ca = "{self._ca.cert_file}"\n'
            )
        cni = self.workdir / "cni" / "net.d"
        cni.mkdir(parents=True, exist_ok=True)
        bridge = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": False,
            "ipMasq": False,
            "hairpinMode": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET}]],
                "dataDir": str(self.workdir / "cni" / "ipam"),
            },
        }
        (cni / "10-pods.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": self.bridge, "plugins": [bridge]})
        )
        d = self.workdir / "containerd"
        cri = "plugins.'io.containerd.cri.v1"
        config = f"""\
version = 3
root = "{d / "root"}"
state = "{d / "state"}"
imports = []

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[{cri}.images']
  snapshotter = "overlayfs"
  [{cri}.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
  [{cri}.images'.registry]
    config_path = "{certs_d}"

[{cri}.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [{cri}.runtime'.containerd.runtimes.runc.options]
    BinaryName = "{self._bin.runc}"
    Root = "{self.workdir / "runc"}"
    SystemdCgroup = false
  [{cri}.runtime'.cni]
    bin_dirs = ["{self._bin.cni_dir}"]
    conf_dir = "{cni}"

[plugins.'io.containerd.internal.v1.opt']
  path = "{d / "opt"}"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = "{self.shim_socket_dir}"
"""
        path = d / "config.toml"
        d.mkdir(parents=True, exist_ok=True)
        path.write_text(config)
        return path

    def _write_kubelet_config(self) -> Path:
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "imageServiceEndpoint": f"unix://{self.containerd_socket}",
            # The API server reaches the kubelet (logs, exec) at the node's detected address.
            "address": "0.0.0.0",
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self._ca.cert_file)},
            },
            "authorization": {"mode": "Webhook"},
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": True,
            "oomScoreAdj": 0,
            "podLogsDir": str(self.pod_logs),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            "failSwapOn": False,
            # A busy shared disk must not evict the tests' Pods.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }
        # Fields and feature gates that differ by version: devstack.kubeversions.
        config = kubelet_config(KubeVersion.parse(self._bin.kubernetes_version), config)
        path = self.workdir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _processes(self) -> tuple[Process, Process, Process, Process]:
        endpoint = f"unix://{self.containerd_socket}"
        (self.workdir / "crictl.yaml").write_text(
            yaml.safe_dump({"runtime-endpoint": endpoint, "image-endpoint": endpoint})
        )
        system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env = {"PATH": f"{self._bin.containerd_dir}:{system_path}", "HOME": str(self.workdir)}
        containerd = Process(
            "containerd",
            [str(self._bin.containerd), f"--config={self._write_containerd_config()}"],
            log_dir=self.log_dir,
            env=env,
        )
        kubelet_kubeconfig = self._kubeconfig(
            "kubelet", f"system:node:{self.name}", ("system:nodes",)
        )
        kubelet = Process(
            "kubelet",
            [
                str(self._bin.kubelet),
                f"--config={self._write_kubelet_config()}",
                f"--kubeconfig={kubelet_kubeconfig}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.kubelet_root / 'pki'}",
                f"--hostname-override={self.name}",
                "--v=1",
            ],
            log_dir=self.log_dir,
            env=env,
        )
        controller_manager = self._control_plane_process(
            "kube-controller-manager",
            self._bin.kube_controller_manager,
            kubeconfig=self._kubeconfig("controller-manager", "system:kube-controller-manager", ()),
            env=env,
            extra=(
                # Each controller acts as its own ServiceAccount, with the bootstrap RBAC.
                "--use-service-account-credentials=true",
                f"--root-ca-file={self._ca.cert_file}",
                "--cluster-name=psu-local",
            ),
        )
        scheduler = self._control_plane_process(
            "kube-scheduler",
            self._bin.kube_scheduler,
            kubeconfig=self._kubeconfig("scheduler", "system:kube-scheduler", ()),
            env=env,
        )
        return containerd, kubelet, controller_manager, scheduler

    def _control_plane_process(
        self,
        name: str,
        binary: Path,
        *,
        kubeconfig: Path,
        env: dict[str, str],
        extra: Sequence[str] = (),
    ) -> Process:
        """A controller-manager or scheduler of this node: it talks to the API server with
        ``kubeconfig``, serves no port and elects no leader (it is the only one)."""
        return Process(
            name,
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--secure-port=0",
                "--leader-elect=false",
                *extra,
                "--v=1",
            ],
            log_dir=self.log_dir,
            env=env,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def check_host(self) -> None:
        """Fail early, with the reason, where a node cannot run."""
        if os.geteuid() != 0:
            raise NodeError("the node needs root (containerd, runc, cgroups, mounts)")
        if len(str(self.shim_socket_dir)) > _MAX_SOCKET_DIR:
            raise NodeError(
                f"{self.shim_socket_dir} is too long for containerd's shim sockets "
                f"(at most {_MAX_SOCKET_DIR} characters): use a shorter stack directory"
            )

    def start(self) -> Node:
        self.check_host()
        try:
            self._timed("host", self._acquire)
            self._timed("containerd", self._start_containerd)
            self._timed("pause image", self._import_pause_image)
            self.controller_manager.start()
            self.scheduler.start()
            self._timed("kubelet", self._start_kubelet)
            self._timed("default ServiceAccount", self._wait_service_accounts)
        except BaseException:
            self.stop()
            raise
        return self

    def _timed(self, what: str, step: Any) -> None:
        started = time.monotonic()
        step()
        self.timings[what] = round(time.monotonic() - started, 2)

    def _acquire(self) -> None:
        # Before the call: a stop that lands just after it must still release the claim.
        self._acquired = True
        hoststate.acquire(self._claim)

    def _start_containerd(self) -> None:
        self.containerd.start()
        wait_until(
            lambda: self.ctr("version", check=False).returncode == 0,
            what="waiting for containerd",
            timeout=30,
            interval=0.2,
            process=self.containerd,
        )

    def _import_pause_image(self) -> None:
        layout = self.workdir / "pause"
        spec = oci.ImageSpec(
            executables={"/pause": self._bin.tiny.read_bytes()},
            entrypoint=["/pause"],
            user="65535:65535",
        )
        oci.write_layout(layout, spec, tag=PAUSE_IMAGE.rsplit(":", 1)[1], name=PAUSE_IMAGE)
        archive = oci.archive(layout, self.workdir / "pause.tar")
        self.ctr("images", "import", str(archive))

    def _start_kubelet(self) -> None:
        self.kubelet.start()
        wait_until(
            self.ready,
            what=f"waiting for Node {self.name} to be Ready",
            timeout=120,
            interval=0.5,
            process=self.kubelet,
        )

    def _wait_service_accounts(self) -> None:
        # kube-controller-manager is up once it has created the default ServiceAccount.
        wait_until(
            lambda: bool(
                self.control_plane.kubectl(
                    "-n", "default", "get", "serviceaccount", "default", "-o", "name", check=False
                )
            ),
            what="waiting for kube-controller-manager (the default ServiceAccount)",
            timeout=60,
            interval=0.5,
            process=self.controller_manager,
        )

    def ready(self) -> bool:
        out = self.control_plane.kubectl("get", "node", self.name, "-o", "json", check=False)
        if not out:
            return False
        conditions = json.loads(out).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def stop(self) -> None:
        """Stop everything and leave the host as it was (see ``devstack.hoststate``); a stop
        signal meanwhile waits until it is done (``devstack.shutdown``)."""
        with shutdown.deferred():
            try:
                for process in (self.controller_manager, self.scheduler, self.kubelet):
                    process.stop()
                if self.containerd.running():
                    # Stop and remove every Pod while containerd can still do it cleanly.
                    with contextlib.suppress(subprocess.SubprocessError, OSError):
                        self.crictl("rmp", "--all", "--force", check=False, timeout=60)
                    self.containerd.stop()
            finally:
                if self._acquired:
                    hoststate.release(self._claim)
                    self._acquired = False

    # -- for tests and the demo ------------------------------------------------------------

    def crictl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        config = self.workdir / "crictl.yaml"
        return self._run([str(self._bin.crictl), f"--config={config}", *args], check, timeout)

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self._bin.ctr), f"--address={self.containerd_socket}"]
        return self._run([*argv, f"--namespace={K8S_NAMESPACE}", *args], check, timeout)

    @staticmethod
    def _run(argv: list[str], check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise NodeError(f"{' '.join(argv[:3])}...: {result.stderr.strip()[-2000:]}")
        return result

    def images(self) -> list[str]:
        listing = json.loads(self.crictl("images", "--output=json").stdout)
        return [tag for image in listing.get("images", []) for tag in image.get("repoTags") or []]

    def remove_image(self, reference: str) -> None:
        """Forget a pulled image, so the next Pod that uses it pulls it again."""
        if reference in self.images():
            self.crictl("rmi", reference)

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """What the container wrote (all restarts), read from the kubelet's pod logs."""
        parts = []
        for directory in sorted(self.pod_logs.glob(f"{namespace}_{pod}_*")):
            for log in sorted((directory / container).glob("*.log")):
                parts.append(log.read_text(errors="replace"))
        return "".join(parts)

    def log_tails(self, lines: int = 30) -> str:
        processes = (self.kubelet, self.containerd, self.controller_manager, self.scheduler)
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(lines)}" for p in processes)
