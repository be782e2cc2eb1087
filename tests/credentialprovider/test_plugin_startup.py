"""The plugin starts at every pull the kubelet has no cached credential for: what it loads is
the token layer and the core, never the Kubernetes client, the controller, the settings model
or structlog. import-linter checks the imports it can see; this checks what Python really
loads, package ``__init__`` modules included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.credentialprovider.support import POD_SA_TOKEN

NEVER = (
    "lightkube",
    "structlog",
    "pydantic",
    "pydantic_settings",
    "yaml",
    "prometheus_client",
    # httpx2's default transport and what it sets up: the plugin's requests go through
    # tokens.blocking instead, which speaks HTTP/1.1 with h11 alone (h11 is allowed: it is the
    # protocol, about 6 ms to import; httpcore2, anyio and truststore cost more than a call).
    "httpcore2",
    "anyio",
    "truststore",
    # The call runs without an event loop (tokens.loop): asyncio and its imports are about a
    # tenth of a call.
    "asyncio",
    "pull_secret_updater.kube",
    "pull_secret_updater.runtime",
    "pull_secret_updater.settings",
    "pull_secret_updater.wiring",
    "pull_secret_updater.cli",
    "pull_secret_updater.tools",
)


def loaded_by(module: str) -> set[str]:
    """Every module a fresh interpreter loads to import `module` (python -X importtime)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


#: A request for each provider, and its options: endpoints nobody listens on, so the call
#: builds the exchange and fails at its first request.
CALLS = {
    "chainguard": (
        "cgr.dev/chainguard/static",
        {"pull-secret-updater.chainguard.dev/identity": "abc/def"},
        ["--issuer=https://127.0.0.1:1"],
    ),
    "ecr": (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        {"ecr.pull-secret-updater.chainguard.dev/role-arn": "arn:aws:iam::123456789012:role/r"},
        ["--provider=ecr", "--endpoint=sts=https://127.0.0.1:1"],
    ),
    "gar": (
        "us-docker.pkg.dev/project/repo/app",
        {
            "gar.pull-secret-updater.chainguard.dev/workload-identity-provider": (
                "projects/123/locations/global/workloadIdentityPools/pool/providers/prov"
            )
        },
        ["--provider=gar", "--endpoint=sts=https://127.0.0.1:1"],
    ),
    "acr": (
        "registry1.azurecr.io/app",
        {
            "acr.pull-secret-updater.chainguard.dev/tenant-id": (
                "72f988bf-86f1-41af-91ab-2d7cd011db47"
            ),
            "acr.pull-secret-updater.chainguard.dev/client-id": (
                "11111111-2222-3333-4444-555555555555"
            ),
        },
        ["--provider=acr", "--endpoint=authority=https://127.0.0.1:1"],
    ),
}


#: One call of the plugin in a fresh interpreter, then the modules it loaded. NB: sys.modules,
#: not -X importtime, which does not see importlib.import_module (how a provider is loaded).
_CALL = """
import io, json, sys
from pull_secret_updater.credentialprovider import plugin
stdin = io.BytesIO(sys.stdin.buffer.read())
status = plugin.run(sys.argv[1:], stdin=stdin, stdout=io.BytesIO())
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def loaded_by_a_call(provider: str) -> tuple[set[str], str]:
    """Every module one call of the plugin for `provider` loads, and its error line."""
    image, annotations, options = CALLS[provider]
    request = {
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": image,
        "serviceAccountToken": POD_SA_TOKEN,
        "serviceAccountAnnotations": annotations,
    }
    done = subprocess.run(
        [sys.executable, "-c", _CALL, *options, "--timeout=5"],
        input=json.dumps(request), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    outcome = json.loads(done.stdout)
    assert outcome["status"] == 1, done.stderr[-2000:]
    return set(outcome["modules"]), done.stderr


def test_importing_the_plugin_loads_no_provider_and_nothing_heavy() -> None:
    loaded = loaded_by("pull_secret_updater.credentialprovider.plugin")
    assert not any(name.endswith(".exchange") for name in loaded)
    assert _heavy(loaded) == []


@pytest.mark.parametrize("provider", sorted(CALLS))
def test_a_call_loads_its_own_provider_alone(provider: str) -> None:
    loaded, error = loaded_by_a_call(provider)
    assert f"pull_secret_updater.providers.{provider}.exchange" in loaded, error
    # The options' defaults are Chainguard's (its constants and annotation check); the other
    # providers' exchanges, answers and descriptions stay unloaded.
    others = sorted(
        name
        for name in loaded
        if name.startswith("pull_secret_updater.providers.")
        and name.split(".")[2] not in (provider, "kubelet", "chainguard")
    )
    assert others == []
    if provider != "chainguard":
        assert "pull_secret_updater.providers.chainguard.exchange" not in loaded
    assert _heavy(loaded) == []
    assert "h11" in loaded  # tokens.blocking: the requests were made, with h11
    # Only Chainguard's tokens are verified with published keys: the others never load jwt.
    assert ("jwt" in loaded) == (provider == "chainguard")


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(
        name for name in loaded if any(name == n or name.startswith(f"{n}.") for n in NEVER)
    )


def test_the_check_can_see_a_heavy_import() -> None:
    # The same reading of the same interpreter finds lightkube when it is loaded.
    assert "lightkube" in loaded_by("pull_secret_updater.tokens.satoken, lightkube")
