"""The bundle serves every provider, each under its own entry of the kubelet's config: a
ServiceAccount annotated for each provider gets that provider's credentials for the image's
registry from its stand-in (with the user name the registry expects, kept as long as the
credential lives), and one whose identities trust another ServiceAccount gets each service's
refusal as the one line the kubelet logs. On a node behind a forward proxy (tinyproxy, with a
user and password), each provider reaches its token services through the proxy the environment
names, and directly for the hosts of NO_PROXY."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import kubeletplugin
from devstack.proxy import HttpProxy
from devstack.stack import LocalStack
from tests.helpers import ClusterHelper

pytestmark = pytest.mark.stack

PROG = "pull-secret-updater-credential-provider"
#: Each provider's registry user name, and the longest the kubelet may keep its credential:
#: the credential's own life less the five-minute margin, at most the plugin's four hours.
EXPECTED = {
    "chainguard": ("_token", 3600 - 300),
    "ecr": ("AWS", 4 * 3600),
    "gar": ("oauth2accesstoken", 3600 - 300),
    "acr": ("00000000-0000-0000-0000-000000000000", 3 * 3600 - 300),
}


def call(
    bundle: Path, stack: LocalStack, provider: str, request: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    [plan] = kubeletplugin.plans(stack, providers=(provider,))
    return subprocess.run(
        [str(bundle), *kubeletplugin.args_of(plan)],
        input=request, capture_output=True, text=True, timeout=90, check=False,
        env=environment() if env is None else env,
    )  # fmt: skip


def environment(**proxies: str) -> dict[str, str]:
    """This process's environment with no proxy variables but `proxies`."""
    kept = {name: value for name, value in os.environ.items()
            if not name.lower().endswith("_proxy")}  # fmt: skip
    return {**kept, **proxies}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpProxy]:
    with HttpProxy(tmp_path_factory.mktemp("proxy"), credentials=("node", "pr0xy-s3cret")) as up:
        yield up


@pytest.fixture
def namespace(cluster: ClusterHelper) -> str:
    namespace = cluster.namespace("cp-every")
    for name in ("app", "intruder"):
        cluster.kubectl("-n", namespace, "create", "serviceaccount", name)
    return namespace


@pytest.mark.parametrize("provider", kubeletplugin.PROVIDERS)
def test_each_provider_answers_with_its_credentials_for_the_image_registry(
    bundle: Path, stack: LocalStack, namespace: str, provider: str
) -> None:
    app = kubeletplugin.trusted_workload(stack, namespace, "app", trusts="app")
    done = call(bundle, stack, provider, kubeletplugin.request(stack, app, provider))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    answer: dict[str, Any] = json.loads(done.stdout)
    registry = kubeletplugin.image_of(stack, provider).split("/", 1)[0]
    username, longest = EXPECTED[provider]
    assert answer["cacheKeyType"] == "Registry"
    assert list(answer["auth"]) == [registry]
    assert answer["auth"][registry]["username"] == username
    assert answer["auth"][registry]["password"]
    seconds = int(answer["cacheDuration"].removesuffix("s"))
    assert longest - 120 <= seconds <= longest


@pytest.mark.parametrize("provider", kubeletplugin.PROVIDERS)
def test_a_service_account_the_identity_does_not_trust_gets_the_services_refusal(
    bundle: Path, stack: LocalStack, namespace: str, provider: str
) -> None:
    intruder = kubeletplugin.trusted_workload(stack, namespace, "intruder", trusts="app")
    done = call(bundle, stack, provider, kubeletplugin.request(stack, intruder, provider))
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{PROG}: exchange for identity ")
    assert f" as ServiceAccount {namespace}/intruder failed: " in line
    # The refusal is the service's, and no token is quoted.
    assert re.search(r"403|denied|not authorized|AADSTS|unauthorized|invalid", line, re.I), line
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}", line)


@pytest.mark.parametrize("provider", kubeletplugin.PROVIDERS)
def test_behind_a_forward_proxy_each_provider_reaches_its_services_through_it(
    bundle: Path, stack: LocalStack, namespace: str, proxy: HttpProxy, provider: str
) -> None:
    app = kubeletplugin.trusted_workload(stack, namespace, "app", trusts="app")
    before = len(proxy.tunnels())
    done = call(bundle, stack, provider, kubeletplugin.request(stack, app, provider),
                env=environment(HTTPS_PROXY=proxy.url))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["auth"]
    assert set(proxy.tunnels()[before:]) == kubeletplugin.service_origins(stack, provider)


def test_a_proxy_that_is_down_is_the_line_the_kubelet_logs_and_no_proxy_bypasses_it(
    bundle: Path, stack: LocalStack, namespace: str
) -> None:
    app = kubeletplugin.trusted_workload(stack, namespace, "app", trusts="app")
    request = kubeletplugin.request(stack, app, "chainguard")
    down = "http://node:pr0xy-s3cret@127.0.0.1:1"
    done = call(bundle, stack, "chainguard", request, env=environment(https_proxy=down))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert "the proxy at 127.0.0.1:1" in line, line
    assert "pr0xy-s3cret" not in line
    [host] = {origin.split(":")[0] for origin in kubeletplugin.service_origins(stack, "chainguard")}
    bypassed = environment(https_proxy=down, no_proxy=f"example.com,{host}")
    done = call(bundle, stack, "chainguard", request, env=bypassed)
    assert done.returncode == 0, done.stderr
