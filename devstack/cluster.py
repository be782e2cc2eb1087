"""A real Kubernetes control plane on loopback: etcd and kube-apiserver.

The service-account issuer is set the way KinD sets it, so the cluster's OIDC discovery
document and JWKS look like a KinD cluster's and an identity created for KinD works unchanged.
On its own it has no scheduler, kubelet or controller-manager: Secrets, ServiceAccounts, RBAC,
Leases, Events and admission policies are all API-server objects, which is all the controller
touches. ``devstack.node`` adds them when Pods must really run.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
import yaml

from devstack import pki
from devstack.binaries import Binaries
from devstack.kubeversions import KubeVersion, apiserver_args
from devstack.procs import Process, free_port, wait_until

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Metadata-level records of every write to the objects the controller touches, so tests can
# tell who wrote what and when (leader failover, request rates).
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "resources": [
                {"group": "", "resources": ["secrets", "events"]},
                {"group": "coordination.k8s.io", "resources": ["leases"]},
            ],
        },
        {"level": "None"},
    ],
}


class KubectlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Credentials:
    """How to reach the API server as the cluster admin."""

    server: str
    ca_file: Path
    client_cert: pki.CertPair
    kubeconfig: Path

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert.cert), str(self.client_cert.key))
        return ctx

    def client(self, *, timeout: float = 10.0) -> httpx2.Client:
        return httpx2.Client(base_url=self.server, verify=self.ssl_context(), timeout=timeout)


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: Path,
    user: str,
    client_cert: pki.CertPair | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> Path:
    user_entry: dict[str, str] = {}
    if client_cert is not None:
        user_entry = {
            "client-certificate": str(client_cert.cert),
            "client-key": str(client_cert.key),
        }
    if token is not None:
        user_entry = {"token": token}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [
            {
                "name": user,
                "context": {"cluster": "local", "user": user, "namespace": namespace},
            }
        ],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver in ``workdir``; ``start()`` returns when /readyz answers ok.

    ``extra_apiserver_args`` go last on kube-apiserver's command line (e.g. an API turned off).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        binaries: Binaries,
        ca: pki.CA,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self._bin = binaries
        self._ca = ca
        self.version = KubeVersion.parse(binaries.kubernetes_version)
        self.pki_dir = workdir / "pki"
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.etcd_data = workdir / "etcd"
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self._etcd_peer = f"http://127.0.0.1:{free_port()}"
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.audit_log = self.log_dir / "audit.log"
        serving = pki.issue_cert(
            ca,
            self.pki_dir,
            stem="apiserver",
            common_name="kube-apiserver",
            hosts=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        self._serving = serving
        self._sa_keys = pki.create_service_account_keys(self.pki_dir)
        admin = pki.issue_cert(
            ca,
            self.pki_dir,
            stem="admin",
            common_name="kubernetes-admin",
            organizations=("system:masters",),
            client=True,
        )
        self.admin = Credentials(
            server=self.server,
            ca_file=ca.cert_file,
            client_cert=admin,
            kubeconfig=write_kubeconfig(
                workdir / "kubeconfig",
                server=self.server,
                ca_file=ca.cert_file,
                user="kubernetes-admin",
                client_cert=admin,
            ),
        )
        # How the API server authenticates to a node's kubelet (logs, exec, port-forward).
        kubelet_client = pki.issue_cert(
            ca,
            self.pki_dir,
            stem="apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        )
        audit_policy = self.pki_dir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(_AUDIT_POLICY))
        self.etcd = Process(
            "etcd",
            [
                str(self._bin.etcd),
                "--name=default",
                f"--data-dir={self.etcd_data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={self._etcd_peer}",
                f"--initial-advertise-peer-urls={self._etcd_peer}",
                f"--initial-cluster=default={self._etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            log_dir=self.log_dir,
        )
        self.apiserver = Process(
            "kube-apiserver",
            [
                str(self._bin.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                *apiserver_args(self.version),
                f"--secure-port={self.port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_file}",
                "--authorization-mode=Node,RBAC",
                # As on kubeadm and KinD: a kubelet may act only for its own Pods, and request
                # tokens only with audiences its Pods mount or RBAC grants it.
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={self._sa_keys.cert}",
                f"--service-account-signing-key-file={self._sa_keys.key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--profiling=false",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=batch",
                "--audit-log-batch-max-wait=1s",
                "--v=1",
                *extra_apiserver_args,
            ],
            log_dir=self.log_dir,
        )

    def start(self) -> None:
        self.start_etcd()
        self.start_apiserver()

    def start_etcd(self) -> None:
        self.etcd.start()
        with httpx2.Client(timeout=2.0) as client:
            wait_until(
                lambda: client.get(f"{self.etcd_url}/health").json().get("health") == "true",
                what="waiting for etcd to be healthy",
                timeout=60,
                process=self.etcd,
            )

    def start_apiserver(self) -> None:
        self.apiserver.start()
        with self.admin.client(timeout=5.0) as client:
            wait_until(
                lambda: client.get("/readyz").status_code == 200,
                what="waiting for kube-apiserver /readyz",
                timeout=120,
                process=self.apiserver,
            )

    def stop(self) -> None:
        self.apiserver.stop()
        self.etcd.stop()

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same etcd, port and keys."""
        self.apiserver.stop()
        self.start_apiserver()

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision, so older resourceVersions answer 410 Gone."""
        with httpx2.Client(timeout=10.0) as client:
            status = client.post(f"{self.etcd_url}/v3/kv/range", json={"key": "AA=="}).json()
            revision = int(status["header"]["revision"])
            client.post(
                f"{self.etcd_url}/v3/kv/compaction", json={"revision": revision, "physical": True}
            ).raise_for_status()
        return revision

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run the machine's kubectl as the cluster admin; returns stdout."""
        result = subprocess.run(
            [str(self._bin.kubectl), f"--kubeconfig={self.admin.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def jwks(self) -> dict[str, object]:
        with self.admin.client() as client:
            response = client.get("/openid/v1/jwks")
            response.raise_for_status()
            return dict(json.loads(response.text))

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        audience: str | None = None,
        seconds: int = 3600,
    ) -> str:
        """A token for the ServiceAccount from the TokenRequest API."""
        spec: dict[str, object] = {"expirationSeconds": seconds}
        if audience is not None:
            spec["audiences"] = [audience]
        with self.admin.client() as client:
            response = client.post(
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": spec,
                },
            )
            response.raise_for_status()
            return str(response.json()["status"]["token"])

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, seconds: int = 24 * 3600
    ) -> Path:
        """A kubeconfig that acts as exactly this ServiceAccount (a TokenRequest token)."""
        token = self.service_account_token(namespace, name, seconds=seconds)
        return write_kubeconfig(
            path,
            server=self.server,
            ca_file=self._ca.cert_file,
            user=f"system:serviceaccount:{namespace}:{name}",
            token=token,
            namespace=namespace,
        )
