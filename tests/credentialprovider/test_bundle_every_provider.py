"""The bundle serves every provider, each under its own entry of the kubelet's config: a
ServiceAccount annotated for each provider gets that provider's credentials for the image's
registry from its stand-in (with the user name the registry expects, kept as long as the
credential lives), and one whose identities trust another ServiceAccount gets each service's
refusal as the one line the kubelet logs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack import kubeletplugin
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
    bundle: Path, stack: LocalStack, provider: str, request: str
) -> subprocess.CompletedProcess[str]:
    [plan] = kubeletplugin.plans(stack, providers=(provider,))
    return subprocess.run(
        [str(bundle), *kubeletplugin.args_of(plan)],
        input=request, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


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
