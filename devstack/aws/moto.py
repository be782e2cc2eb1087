"""moto's server, the third-party AWS emulator the stand-in is built on, as a stack process.

It serves TLS with a certificate from the stack's CA and is ready within a second, so the stack
starts it first and waits for it only when the token service needs it. Its IAM is what
``AwsStandIn`` writes OIDC providers and roles into; nothing else talks to it directly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2

from devstack import pki
from devstack.procs import Process, free_port, wait_until


class MotoServer:
    def __init__(self, workdir: Path, *, ca: pki.CA, log_dir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        serving = pki.issue_cert(
            ca, workdir, stem="moto", common_name="moto", hosts=("127.0.0.1", "localhost")
        )
        self._ca = ca
        self.process = Process(
            "moto",
            [
                sys.executable,
                "-c",
                "from moto.server import main; main()",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-c",
                str(serving.cert),
                "-k",
                str(serving.key),
            ],
            log_dir=log_dir,
        )

    def start(self) -> None:
        self.process.start()

    def wait_ready(self) -> None:
        with httpx2.Client(verify=pki.trust(self._ca.cert_file), timeout=2.0) as client:
            wait_until(
                lambda: client.get(f"{self.url}/moto-api/").status_code < 500,
                what="waiting for moto's server",
                timeout=30,
                process=self.process,
            )

    def stop(self) -> None:
        self.process.stop()
