"""identity-command for the credential-provider mode, as a user runs it: the printed command,
pasted into a shell with the chainctl stand-in, creates an identity that trusts exactly the
ServiceAccount given, with the audience of the kubelet's config; the bundle then exchanges that
ServiceAccount's token for it, and another ServiceAccount's token is refused."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from pull_secret_updater.credentialprovider.protocol import API_VERSION
from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from tests.helpers import ClusterHelper, cli, run_pasted

pytestmark = pytest.mark.stack


def test_the_printed_identity_lets_that_service_account_pull_through_the_plugin(
    bundle: Path, stack: LocalStack, cluster: ClusterHelper, tmp_path: Path
) -> None:
    namespace = cluster.namespace("cp-id")
    for name in ("app", "other"):
        cluster.kubectl("-n", namespace, "create", "serviceaccount", name)
    audience = "pull.example"
    config = tmp_path / "credential-provider.yaml"
    generated = cli(stack, "credential-provider", "config", "--provider=chainguard",
                    f"--audience={audience}")  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    config.write_text(generated.stdout)

    printed = cli(stack, "identity-command", "--for-service-account", f"{namespace}/app",
                  "--provider-config", str(config))  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    words = shlex.split(printed.stdout.replace("\\\n", " "))
    assert words[4] == f"kind-{namespace}-app"
    flags = dict(w.removeprefix("--").split("=", 1) for w in words if w.startswith("--"))
    assert flags["subject"] == f"system:serviceaccount:{namespace}:app"
    assert flags["audience"] == audience
    notes = " ".join(printed.stderr.split())
    assert f"kubectl annotate serviceaccount app -n {namespace} {IDENTITY_KEY}=<UID>" in notes

    uid = run_pasted(stack, printed.stdout)

    def call(service_account: str) -> subprocess.CompletedProcess[str]:
        token = cluster.kubectl("-n", namespace, "create", "token", service_account,
                                f"--audience={audience}").strip()  # fmt: skip
        request = {"apiVersion": API_VERSION, "kind": "CredentialProviderRequest",
                   "image": stack.registry.image, "serviceAccountToken": token,
                   "serviceAccountAnnotations": {IDENTITY_KEY: uid}}  # fmt: skip
        return subprocess.run(
            [str(bundle), f"--issuer={stack.token_service.url}",
             f"--registry={stack.registry.host}", f"--ca-bundle={stack.ca_file}"],
            input=json.dumps(request), capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip

    trusted = call("app")
    assert trusted.returncode == 0, trusted.stderr
    assert stack.registry.host in json.loads(trusted.stdout)["auth"]
    refused = call("other")
    assert refused.returncode == 1
    assert "token service answered 403" in refused.stderr
