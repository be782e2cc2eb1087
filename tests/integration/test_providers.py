"""Several registry providers in one controller, against the real API server and token service.

The second provider is the fake one (credentials minted in-process, which no registry takes):
beside it, the Chainguard entry of the same Secret must still be filled with a token the
stack's registry accepts, every entry the controller does not own must be kept, and the
configuration, the policy and the metrics must speak of providers as the README says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually, unique

pytestmark = pytest.mark.stack

FAKE_IDENTITY_KEY = "fake.pull-secret-updater.chainguard.dev/identity"
FAKE_REGISTRY = "registry.fake.invalid"
DEADLINE = 60.0


def _with_fake(stack: LocalStack, name: str) -> dict[str, str]:
    """The environment that adds the fake provider, whose own token is the same projected file
    the controller process reads (the local stack's ControllerProcess writes it there)."""
    token = stack.workdir / "controllers" / name / "oidc" / "oidc-token"
    return {"PSU_PROVIDERS": json.dumps([{"kind": "fake", "token_path": str(token)}])}


def test_one_secret_gets_an_entry_from_each_provider_and_still_pulls(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    name = unique("two-providers")
    controller = start_controller(name, env=_with_fake(stack, name))
    ns = cluster.namespace("two")
    theirs = {"auth": "dXNlcjpwYXNz"}
    other = {"auths": {"registry.example.com": theirs}, "credsStore": "x"}
    cluster.create_pull_secret(ns, installed, config=json.dumps(other))
    cluster.kubectl("-n", ns, "annotate", "secret", "pull-secret", f"{FAKE_IDENTITY_KEY}=team/a")

    def both() -> dict[str, Any] | None:
        auths = cluster.docker_config(ns).get("auths", {})
        return auths if {stack.registry.host, FAKE_REGISTRY} <= set(auths) else None

    auths = eventually(both, timeout=DEADLINE, what="both entries filled")
    config = cluster.docker_config(ns)
    assert config["credsStore"] == "x"
    assert auths["registry.example.com"] == theirs
    assert auths[FAKE_REGISTRY]["username"] == "fake"
    annotations = cluster.annotations(ns)
    assert annotations["fake.pull-secret-updater.chainguard.dev/filled-identity"] == "team/a"
    assert annotations["pull-secret-updater.chainguard.dev/filled-identity"] == installed
    assert LAST_ERROR not in annotations
    # The Chainguard entry is a real token: the registry lets it pull.
    assert cluster.pull({"auths": {stack.registry.host: auths[stack.registry.host]}}, tmp_path) == 0

    samples = {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(controller.metrics())
        for sample in family.samples
    }
    exchanged = {
        labels for name_, labels in samples if name_ == "pull_secret_updater_exchanges_total"
    }
    # The Chainguard token may come from the cache (other Secrets of the session share that
    # identity); the fake one was exchanged here. Every series names a provider, no identity.
    assert (("outcome", "success"), ("provider", "fake")) in exchanged
    assert {dict(labels)["provider"] for labels in exchanged} <= {"chainguard", "fake"}
    assert all("identity" not in dict(labels) for _, labels in samples)


def test_a_policy_grants_each_provider_its_own_identities(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        json.dumps({"rules": [{"identities": ["*"]}, {"provider": "fake", "identities": ["ok/*"]}]})
    )
    name = unique("policy-providers")
    start_controller(
        name, env={**_with_fake(stack, name), "PSU_POLICY_FILE": str(policy),
                   "PSU_ALLOW_ANY_IDENTITY": "false"},
    )  # fmt: skip
    ns = cluster.namespace("denied")
    cluster.create_pull_secret(ns, installed)
    cluster.kubectl("-n", ns, "annotate", "secret", "pull-secret", f"{FAKE_IDENTITY_KEY}=no/b")

    error = eventually(
        lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE, what="last-error"
    )
    assert error == (
        f"fake: fake identity no/b may not be used in namespace {ns} by the controller's policy"
    )
    assert set(cluster.docker_config(ns)["auths"]) == {stack.registry.host}
    assert "PolicyDenied" in cluster.event_reasons(ns)

    cluster.kubectl(
        "-n", ns, "annotate", "--overwrite", "secret", "pull-secret", f"{FAKE_IDENTITY_KEY}=ok/b"
    )
    eventually(
        lambda: FAKE_REGISTRY in cluster.docker_config(ns)["auths"] or None,
        timeout=DEADLINE, what="the allowed fake identity filled",
    )  # fmt: skip
    eventually(
        lambda: LAST_ERROR not in cluster.annotations(ns) or None,
        timeout=DEADLINE, what="last-error cleared",
    )  # fmt: skip
