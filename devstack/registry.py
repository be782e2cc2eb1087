"""The CNCF distribution registry with token authentication, and a small test image.

The registry trusts bearer tokens signed by the local token service (its ``rootcertbundle``);
the token service's ``/registry/token`` endpoint hands them out for Basic ``_token:<token>``,
where the token is one that ``/sts/exchange`` issued. That is the chain a pull walks on
``cgr.dev``: pull Secret -> registry token endpoint -> registry.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import httpx2
import yaml

from devstack import oci, pki
from devstack.procs import Process, wait_until

TEST_IMAGE_REPOSITORY = "chainguard/busybox"
TEST_IMAGE_TAG = "latest-glibc"


class Registry:
    def __init__(
        self,
        workdir: Path,
        *,
        port: int,
        binary: Path,
        ca: pki.CA,
        token_realm: str,
        token_issuer: str,
        token_cert: Path,
        name: str = "registry",
        host_name: str | None = None,
    ) -> None:
        """``host_name``: the name clients reach it by (the ECR stand-in's
        ``<account>.dkr.ecr.<region>.amazonaws.com``), which must then resolve to 127.0.0.1;
        by default its address. ``name`` names its log and its certificate."""
        self.workdir = workdir
        self.port = port
        self.address = f"127.0.0.1:{self.port}"
        self.host = f"{host_name}:{self.port}" if host_name else self.address
        workdir.mkdir(parents=True, exist_ok=True)
        hosts = ("127.0.0.1", "localhost", *((host_name,) if host_name else ()))
        serving = pki.issue_cert(ca, workdir, stem=name, common_name=name, hosts=hosts)
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "storage")},
                "delete": {"enabled": True},
            },
            "http": {
                "addr": self.address,
                "secret": secrets.token_hex(16),
                "tls": {"certificate": str(serving.cert), "key": str(serving.key)},
            },
            "auth": {
                "token": {
                    "realm": token_realm,
                    "service": self.host,
                    "issuer": token_issuer,
                    "rootcertbundle": str(token_cert),
                }
            },
        }
        self.config_file = workdir / "config.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self._ca = ca
        self.process = Process(name, [str(binary), "serve", str(self.config_file)], log_dir=workdir)

    @property
    def image(self) -> str:
        return f"{self.host}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}"

    @property
    def local_image(self) -> str:
        """The test image by the registry's address, which needs no name resolution."""
        return f"{self.address}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        self.process.start()

    def wait_ready(self) -> None:
        with httpx2.Client(verify=pki.trust(self._ca.cert_file), timeout=2.0) as client:
            # 401 is the healthy answer of a registry with token auth to an anonymous /v2/.
            wait_until(
                lambda: client.get(f"https://{self.address}/v2/").status_code == 401,
                what="waiting for the registry",
                timeout=30,
                process=self.process,
            )

    def stop(self) -> None:
        self.process.stop()


def test_image_spec(tiny: Path) -> oci.ImageSpec:
    """The test image: a file to read, and ``tiny`` as sleep and cat, so the quickstart's
    ``command: ['sleep', 'Infinity']`` really runs on a node."""
    return oci.ImageSpec(
        files={"/hello.txt": b"pulled with a short-lived token\n"},
        executables={"/bin/tiny": tiny.read_bytes()},
        symlinks={f"/bin/{role}": "tiny" for role in ("sleep", "cat", "true")},
        cmd=["cat", "/hello.txt"],
    )


def write_test_image(layout: Path, tiny: Path) -> None:
    """The test image as an OCI image layout, written without any container tooling."""
    oci.write_layout(layout, test_image_spec(tiny), tag=TEST_IMAGE_TAG)


def skopeo_env(ca_file: Path) -> dict[str, str]:
    """skopeo (Go) trusts exactly the stack's CA, for the registry and its token realm alike."""
    env = dict(os.environ)
    env["SSL_CERT_FILE"] = str(ca_file)
    return env


def push_test_image(
    *, skopeo: Path, tiny: Path, registry: Registry, ca_file: Path, username: str, password: str
) -> None:
    layout = registry.workdir / "image"
    write_test_image(layout, tiny)
    subprocess.run(
        [
            str(skopeo),
            "copy",
            "--quiet",
            f"--dest-creds={username}:{password}",
            f"oci:{layout}:{TEST_IMAGE_TAG}",
            f"docker://{registry.local_image}",
        ],
        check=True,
        capture_output=True,
        env=skopeo_env(ca_file),
        timeout=120,
    )


def skopeo_inspect(
    *, skopeo: Path, image: str, authfile: Path, ca_file: Path
) -> subprocess.CompletedProcess[str]:
    """What kubelet does with a pull Secret: authenticate with it and fetch the manifest."""
    return subprocess.run(
        [str(skopeo), "inspect", "--authfile", str(authfile), f"docker://{image}"],
        capture_output=True,
        text=True,
        env=skopeo_env(ca_file),
        timeout=60,
        check=False,
    )
