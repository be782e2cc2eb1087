"""Install the controller into the local stack the way a user would, and run it as a process.

``install_manifests`` applies ``config/`` (namespace, ServiceAccount, RBAC, Deployment) with
kubectl. There is no kubelet here, so instead of the Deployment's Pods the controller runs as
a local process that authenticates as the ``controller`` ServiceAccount with a token from the
TokenRequest API: it has exactly the RBAC of the shipped manifests, so a permission mistake
fails the tests. Its projected token (audience ``issuer.enforce.dev``) is a file, as in a Pod.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2

from devstack.binaries import REPO
from devstack.procs import Process, free_port, wait_until
from devstack.stack import SA_AUDIENCE, LocalStack

NAMESPACE = "pull-secret-updater"
SERVICE_ACCOUNT = "controller"


def install_manifests(stack: LocalStack, *, path: Path = REPO / "config") -> None:
    stack.control_plane.kubectl("apply", "-k", str(path))


class ControllerProcess:
    """One replica of the controller, as the ``controller`` ServiceAccount."""

    def __init__(
        self,
        stack: LocalStack,
        *,
        name: str = "controller",
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        audiences: tuple[str, ...] = (),
    ) -> None:
        self.stack = stack
        self.name = name
        self.workdir = stack.workdir / "controllers" / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = stack.control_plane.service_account_kubeconfig(
            NAMESPACE, SERVICE_ACCOUNT, self.workdir / "kubeconfig"
        )
        self.token_path = self.workdir / "oidc" / "oidc-token"
        self.token_path.parent.mkdir(exist_ok=True)
        #: More projected tokens, one per audience (another provider's, such as ECR's).
        self.audiences = audiences
        self.rotate_projected_token()
        self.port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.workdir),
            "PSU_KUBECONFIG": str(self.kubeconfig),
            "PSU_ISSUER": stack.token_service.url,
            "PSU_REGISTRY": stack.registry.host,
            "PSU_CA_BUNDLE": str(stack.ca_file),
            "PSU_TOKEN_PATH": str(self.token_path),
            "PSU_METRICS_HOST": "127.0.0.1",
            "PSU_METRICS_PORT": str(self.port),
            "PSU_NAMESPACE": NAMESPACE,
            # As config/base/deployment.yaml chooses; tests of the policy override it.
            "PSU_ALLOW_ANY_IDENTITY": "true",
            "POD_NAME": name,
            **(env or {}),
        }
        self.process = Process(
            name,
            [sys.executable, "-m", "pull_secret_updater", "run", *args],
            log_dir=self.workdir,
            env=self.env,
            cwd=REPO,
        )

    def token_file(self, audience: str) -> Path:
        """Where the projected token with `audience` is written."""
        if audience == SA_AUDIENCE:
            return self.token_path
        return self.workdir / "tokens" / audience / "token"

    def rotate_projected_token(self, *, seconds: int = 3600) -> None:
        """Write fresh tokens as kubelet writes the projected volumes (atomically)."""
        for audience in (SA_AUDIENCE, *self.audiences):
            token = self.stack.control_plane.service_account_token(
                NAMESPACE, SERVICE_ACCOUNT, audience=audience, seconds=seconds
            )
            path = self.token_file(audience)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(token)
            tmp.replace(path)

    def start(self, *, wait_ready: bool = True) -> ControllerProcess:
        self.process.start()
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        with httpx2.Client(timeout=2.0) as client:
            wait_until(
                lambda: client.get(f"{self.metrics_url}/readyz").status_code == 200,
                what=f"waiting for {self.name} to be ready",
                timeout=timeout,
                process=self.process,
            )

    def metrics(self) -> str:
        with httpx2.Client(timeout=5.0) as client:
            return client.get(f"{self.metrics_url}/metrics").text

    def logs(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
