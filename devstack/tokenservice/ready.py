"""The ready file: how a process that started the token service learns where it listens."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from devstack import pki
from devstack.tokenservice.protocol import JSONObject


@dataclass(frozen=True)
class ReadyInfo:
    """What ``--ready-file`` holds once every listener accepts connections."""

    pid: int
    port: int
    registry_port: int
    admin_port: int
    issuer_url: str
    sts_url: str
    registry_realm: str
    admin_url: str
    admin_token: str
    registry_cert: str
    registry_service: str
    registry_issuer: str
    registry_audience: str
    #: The AWS stand-in's endpoint (STS and ECR), when it runs.
    aws_url: str | None = None
    #: The Google stand-in's endpoint (STS and IAM Credentials), when it runs.
    gcp_url: str | None = None

    def to_json(self) -> JSONObject:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls(**json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        pki.write_private(path, json.dumps(self.to_json(), indent=2).encode())


def wait_ready(
    process: subprocess.Popen[bytes], ready_file: Path, *, timeout: float = 15.0
) -> ReadyInfo:
    """Wait for a ``serve`` subprocess to write its ready file (it is written atomically)."""
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"token service exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"token service not ready after {timeout}s")
        time.sleep(0.05)
    return ReadyInfo.load(ready_file)
