"""The whole local stack: control plane, token service, registry and a test image in it, and
the AWS stand-in (``stack.aws``: moto's server, STS and ECR in front of it in the token
service, and an ECR registry with the same test image), the Google stand-in (``stack.gcp``:
STS and IAM Credentials in the token service, and an Artifact Registry with the same test
image) and the Azure stand-in (``stack.azure``: Entra ID and ACR's OAuth endpoints in the
token service, and an ACR registry with it too).

``LocalStack`` backs both the session-scoped pytest fixtures and ``python -m devstack``
(``make devstack``). Everything lives in one temporary directory that ``stop()`` removes.
``start_node()`` adds a node (``devstack.node``: containerd, kubelet, controller-manager and
scheduler), so Pods really run; it needs root and ``hack/build-testbins.sh node``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack import hoststate, pki, shutdown
from devstack.aws.moto import MotoServer
from devstack.aws.standin import ACCOUNT, REGION, AwsStandIn, ecr_host_name
from devstack.azure.standin import AzureStandIn, acr_host_name
from devstack.binaries import Binaries, NodeBinaries, find_binaries, find_node_binaries
from devstack.cluster import SERVICE_ACCOUNT_ISSUER, ControlPlane
from devstack.gcp.standin import GcpStandIn, gar_host_name
from devstack.node import Node
from devstack.procs import Process, free_port, wait_until
from devstack.registry import Registry, push_test_image
from devstack.tokenservice import TokenServiceAdmin

REGISTRY_TOKEN_ISSUER = "local-registry-token-service"
SA_AUDIENCE = "issuer.enforce.dev"


@dataclass(frozen=True)
class TokenService:
    url: str
    admin_url: str
    admin_token: str
    registry_realm: str
    aws_url: str
    gcp_url: str
    azure_url: str
    process: Process

    def admin(self, ca_file: Path) -> TokenServiceAdmin:
        return TokenServiceAdmin(self.admin_url, self.admin_token, ca_file)


class LocalStack:
    def __init__(
        self,
        workdir: Path | None = None,
        *,
        token_lifetime: int = 3600,
        binaries: Binaries | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or hoststate.make_stack_dir()
        try:
            self._prepare(binaries, token_lifetime)
        except BaseException:
            self._remove_workdir()
            raise

    def _prepare(self, binaries: Binaries | None, token_lifetime: int) -> None:
        self.binaries = binaries or find_binaries()
        self.token_lifetime = token_lifetime
        self.pki_dir = self.workdir / "pki"
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        self.ca = pki.create_ca(self.pki_dir)
        self.ca_file = self.ca.cert_file
        self.control_plane = ControlPlane(self.workdir, binaries=self.binaries, ca=self.ca)
        self._admin_password = secrets.token_urlsafe(16)
        registry_port, ecr_port = free_port(), free_port()
        gar_port, acr_port = free_port(), free_port()
        self.moto = MotoServer(self.workdir / "moto", ca=self.ca, log_dir=self.workdir / "logs")
        self.token_service = self._make_token_service(
            registry_host=f"127.0.0.1:{registry_port}", ecr_port=ecr_port
        )
        self.registry = Registry(
            self.workdir / "registry",
            port=registry_port,
            binary=self.binaries.registry,
            ca=self.ca,
            token_realm=self.token_service.registry_realm,
            token_issuer=REGISTRY_TOKEN_ISSUER,
            token_cert=self._registry_signer.cert,
        )
        self.ecr_registry = self._stand_in_registry(
            "ecr-registry",
            port=ecr_port,
            realm=f"{self.token_service.aws_url}/ecr/token",
            host_name=ecr_host_name(ACCOUNT, REGION),
        )
        self.acr_registry = self._stand_in_registry(
            "acr-registry",
            port=acr_port,
            realm=f"{self.token_service.azure_url}/oauth2/token",
            host_name=acr_host_name(),
        )
        self.azure = AzureStandIn(
            endpoint=self.token_service.azure_url,
            registry=self.acr_registry,
            admin=self.token_admin(),
            issuer=SERVICE_ACCOUNT_ISSUER,
        )
        self.aws = AwsStandIn(
            endpoint=self.token_service.aws_url,
            moto_url=self.moto.url,
            registry=self.ecr_registry,
            ca_file=self.ca_file,
            admin=self.token_admin(),
            issuer=SERVICE_ACCOUNT_ISSUER,
        )
        self.gar_registry = self._stand_in_registry(
            "gar-registry",
            port=gar_port,
            realm=f"{self.token_service.gcp_url}/gar/token",
            host_name=gar_host_name(),
        )
        self.gcp = GcpStandIn(
            endpoint=self.token_service.gcp_url,
            registry=self.gar_registry,
            ca_file=self.ca_file,
            admin=self.token_admin(),
            issuer=SERVICE_ACCOUNT_ISSUER,
        )
        self.timings: dict[str, float] = {}
        self.node: Node | None = None

    def _stand_in_registry(self, name: str, *, port: int, realm: str, host_name: str) -> Registry:
        """A cloud's registry: its own name, and the stand-in's realm for its tokens."""
        return Registry(
            self.workdir / name,
            port=port,
            binary=self.binaries.registry,
            ca=self.ca,
            token_realm=realm,
            token_issuer=REGISTRY_TOKEN_ISSUER,
            token_cert=self._registry_signer.cert,
            name=name,
            host_name=host_name,
        )

    @property
    def registries(self) -> tuple[Registry, ...]:
        """Every registry of the stack: the cgr.dev-like one, then each cloud's."""
        return (self.registry, self.ecr_registry, self.gar_registry, self.acr_registry)

    def _make_token_service(self, *, registry_host: str, ecr_port: int) -> TokenService:
        port, admin_port, realm_port, aws_port = free_port(), free_port(), free_port(), free_port()
        gcp_port, azure_port = free_port(), free_port()
        serving = pki.issue_cert(
            self.ca,
            self.pki_dir,
            stem="tokenservice",
            common_name="token-service",
            hosts=("127.0.0.1", "localhost"),
        )
        self._registry_signer = pki.issue_cert(
            self.ca, self.pki_dir, stem="registry-token-signer", common_name="registry-tokens"
        )
        admin_token = secrets.token_urlsafe(24)
        url = f"https://127.0.0.1:{port}"
        self._token_ready = self.workdir / "tokenservice" / "ready.json"
        self._token_ready.parent.mkdir(parents=True, exist_ok=True)
        process = Process(
            "tokenservice",
            [
                sys.executable,
                "-m",
                "devstack.tokenservice",
                "serve",
                f"--listen=127.0.0.1:{port}",
                f"--admin-listen=127.0.0.1:{admin_port}",
                # The registry's token realm has its own port, so an STS outage (the refuse
                # fault) leaves pulls with still-valid tokens working, as on cgr.dev.
                f"--registry-listen=127.0.0.1:{realm_port}",
                f"--tls-cert={serving.cert}",
                f"--tls-key={serving.key}",
                f"--issuer-url={url}",
                f"--state-dir={self.workdir / 'tokenservice'}",
                f"--registry-key={self._registry_signer.key}",
                f"--registry-cert={self._registry_signer.cert}",
                f"--registry-issuer={REGISTRY_TOKEN_ISSUER}",
                f"--registry-service={registry_host}",
                f"--lifetime={self.token_lifetime}",
                f"--sa-audience={SA_AUDIENCE}",
                f"--admin-token={admin_token}",
                f"--admin-password={self._admin_password}",
                f"--ready-file={self._token_ready}",
                f"--aws-listen=127.0.0.1:{aws_port}",
                f"--aws-moto-url={self.moto.url}",
                f"--aws-moto-ca={self.ca_file}",
                f"--aws-region={REGION}",
                f"--aws-registry-port={ecr_port}",
                f"--gcp-listen=127.0.0.1:{gcp_port}",
                f"--azure-listen=127.0.0.1:{azure_port}",
            ],
            log_dir=self.workdir / "logs",
            cwd=Path(__file__).resolve().parent.parent,
        )
        return TokenService(
            url=url,
            admin_url=f"https://127.0.0.1:{admin_port}",
            admin_token=admin_token,
            registry_realm=f"https://127.0.0.1:{realm_port}/registry/token",
            aws_url=f"https://127.0.0.1:{aws_port}",
            gcp_url=f"https://127.0.0.1:{gcp_port}",
            azure_url=f"https://127.0.0.1:{azure_port}",
            process=process,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            # moto needs a second to start: meanwhile the control plane starts.
            self.moto.start()
            self._timed("control plane", self.control_plane.start)
            self._timed("moto", self.moto.wait_ready)
            self._timed("token service", self._start_token_service)
            self._timed("registries", self._start_registries)
            self._timed("test images, AWS OIDC provider", self._fill_registries_and_iam)
            self._write_summary()
        except BaseException:
            self.stop()
            raise
        return self

    def _timed(self, what: str, step: object) -> None:
        started = time.monotonic()
        assert callable(step)
        step()
        self.timings[what] = round(time.monotonic() - started, 2)

    def _start_token_service(self) -> None:
        self.token_service.process.start()
        wait_until(
            self._token_ready.exists,
            what="waiting for the token service",
            timeout=30,
            process=self.token_service.process,
        )

    def _start_registries(self) -> None:
        for registry in self.registries:
            registry.launch()
        for registry in self.registries:
            registry.wait_ready()

    def start_node(self, *, binaries: NodeBinaries | None = None) -> Node:
        """Start the node (once); returns it when its Node is Ready."""
        if self.node is None:
            node = Node(
                self.workdir / "node",
                control_plane=self.control_plane,
                ca=self.ca,
                binaries=binaries or find_node_binaries(),
                registries=tuple(registry.host for registry in self.registries),
                host_names=(ecr_host_name(ACCOUNT, REGION), gar_host_name(), acr_host_name()),
            )
            self._timed("node", node.start)
            self.node = node
            self._write_summary()
        return self.node

    @property
    def registry_admin(self) -> tuple[str, str]:
        """Credentials that may push and pull anything in the registry (for images the stack
        itself needs, such as the controller's)."""
        return "admin", self._admin_password

    def _push_image(self, registry: Registry) -> None:
        push_test_image(
            skopeo=self.binaries.skopeo,
            tiny=self.binaries.tiny,
            registry=registry,
            ca_file=self.ca_file,
            username="admin",
            password=self._admin_password,
        )

    def _register_cluster_with_aws(self) -> None:
        self.aws.register_cluster(self.control_plane.jwks())

    def _fill_registries_and_iam(self) -> None:
        """The test image into both registries and the cluster into IAM, side by side: each
        mostly waits on another process."""
        self.gcp.register_cluster(self.control_plane.jwks())
        with ThreadPoolExecutor(max_workers=4) as pool:
            done = [
                pool.submit(self._push_image, self.registry),
                pool.submit(self._push_image, self.ecr_registry),
                pool.submit(self._push_image, self.gar_registry),
                pool.submit(self._push_image, self.acr_registry),
                pool.submit(self._register_cluster_with_aws),
                pool.submit(self.azure.register_cluster, self.control_plane.jwks()),
            ]
            for step in done:
                step.result()

    def stop(self) -> None:
        """Stop everything and remove the directory: every step is tried even when one
        before it failed, and a stop signal meanwhile waits until they are done."""
        with shutdown.deferred(), contextlib.ExitStack() as steps:
            # An ExitStack runs them last-in first-out, each even when another failed.
            steps.callback(self._remove_workdir)
            steps.callback(self.control_plane.stop)
            steps.callback(self.moto.stop)
            steps.callback(self.token_service.process.stop)
            steps.callback(self.registry.stop)
            steps.callback(self.ecr_registry.stop)
            steps.callback(self.gar_registry.stop)
            steps.callback(self.acr_registry.stop)
            if self.node is not None:
                node, self.node = self.node, None
                steps.callback(node.stop)

    def _remove_workdir(self) -> None:
        if not self._own_workdir:
            return
        if os.environ.get("PSU_KEEP_STACK") == "1":
            hoststate.disown_stack_dir(self.workdir)
        else:
            hoststate.remove_stack_dir(self.workdir)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what users of the stack need ------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.admin.kubeconfig

    def token_admin(self) -> TokenServiceAdmin:
        return self.token_service.admin(self.ca_file)

    def create_kind_identity(
        self,
        *,
        name: str = "kind-pull-secrets",
        namespace: str = "pull-secret-updater",
        service_account: str = "controller",
    ) -> str:
        """The identity the original KinD instructions create; returns its UID."""
        return self.token_admin().create_identity(
            name=name,
            issuer=SERVICE_ACCOUNT_ISSUER,
            subject=f"system:serviceaccount:{namespace}:{service_account}",
            issuer_keys=json.dumps(self.control_plane.jwks()),
            roles=["registry.pull"],
        )

    def env(self) -> dict[str, str]:
        """Environment for a shell or process that uses the stack (kubectl, chainctl, skopeo)."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PSU_CA_FILE": str(self.ca_file),
            "PSU_TOKENSERVICE_URL": self.token_service.url,
            "PSU_TOKENSERVICE_ADMIN_URL": self.token_service.admin_url,
            "PSU_TOKENSERVICE_ADMIN_TOKEN": self.token_service.admin_token,
            "PSU_REGISTRY": self.registry.host,
            "PSU_TEST_IMAGE": self.registry.image,
            **self.aws.env(),
            **self.gcp.env(),
            **self.azure.env(),
        }

    def _write_summary(self) -> None:
        summary = {
            "workdir": str(self.workdir),
            "apiserver": self.control_plane.server,
            "kubernetes_version": str(self.control_plane.version),
            "node": self.node.name if self.node is not None else None,
            "timings_seconds": self.timings,
            "node_timings_seconds": self.node.timings if self.node is not None else {},
            **self.env(),
        }
        (self.workdir / "stack.json").write_text(json.dumps(summary, indent=2))
