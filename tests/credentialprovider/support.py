"""Calling the plugin as the kubelet does, against the HTTP-level token service of
`tests.tokens.fakes`: a request on stdin, the answer on stdout, one line on stderr."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from pull_secret_updater.credentialprovider import plugin
from pull_secret_updater.credentialprovider.protocol import API_VERSION
from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from tests.fakes import NOW, REGISTRY
from tests.tokens.fakes import IDENTITY, ISSUER, FakeTokenService

IMAGE = f"{REGISTRY}/chainguard/busybox:latest"
#: What the kubelet hands over: a token of the Pod's ServiceAccount, JWT-shaped.
POD_SA_TOKEN = jwt.encode(
    {
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": "system:serviceaccount:team-a:app",
        "aud": ["issuer.enforce.dev"],
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
        "kubernetes.io": {"pod": {"name": "app-1", "uid": "1234"}},
    },
    "kubernetes-signing-key-for-the-plugin-tests-0123",
    algorithm="HS256",
)
BASE_ARGS = (f"--issuer={ISSUER}", f"--registry={REGISTRY}")


def request(
    *,
    image: str = IMAGE,
    token: str | None = POD_SA_TOKEN,
    annotations: Mapping[str, str] | None = None,
    api_version: str = API_VERSION,
) -> dict[str, Any]:
    """A CredentialProviderRequest as the kubelet encodes it."""
    document: dict[str, Any] = {
        "kind": "CredentialProviderRequest",
        "apiVersion": api_version,
        "image": image,
    }
    if token is not None:
        document["serviceAccountToken"] = token
    if annotations is None:
        annotations = {IDENTITY_KEY: IDENTITY}
    if annotations:
        document["serviceAccountAnnotations"] = dict(annotations)
    return document


@dataclass
class Outcome:
    status: int
    stdout: bytes
    stderr: str

    @property
    def answer(self) -> dict[str, Any]:
        assert self.status == 0, self.stderr
        document: dict[str, Any] = json.loads(self.stdout)
        return document


def call(
    service: FakeTokenService,
    document: Mapping[str, Any] | bytes,
    *args: str,
    base: Sequence[str] = BASE_ARGS,
) -> Outcome:
    """One call of the plugin, as the kubelet makes it."""
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    stdout, stderr = io.BytesIO(), io.StringIO()
    status = plugin.run(
        [*base, *args],
        stdin=io.BytesIO(raw),
        stdout=stdout,
        stderr=stderr,
        transport=service.transport(),
        clock=service.clock,
    )
    return Outcome(status=status, stdout=stdout.getvalue(), stderr=stderr.getvalue())
