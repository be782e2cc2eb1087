"""Reading and changing the local cluster from tests, and waiting for outcomes.

The one home of the stack tests' setup: unique names, namespaces with their pull Secrets,
reading a token out of a Secret, counting exchanges, writing as a ServiceAccount and waiting
for an admission policy to be enforced. The fixtures built on these
(`cluster`, `new_identity`, `start_controller`, `logged`) are in tests/conftest.py.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import httpx2

from devstack import pki
from devstack.binaries import REPO
from devstack.controller import ControllerProcess
from devstack.registry import TEST_IMAGE_REPOSITORY, skopeo_inspect
from devstack.stack import LocalStack

T = TypeVar("T")

IDENTITY = "pull-secret-updater.chainguard.dev/identity"
EXPIRES_AT = "pull-secret-updater.chainguard.dev/expires-at"
LAST_ERROR = "pull-secret-updater.chainguard.dev/last-error"
LAST_REFRESH = "pull-secret-updater.chainguard.dev/last-refresh"
#: What an admission policy's denial message names.
POLICY_DENIED = "ValidatingAdmissionPolicy"

Json = dict[str, Any]

#: What the `logged` fixture gives: structlog's event dicts (`event`, `log_level`, the fields).
LogEvents = list[MutableMapping[str, Any]]
#: The `start_controller` fixture: `start(name="controller", *, env=None, wait_ready=True)`.
Start = Callable[..., ControllerProcess]
#: The `new_identity` fixture: `create(prefix)` -> the UID of a new identity the controller may use.
NewIdentity = Callable[[str], str]


def unique(prefix: str) -> str:
    """`prefix` with a random suffix: the stack is shared, so every test names its own things."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def docker_config(secret: Json | None) -> Json:
    """The parsed `.dockerconfigjson` of a Secret as the API returns it; {} when there is none."""
    raw = ((secret or {}).get("data") or {}).get(".dockerconfigjson")
    if not raw:
        return {}
    config: Json = json.loads(base64.b64decode(raw))
    return config


def registry_token(secret: Json | None, registry: str) -> str | None:
    """The password of the Secret's entry for `registry`: the token the controller wrote."""
    config: object = docker_config(secret)
    auths = config.get("auths") if isinstance(config, dict) else None
    entry = auths.get(registry) if isinstance(auths, dict) else None
    password = entry.get("password") if isinstance(entry, dict) else None
    return password if isinstance(password, str) else None


def exchanges(
    stack: LocalStack, identities: Iterable[str], *, outcomes: Iterable[str] = ("ok", "error")
) -> int:
    """Exchanges the token service has seen for these identities (by default ok and failed)."""
    stats = stack.token_admin().stats()["exchanges"]
    return sum(
        int(stats.get(uid, {}).get(outcome, 0)) for uid in identities for outcome in outcomes
    )


def cli(
    stack: LocalStack, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``pull-secret-updater *args`` as a process, with the stack's kubeconfig (or
    ``kubeconfig``) and none of the PSU_ settings of the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSU_")}
    env["KUBECONFIG"] = str(kubeconfig or stack.kubeconfig)
    return subprocess.run(
        [sys.executable, "-m", "pull_secret_updater", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def run_pasted(stack: LocalStack, printed: str) -> str:
    """A printed command pasted into a shell in which chainctl is the local stand-in; what it
    printed, stripped."""
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c",
         f'chainctl() {{ "{sys.executable}" -m devstack.chainctl "$@"; }}\n{printed}'],
        env={**os.environ, **stack.env()}, cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    return shell.stdout.strip()


def namespace_manifest(name: str) -> Json:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last: {last!r}")


class ClusterHelper:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.kubectl = stack.control_plane.kubectl
        self.registry = stack.registry.host

    def namespace(self, prefix: str = "t", *, labels: dict[str, str] | None = None) -> str:
        name = unique(prefix)
        self.kubectl("create", "namespace", name)
        if labels:
            self.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))
        return name

    def create_pull_secret(
        self,
        namespace: str,
        identity: str | None,
        *,
        name: str = "pull-secret",
        config: str = "{}",
        secret_type: str = "kubernetes.io/dockerconfigjson",
    ) -> None:
        """The two commands of the quickstart: an empty pull Secret, then the annotation."""
        key = ".dockerconfigjson" if secret_type == "kubernetes.io/dockerconfigjson" else "config"
        self.kubectl(
            "-n", namespace, "create", "secret", "generic", name,
            f"--type={secret_type}", f"--from-literal={key}={config}",
        )  # fmt: skip
        if identity is not None:
            self.annotate(namespace, identity, name=name)

    def create_pull_secrets(self, owners: Mapping[str, str | None]) -> list[str]:
        """Namespaces and their pull Secrets, `owners` naming each one's identity, in bulk.

        Two kubectl calls whatever the count (the namespaces first, so they exist when their
        Secrets arrive); returns the namespaces.
        """
        apply_all(self, [namespace_manifest(ns) for ns in owners])
        apply_all(self, [pull_secret_manifest(ns, identity) for ns, identity in owners.items()])
        return list(owners)

    def annotate(self, namespace: str, identity: str, *, name: str = "pull-secret") -> None:
        self.kubectl("-n", namespace, "annotate", "--overwrite", "secret", name,
                     f"{IDENTITY}={identity}")  # fmt: skip

    def secret(self, namespace: str, name: str = "pull-secret") -> dict[str, Any] | None:
        out = self.kubectl("-n", namespace, "get", "secret", name, "-o", "json", check=False)
        return json.loads(out) if out else None

    def annotations(self, namespace: str, name: str = "pull-secret") -> dict[str, str]:
        secret = self.secret(namespace, name) or {}
        return dict(secret.get("metadata", {}).get("annotations") or {})

    def docker_config(self, namespace: str, name: str = "pull-secret") -> dict[str, Any]:
        return docker_config(self.secret(namespace, name))

    def token(self, namespace: str, name: str = "pull-secret") -> str | None:
        return registry_token(self.secret(namespace, name), self.registry)

    def wait_filled(self, namespace: str, *, other_than: str | None = None,
                    timeout: float = 20.0) -> str:  # fmt: skip
        def filled() -> str | None:
            token = self.token(namespace)
            return token if token and token != other_than else None

        return eventually(filled, timeout=timeout, what=f"a token in {namespace}/pull-secret")

    def tokens(self, namespaces: list[str]) -> dict[str, str | None]:
        """The registry token of every namespace's pull-secret, read in one list call."""
        out = self.kubectl("get", "secrets", "-A", "--field-selector=metadata.name=pull-secret",
                           "-o", "json")  # fmt: skip
        found: dict[str, str | None] = dict.fromkeys(namespaces)
        for item in json.loads(out)["items"]:
            ns = item["metadata"]["namespace"]
            if ns in found:
                found[ns] = registry_token(item, self.registry)
        return found

    def wait_all_filled(
        self, namespaces: list[str], *, other_than: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, str]:  # fmt: skip
        """One consistent snapshot in which every Secret holds a token (newer than before)."""

        def snapshot() -> dict[str, str] | None:
            tokens = self.tokens(namespaces)
            if all(t and (other_than is None or t != other_than[ns]) for ns, t in tokens.items()):
                return {ns: str(t) for ns, t in tokens.items()}
            return None

        return eventually(snapshot, timeout=timeout, interval=0.3, what="every Secret filled")

    def events(self, namespace: str) -> list[dict[str, Any]]:
        out = self.kubectl("-n", namespace, "get", "events", "-o", "json")
        return list(json.loads(out)["items"])

    def event_reasons(self, namespace: str) -> list[str]:
        return [e["reason"] for e in self.events(namespace)]

    def pull(self, config: dict[str, Any], tmp_path: Path) -> int:
        """skopeo inspect with the config as its auth file, as kubelet uses a pull Secret."""
        authfile = tmp_path / f"{unique('auth')}.json"
        authfile.write_text(json.dumps(config))
        return skopeo_inspect(
            skopeo=self.stack.binaries.skopeo, image=self.stack.registry.image,
            authfile=authfile, ca_file=self.stack.ca_file,
        ).returncode  # fmt: skip

    def refused_pull(self, config: dict[str, Any], tmp_path: Path) -> str:
        """`pull_refusal` with the config as its auth file."""
        authfile = tmp_path / f"{unique('auth')}.json"
        authfile.write_text(json.dumps(config))
        return pull_refusal(self.stack, authfile)

    def exchanges(self, identity: str) -> int:
        return exchanges(self.stack, [identity])


def pull_refusal(stack: LocalStack, authfile: Path) -> str:
    """Why the registry refuses a pull with `authfile`: the pull (skopeo, as kubelet pulls)
    must fail on the 401 of the registry's token endpoint, not on anything else; asked the same
    again, the endpoint says why."""
    pulled = skopeo_inspect(skopeo=stack.binaries.skopeo, image=stack.registry.image,
                            authfile=authfile, ca_file=stack.ca_file)  # fmt: skip
    assert pulled.returncode != 0, "the pull succeeded"
    # NB: containers/image's words for a 401 answer to the credentials; it drops the reason.
    assert "invalid username/password: unauthorized" in pulled.stderr, pulled.stderr
    auth = json.loads(authfile.read_text())["auths"][stack.registry.host]["auth"]
    user, _, password = base64.b64decode(auth).decode().partition(":")
    answer = httpx2.get(
        stack.token_service.registry_realm,
        params={
            "service": stack.registry.host,
            "scope": f"repository:{TEST_IMAGE_REPOSITORY}:pull",
        },
        auth=(user, password),
        verify=pki.trust(stack.ca_file),
        timeout=30,
    )
    assert answer.status_code == 401, answer.text
    return str(answer.json()["message"])


def pull_secret_manifest(
    namespace: str, identity: str | None, *, config: str = "{}",
    secret_type: str = "kubernetes.io/dockerconfigjson", name: str = "pull-secret",
) -> dict[str, Any]:  # fmt: skip
    key = ".dockerconfigjson" if secret_type == "kubernetes.io/dockerconfigjson" else "config"
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if identity is not None:
        meta["annotations"] = {IDENTITY: identity}
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": secret_type,
        "data": {key: base64.b64encode(config.encode()).decode()},
    }  # fmt: skip


def apply_all(cluster: ClusterHelper, objects: list[dict[str, Any]]) -> None:
    """Create many objects with one kubectl call."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": objects}))  # fmt: skip


# -- acting as a ServiceAccount over HTTP -------------------------------------------------------


def service_account_client(stack: LocalStack, namespace: str, name: str) -> httpx2.Client:
    """A client that authenticates with a bearer token of the ServiceAccount, nothing else."""
    token = stack.control_plane.service_account_token(namespace, name)
    return httpx2.Client(
        base_url=stack.control_plane.server,
        timeout=10.0,
        verify=ssl.create_default_context(cafile=str(stack.ca_file)),
        headers={"Authorization": f"Bearer {token}"},
    )


def merge_patch(
    client: httpx2.Client, namespace: str, body: Mapping[str, object], name: str = "pull-secret"
) -> httpx2.Response:
    return client.patch(
        f"/api/v1/namespaces/{namespace}/secrets/{name}",
        content=json.dumps(body),
        headers={"Content-Type": "application/merge-patch+json"},
    )


def denial(response: httpx2.Response) -> str | None:
    """The admission policy's message if the policy denied the request, else None."""
    if response.status_code != 403:
        return None
    message = str(response.json().get("message", ""))
    return message if POLICY_DENIED in message else None


def wait_until_enforced(cluster: ClusterHelper, client: httpx2.Client, *, prefix: str) -> None:
    """Wait until an admission policy denies `client` a write it must deny.

    The write is a label change on a pull Secret of its own (in a new namespace named after
    `prefix`), which the policy allows the controller never. The Secret has no identity
    annotation, so no controller acts on it.
    """
    # NB: the API server starts enforcing a new policy a moment after it is created.
    probe = cluster.namespace(prefix)
    cluster.create_pull_secret(probe, None)
    attempt = iter(range(1_000_000))
    eventually(
        lambda: denial(
            merge_patch(client, probe, {"metadata": {"labels": {"probe": str(next(attempt))}}})
        ),
        timeout=30,
        what=f"the admission policy to deny {prefix}",
    )
