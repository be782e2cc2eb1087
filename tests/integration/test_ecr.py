"""The ECR provider against the real API server and the local AWS (moto behind a front that
checks what AWS checks), with a registry that takes only the passwords that AWS issued.

- A Secret asking for cgr.dev and ECR gets both entries, and each pulls from its registry; one
  AssumeRoleWithWebIdentity and one GetAuthorizationToken serve all the Secrets of a role.
- A role whose trust policy does not name the controller: STS's AccessDenied in `last-error`
  and a Warning, nothing written; the role's trust fixed, the Secret is filled.
- Throttling is retried with backoff until it passes; a planted `AWS` credential (a real ECR
  password this controller did not obtain, or a made-up one) is replaced.
- Short-lived passwords are refreshed before they expire, from the answer's expiresAt.
- Namespace-scoped: a role trusting one namespace's ServiceAccount is refused for another.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.aws.standin import STS_AUDIENCE
from devstack.controller import NAMESPACE, SERVICE_ACCOUNT
from devstack.registry import TEST_IMAGE_REPOSITORY, TEST_IMAGE_TAG, skopeo_inspect
from devstack.stack import LocalStack
from tests.helpers import LAST_ERROR, ClusterHelper, Start, eventually, unique
from tests.integration.test_namespace_scoped import (  # noqa: F401 (fixtures)
    SCOPED,
    SCOPED_SA,
    as_controller,
    namespace_scoped,
)
from tests.reliability.support import exchanges_logged

pytestmark = pytest.mark.stack

ROLE_ARN = "ecr.pull-secret-updater.chainguard.dev/role-arn"
REGISTRIES = "ecr.pull-secret-updater.chainguard.dev/registries"
FILLED = "ecr.pull-secret-updater.chainguard.dev/filled-identity"
CONTROLLER_SUBJECT = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
DEADLINE = 60.0


def ecr_env(stack: LocalStack, name: str, **fields: object) -> dict[str, str]:
    """The environment that adds the ECR provider, reading the controller's projected token of
    audience sts.amazonaws.com (see `ControllerProcess.token_file`)."""
    token = stack.workdir / "controllers" / name / "tokens" / STS_AUDIENCE / "token"
    section = {
        "kind": "ecr",
        "sts_endpoint": stack.aws.endpoint,
        "ecr_endpoint": stack.aws.endpoint,
        "ca_bundle": str(stack.ca_file),
        "token_path": str(token),
        **fields,
    }
    return {"PSU_PROVIDERS": json.dumps([section])}


def start_with_ecr(
    start_controller: Start, stack: LocalStack, name: str, env: dict[str, str] | None = None
) -> Any:
    return start_controller(
        name, env={**ecr_env(stack, name), **(env or {})}, audiences=(STS_AUDIENCE,)
    )


def ask_ecr(cluster: ClusterHelper, namespace: str, role: str, host: str) -> None:
    cluster.kubectl("-n", namespace, "annotate", "--overwrite", "secret", "pull-secret",
                    f"{ROLE_ARN}={role}", f"{REGISTRIES}={host}")  # fmt: skip


def ecr_entry(cluster: ClusterHelper, namespace: str, host: str) -> dict[str, Any] | None:
    entry = cluster.docker_config(namespace).get("auths", {}).get(host)
    return entry if isinstance(entry, dict) else None


def password_of(entry: dict[str, Any]) -> tuple[str, str]:
    if "password" in entry:
        return str(entry["username"]), str(entry["password"])
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return user, password


def replaced_entry(
    cluster: ClusterHelper, namespace: str, host: str, planted: str
) -> dict[str, Any] | None:
    entry = ecr_entry(cluster, namespace, host)
    return entry if entry is not None and password_of(entry)[1] != planted else None


def ecr_pull(stack: LocalStack, entry: dict[str, Any], tmp_path: Path) -> int:
    """skopeo inspect of the ECR registry's test image with `entry` as the credentials. The
    registry's own name resolves only while a node runs, so skopeo is pointed at its address;
    the registry's token realm still checks the password against its account and region."""
    address = stack.aws.registry.address
    authfile = tmp_path / f"{unique('ecr-auth')}.json"
    user, password = password_of(entry)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {address: {"auth": auth}}}))
    return skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=f"{address}/{TEST_IMAGE_REPOSITORY}:{TEST_IMAGE_TAG}",
        authfile=authfile,
        ca_file=stack.ca_file,
    ).returncode


@pytest.fixture
def controller_role(stack: LocalStack) -> Callable[[], str]:
    """Creates a role that trusts the controller's ServiceAccount; returns its ARN."""
    return lambda: stack.aws.create_role(unique("puller"), subjects=CONTROLLER_SUBJECT)


def test_one_secret_gets_a_cgr_and_an_ecr_entry_and_pulls_from_both(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
    controller_role: Callable[[], str], tmp_path: Path,
) -> None:  # fmt: skip
    role = controller_role()
    host = stack.aws.registry_host
    start_with_ecr(start_controller, stack, "ecr-both")
    namespaces = [cluster.namespace("ecr-both") for _ in range(3)]
    for ns in namespaces:
        cluster.create_pull_secret(ns, installed)
        ask_ecr(cluster, ns, role, host)

    for ns in namespaces:
        eventually(partial(ecr_entry, cluster, ns, host), timeout=DEADLINE,
                   what=f"the ECR entry of {ns}")  # fmt: skip
        cluster.wait_filled(ns)
    entry = ecr_entry(cluster, namespaces[0], host)
    assert entry is not None
    user, password = password_of(entry)
    assert user == "AWS"
    issued = {item["password"]: item for item in stack.aws.passwords()}
    assert issued[password]["role_arn"] == role, "a password the stand-in issued for the role"
    assert issued[password]["account"] == stack.aws.account
    annotations = cluster.annotations(namespaces[0])
    assert annotations[FILLED] == role
    assert annotations["pull-secret-updater.chainguard.dev/filled-identity"] == installed
    assert LAST_ERROR not in annotations
    # Both entries pull from their registries.
    assert ecr_pull(stack, entry, tmp_path) == 0
    chainguard = cluster.docker_config(namespaces[0])["auths"][stack.registry.host]
    assert cluster.pull({"auths": {stack.registry.host: chainguard}}, tmp_path) == 0
    # One exchange (STS then ECR) for the role, however many Secrets ask for it.
    assert all(password_of(ecr_entry(cluster, ns, host) or {}) == (user, password)
               for ns in namespaces)  # fmt: skip
    assert (stack.aws.assumed(role), stack.aws.authorizations(role)) == (1, 1)


def test_a_role_that_does_not_trust_the_controller_is_refused_with_stss_words(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start, installed: str,
) -> None:  # fmt: skip
    name = unique("untrusting")
    role = stack.aws.create_role(name, subjects="system:serviceaccount:elsewhere:someone")
    host = stack.aws.registry_host
    start_with_ecr(start_controller, stack, "ecr-refused")
    ns = cluster.namespace("ecr-refused")
    cluster.create_pull_secret(ns, None)
    ask_ecr(cluster, ns, role, host)

    error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                       what="last-error")  # fmt: skip
    assert "AccessDenied" in error
    assert "AssumeRoleWithWebIdentity" in error
    assert "eyJ" not in error
    assert host not in cluster.docker_config(ns).get("auths", {}), "nothing was written"
    warnings = [e for e in cluster.events(ns) if e["type"] == "Warning"]
    assert any("AccessDenied" in e["message"] for e in warnings)
    assert all("eyJ" not in e["message"] for e in warnings)

    # The role is made to trust the controller: the Secret is filled, the error cleared.
    stack.aws.set_trust_policy(name, stack.aws.trust_policy(CONTROLLER_SUBJECT))
    eventually(lambda: ecr_entry(cluster, ns, host), timeout=DEADLINE, what="filled once trusted")
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), timeout=DEADLINE,
               what="last-error cleared")  # fmt: skip


def test_throttling_is_retried_with_backoff_until_it_passes(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_role: Callable[[], str],
) -> None:  # fmt: skip
    role = controller_role()
    host = stack.aws.registry_host
    ns = cluster.namespace("ecr-throttled")
    cluster.create_pull_secret(ns, None)
    ask_ecr(cluster, ns, role, host)
    stack.aws.set_fault("throttle", api="ecr")
    try:
        controller = start_with_ecr(start_controller, stack, "ecr-throttled")
        error = eventually(lambda: cluster.annotations(ns).get(LAST_ERROR), timeout=DEADLINE,
                           what="the throttling reported")  # fmt: skip
        assert "ThrottlingException" in error
        started = time.monotonic()
        time.sleep(6)
        tried = len(exchanges_logged(controller, [role]))
        window = time.monotonic() - started + 6
    finally:
        stack.aws.clear_faults()
    # Backoff: base 0.5 s, doubling, capped at 4 s (the tests' settings), so a handful of
    # attempts in the window, not the hundreds of a retry loop.
    assert 2 <= tried <= window, f"{tried} attempts in {window:.0f} s"
    eventually(lambda: ecr_entry(cluster, ns, host), timeout=DEADLINE, what="filled")
    eventually(lambda: LAST_ERROR not in cluster.annotations(ns), timeout=DEADLINE,
               what="last-error cleared")  # fmt: skip
    assert stack.aws.authorizations(role) == 1
    assert any("ThrottlingException" in e["message"] for e in cluster.events(ns))


def test_a_planted_aws_credential_is_replaced_even_a_real_one(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_role: Callable[[], str], tmp_path: Path,
) -> None:  # fmt: skip
    role = controller_role()
    host = stack.aws.registry_host
    # A genuine password of the account, obtained outside the controller (with boto3, as
    # anyone with AWS credentials for the role could): valid, and still not ours to keep.
    token = stack.control_plane.service_account_token(NAMESPACE, SERVICE_ACCOUNT,
                                                      audience=STS_AUDIENCE)  # fmt: skip
    sts = boto3.client("sts", endpoint_url=stack.aws.endpoint, verify=str(stack.ca_file),
                       region_name=stack.aws.region, aws_access_key_id="x",
                       aws_secret_access_key="x")  # fmt: skip
    keys = sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="elsewhere", WebIdentityToken=token
    )["Credentials"]
    ecr = boto3.client("ecr", endpoint_url=stack.aws.endpoint, verify=str(stack.ca_file),
                       region_name=stack.aws.region, aws_access_key_id=keys["AccessKeyId"],
                       aws_secret_access_key=keys["SecretAccessKey"],
                       aws_session_token=keys["SessionToken"])  # fmt: skip
    data = ecr.get_authorization_token()["authorizationData"][0]
    planted = base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]
    assert ecr_pull(stack, {"username": "AWS", "password": planted}, tmp_path) == 0

    start_with_ecr(start_controller, stack, "ecr-planted")
    for candidate in (planted, "made-up-password"):
        ns = cluster.namespace("ecr-planted")
        auth = base64.b64encode(f"AWS:{candidate}".encode()).decode()
        config = json.dumps({"auths": {host: {"auth": auth}}})
        cluster.create_pull_secret(ns, None, config=config)
        ask_ecr(cluster, ns, role, host)
        replaced = eventually(
            partial(replaced_entry, cluster, ns, host, candidate),
            timeout=DEADLINE,
            what="the planted credential replaced",
        )
        assert isinstance(replaced, dict)
        assert ecr_pull(stack, replaced, tmp_path) == 0


def test_short_lived_passwords_are_refreshed_before_they_expire(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_role: Callable[[], str],
) -> None:  # fmt: skip
    role = controller_role()
    host = stack.aws.registry_host
    stack.aws.set_ecr_token_lifetime(30)
    try:
        start_with_ecr(start_controller, stack, "ecr-short")
        ns = cluster.namespace("ecr-short")
        cluster.create_pull_secret(ns, None)
        ask_ecr(cluster, ns, role, host)
        first = eventually(lambda: ecr_entry(cluster, ns, host), timeout=DEADLINE, what="filled")
        filled_at = time.time()
        expires = cluster.annotations(ns)["pull-secret-updater.chainguard.dev/expires-at"]

        def refreshed() -> dict[str, Any] | None:
            entry = ecr_entry(cluster, ns, host)
            assert time.time() < filled_at + 30, "the password expired before its refresh"
            return entry if entry is not None and entry != first else None

        eventually(refreshed, timeout=40, what="a new password before the first expires")
        assert cluster.annotations(ns)["pull-secret-updater.chainguard.dev/expires-at"] > expires
    finally:
        stack.aws.set_ecr_token_lifetime(None)


@pytest.mark.usefixtures("namespace_scoped")
def test_a_role_trusting_one_namespace_is_refused_to_another_by_aws_itself(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
) -> None:  # fmt: skip
    host = stack.aws.registry_host
    team_a, team_b = cluster.namespace("ecr-team-a"), cluster.namespace("ecr-team-b")
    for ns in (team_a, team_b):
        cluster.kubectl("-n", ns, "create", "serviceaccount", SCOPED_SA)
    role = stack.aws.create_role(
        unique("team-a"), subjects=f"system:serviceaccount:{team_a}:{SCOPED_SA}"
    )
    start_with_ecr(start_controller, stack, "ecr-scoped", env=SCOPED)
    for ns in (team_a, team_b):
        cluster.create_pull_secret(ns, None)
        ask_ecr(cluster, ns, role, host)

    eventually(lambda: ecr_entry(cluster, team_a, host), timeout=DEADLINE, what="team-a filled")
    error = eventually(lambda: cluster.annotations(team_b).get(LAST_ERROR), timeout=DEADLINE,
                       what="team-b refused")  # fmt: skip
    assert "AccessDenied" in error
    assert host not in cluster.docker_config(team_b).get("auths", {})
    assert stack.aws.assumed(role, "error") >= 1


def test_an_ecr_outage_ending_shortly_before_expiry_is_bridged(
    stack: LocalStack, cluster: ClusterHelper, start_controller: Start,
    controller_role: Callable[[], str],
) -> None:  # fmt: skip
    """ECR answers 503 from the refresh point until 10 s before the passwords expire, under
    the default backoff (base 1 s, cap 300 s): the retries close in on the expiry, no Secret
    ever holds an expired password, and the three Secrets of the role share one new one."""
    role = controller_role()
    host = stack.aws.registry_host
    lifetime, ends_before = 60, 10.0
    namespaces = [cluster.namespace("ecr-bridge") for _ in range(3)]
    stack.aws.set_ecr_token_lifetime(lifetime)
    try:
        for ns in namespaces:
            cluster.create_pull_secret(ns, None)
            ask_ecr(cluster, ns, role, host)
        env = {"PSU_REFRESH_FRACTION": "0.1", "PSU_REFRESH_JITTER": "0.03",
               "PSU_BACKOFF_BASE": "1", "PSU_BACKOFF_CAP": "300"}  # fmt: skip
        controller = start_with_ecr(start_controller, stack, "ecr-bridge", env=env)
        before = {
            ns: eventually(partial(ecr_entry, cluster, ns, host), timeout=DEADLINE, what=ns)
            for ns in namespaces
        }
        issued = {item["password"]: item for item in stack.aws.passwords()}
        expiry = min(issued[password_of(entry)[1]]["expires_at"] for entry in before.values())
        stack.aws.set_fault("unavailable", api="ecr")
        try:
            while time.time() < expiry - ends_before:
                for ns in namespaces:
                    assert ecr_entry(cluster, ns, host) == before[ns], "changed during the outage"
                time.sleep(0.2)
            failed = sum(
                1 for r in exchanges_logged(controller, [role]) if r.get("outcome") != "success"
            )
        finally:
            stack.aws.clear_faults()
        assert time.time() < expiry - ends_before / 2, "the machine is too slow for this test"
        assert failed >= 2, "the controller tried during the outage"

        refreshed: set[str] = set()
        while refreshed != set(namespaces):
            for ns in set(namespaces) - refreshed:
                looked_at = time.time()
                if ecr_entry(cluster, ns, host) != before[ns]:
                    refreshed.add(ns)
                else:
                    assert looked_at < expiry, f"{ns} held an expired password"
            time.sleep(0.1)
        after = {password_of(ecr_entry(cluster, ns, host) or {})[1] for ns in namespaces}
        assert len(after) == 1, "the Secrets of the role share one new password"
    finally:
        stack.aws.set_ecr_token_lifetime(None)
