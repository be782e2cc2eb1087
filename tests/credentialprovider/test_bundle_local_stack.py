"""The bundle, run as the kubelet runs it, against the local stack's token service:
a real ServiceAccount token in, a registry token out that the registry accepts, one exchange
per call, and the token service's refusals and outages as one line on stderr."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from devstack import pki
from devstack.cluster import SERVICE_ACCOUNT_ISSUER
from devstack.stack import SA_AUDIENCE, LocalStack
from pull_secret_updater.credentialprovider.protocol import API_VERSION
from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from tests.helpers import ClusterHelper, exchanges, unique

pytestmark = pytest.mark.stack

PROG = "pull-secret-updater-credential-provider"


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def answer(self) -> dict[str, Any]:
        assert self.status == 0, self.stderr
        document: dict[str, Any] = json.loads(self.stdout)
        return document


@dataclass
class Workload:
    namespace: str
    service_account: str
    identity: str
    token: str


def run_plugin(bundle: Path, stack: LocalStack, request: dict[str, Any], *args: str) -> Run:
    argv = [
        str(bundle),
        f"--issuer={stack.token_service.url}",
        f"--registry={stack.registry.host}",
        f"--ca-bundle={stack.ca_file}",
        *args,
    ]
    started = time.monotonic()
    done = subprocess.run(
        argv, input=json.dumps(request), capture_output=True, text=True, timeout=90, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def kubelet_request(stack: LocalStack, workload: Workload) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": stack.registry.image,
        "serviceAccountToken": workload.token,
        "serviceAccountAnnotations": {IDENTITY_KEY: workload.identity},
    }


@pytest.fixture
def workload(stack: LocalStack, cluster: ClusterHelper) -> Workload:
    """A ServiceAccount with a token as the kubelet requests it (audience issuer.enforce.dev)
    and an identity that trusts exactly that ServiceAccount."""
    namespace = cluster.namespace("cp")
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "app")
    identity = stack.create_kind_identity(
        name=unique("cp"), namespace=namespace, service_account="app"
    )
    token = cluster.kubectl(
        "-n", namespace, "create", "token", "app", f"--audience={SA_AUDIENCE}", "--duration=10m"
    ).strip()
    return Workload(namespace, "app", identity, token)


def auth_file(answer: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The answer's credentials as a Docker config, which skopeo reads as kubelet's keyring."""
    auths = {}
    for pattern, auth in answer["auth"].items():
        pair = f"{auth['username']}:{auth['password']}".encode()
        auths[pattern] = {"auth": base64.b64encode(pair).decode()}
    return {"auths": auths}


def test_the_bundle_answers_with_a_token_the_registry_accepts(
    bundle: Path, stack: LocalStack, cluster: ClusterHelper, workload: Workload, tmp_path: Path
) -> None:
    before = exchanges(stack, [workload.identity])
    started = time.time()
    run = run_plugin(bundle, stack, kubelet_request(stack, workload))
    finished = time.time()

    answer = run.answer
    assert run.stderr == ""
    assert answer["apiVersion"] == API_VERSION
    assert answer["kind"] == "CredentialProviderResponse"
    assert answer["cacheKeyType"] == "Registry"
    [(pattern, auth)] = answer["auth"].items()
    assert pattern == stack.registry.host
    assert auth["username"] == "_token"
    claims = jwt.decode(auth["password"], options={"verify_signature": False})
    assert claims["sub"] == workload.identity
    assert claims["iss"] == stack.token_service.url
    # The token service's tokens live an hour; the kubelet keeps them 5 minutes less.
    duration = int(answer["cacheDuration"].removesuffix("s"))
    keep_until = claims["exp"] - 300
    assert keep_until - (finished - started) - 1 <= started + duration <= keep_until
    assert exchanges(stack, [workload.identity]) == before + 1
    assert cluster.pull(auth_file(answer, tmp_path), tmp_path) == 0


def test_the_token_that_was_exchanged_is_the_pods_service_account(
    bundle: Path, stack: LocalStack, workload: Workload
) -> None:
    claims = jwt.decode(workload.token, options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{workload.namespace}:app"
    assert claims["iss"] == SERVICE_ACCOUNT_ISSUER
    run = run_plugin(bundle, stack, kubelet_request(stack, workload))
    assert run.status == 0, run.stderr


def test_a_service_account_the_identity_does_not_trust_gets_the_services_403(
    bundle: Path, stack: LocalStack, cluster: ClusterHelper, workload: Workload
) -> None:
    cluster.kubectl("-n", workload.namespace, "create", "serviceaccount", "other")
    other = cluster.kubectl(
        "-n", workload.namespace, "create", "token", "other", f"--audience={SA_AUDIENCE}"
    ).strip()
    request = {**kubelet_request(stack, workload), "serviceAccountToken": other}
    run = run_plugin(bundle, stack, request)

    assert run.status == 1
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith(
        f"{PROG}: exchange for identity {workload.identity} as ServiceAccount "
        f"{workload.namespace}/other failed: token service answered 403"
    )
    assert "permission_denied" in line
    assert other not in run.stderr
    assert workload.token not in run.stderr


def test_an_outage_of_the_token_service_fails_the_call_in_one_line(
    bundle: Path, stack: LocalStack, workload: Workload
) -> None:
    admin = stack.token_admin()
    admin.set_fault("status", status=503)
    try:
        run = run_plugin(bundle, stack, kubelet_request(stack, workload))
    finally:
        admin.clear_faults()
    assert run.status == 1
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert "token service answered 503" in line


def test_a_token_service_that_is_not_the_one_configured_is_not_trusted(
    bundle: Path, stack: LocalStack, workload: Workload, tmp_path: Path
) -> None:
    # Another CA: the token service's certificate does not verify, nothing is sent.
    other_ca = pki.create_ca(tmp_path)
    before = exchanges(stack, [workload.identity])
    run = run_plugin(
        bundle, stack, kubelet_request(stack, workload), f"--ca-bundle={other_ca.cert_file}"
    )
    assert run.status == 1
    assert "certificate" in run.stderr
    assert exchanges(stack, [workload.identity]) == before
