"""The CNCF distribution registry with token authentication, and a small test image.

The registry trusts bearer tokens signed by the local token service (its ``rootcertbundle``);
the token service's ``/registry/token`` endpoint hands them out for Basic ``_token:<token>``,
where the token is one that ``/sts/exchange`` issued. That is the chain a pull walks on
``cgr.dev``: pull Secret -> registry token endpoint -> registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import subprocess
import tarfile
from pathlib import Path

import httpx2
import yaml

from devstack import pki
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
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.host = f"127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        serving = pki.issue_cert(
            ca, workdir, stem="registry", common_name="registry", hosts=("127.0.0.1", "localhost")
        )
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "storage")},
                "delete": {"enabled": True},
            },
            "http": {
                "addr": self.host,
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
        self.process = Process(
            "registry", [str(binary), "serve", str(self.config_file)], log_dir=workdir
        )

    @property
    def image(self) -> str:
        return f"{self.host}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}"

    def start(self) -> None:
        self.process.start()
        with httpx2.Client(verify=pki.trust(self._ca.cert_file), timeout=2.0) as client:
            # 401 is the healthy answer of a registry with token auth to an anonymous /v2/.
            wait_until(
                lambda: client.get(f"https://{self.host}/v2/").status_code == 401,
                what="waiting for the registry",
                timeout=30,
                process=self.process,
            )

    def stop(self) -> None:
        self.process.stop()


def write_test_image(layout: Path) -> None:
    """An OCI image layout with one small layer, written without any container tooling."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        content = b"pulled with a short-lived token\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    diff_id = f"sha256:{hashlib.sha256(tar_bytes.getvalue()).hexdigest()}"
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    layer_digest = put(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_digest = put(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    manifest_digest = put(manifest)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": TEST_IMAGE_TAG},
                    }
                ],
            }
        )
    )


def skopeo_env(ca_file: Path) -> dict[str, str]:
    """skopeo (Go) trusts exactly the stack's CA, for the registry and its token realm alike."""
    env = dict(os.environ)
    env["SSL_CERT_FILE"] = str(ca_file)
    return env


def push_test_image(
    *, skopeo: Path, registry: Registry, ca_file: Path, username: str, password: str
) -> None:
    layout = registry.workdir / "image"
    write_test_image(layout)
    subprocess.run(
        [
            str(skopeo),
            "copy",
            "--quiet",
            f"--dest-creds={username}:{password}",
            f"oci:{layout}:{TEST_IMAGE_TAG}",
            f"docker://{registry.image}",
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
