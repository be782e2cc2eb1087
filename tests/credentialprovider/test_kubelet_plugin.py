"""A real kubelet pulls through the plugin, from every provider's registry: Pods of an
annotated ServiceAccount pull with no imagePullSecrets, share one exchange per provider while
the kubelet's cache lasts, and everything that can go wrong ends in a refused pull with the
reason in the kubelet's log, never in someone else's.

The stack's node (``devstack.node``: containerd and the kubelet, NodeRestriction on the API
server) gets the plugin as a node administrator installs it: the one-dir bundle in a directory
of its own, the kubelet's bin directory holding one name per provider (links to its
executable), the config ``credential-provider config`` prints for the stand-ins (one entry per
provider: Chainguard's token service, ECR, Artifact Registry, ACR), the shipped RBAC
(``config/credential-provider``, every provider's audience), and the kubelet restarted with
``--image-credential-provider-config`` and ``--image-credential-provider-bin-dir``; at the end
it is restarted as it was. Every Pod pulls
with ``imagePullPolicy: Always``, so the kubelet asks for credentials at each Pod even though
the image is on the node already. Last, the entries get ``HTTPS_PROXY`` in their ``env``, and
every provider's pull goes through a forward proxy (tinyproxy) to its token services.

What the kubelet sent to the Chainguard entry is recorded by a wrapper in front of the bundle
(the requests, tokens included, go to a file in the stack's directory, which is removed with
it), and the token service confirms it: the identities here trust exactly one ServiceAccount
with the audience of the config. The cloud stand-ins count their exchanges per identity.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from devstack import kubeletplugin
from devstack.node import Node
from devstack.proxy import HttpProxy
from devstack.stack import LocalStack
from pull_secret_updater.credentialprovider.install import credential_provider_config
from pull_secret_updater.credentialprovider.options import PROG
from pull_secret_updater.providers.acr.spec import CLIENT_ID
from pull_secret_updater.providers.chainguard.spec import IDENTITY as IDENTITY_KEY
from pull_secret_updater.providers.ecr.spec import ROLE_ARN
from pull_secret_updater.providers.gar.spec import SERVICE_ACCOUNT
from tests.helpers import ClusterHelper, eventually, exchanges, unique
from tests.node.support import UNAUTHORIZED, Pods

pytestmark = [pytest.mark.stack, pytest.mark.node]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PluginNode:
    node: Node
    pods: Pods
    bin_dir: Path
    recorded: Path

    @property
    def plugin(self) -> Path:
        return self.bin_dir / PROG

    def requests(self) -> list[dict[str, Any]]:
        """The requests the kubelet has sent the plugin so far."""
        if not self.recorded.exists():
            return []
        return [json.loads(line) for line in self.recorded.read_text().splitlines() if line]

    def kubelet_log_since(self, offset: int) -> str:
        return self.node.kubelet.log_path.read_text(errors="replace")[offset:]

    def kubelet_log_size(self) -> int:
        return len(self.node.kubelet.log_path.read_text(errors="replace"))


def _restart_kubelet(node: Node, argv: list[str]) -> None:
    node.kubelet.stop()
    node.kubelet.argv = argv
    node.kubelet.start()
    eventually(node.ready, timeout=120, interval=0.5, what="the restarted kubelet's Node Ready")


@pytest.fixture(scope="module")
def plugin_node(stack: LocalStack, node: Node, bundle: Path) -> Iterator[PluginNode]:
    """The node with the plugin installed; put back as it was afterwards."""
    directory = stack.workdir / "credential-provider"
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    # The bundle's directory (executable and _internal/) where an administrator would put it,
    # and in the bin dir one name per provider, linked to its executable.
    installed = directory / "plugin"
    shutil.copytree(bundle.parent, installed, symlinks=True, dirs_exist_ok=True)
    executable = installed / bundle.name
    plans = kubeletplugin.plans(stack)
    for plan in plans[1:]:
        (bin_dir / plan.file_name).symlink_to(executable)
    recorded = directory / "requests.jsonl"
    wrapper = bin_dir / PROG
    assert plans[0].file_name == PROG
    # The kubelet writes one JSON line; the wrapper keeps a copy and hands it to the bundle.
    wrapper.write_text(f'#!/bin/sh\n(cat; echo) | tee -a "{recorded}" | "{executable}" "$@"\n')
    wrapper.chmod(0o755)
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(credential_provider_config(plans), sort_keys=False))
    stack.control_plane.kubectl("apply", "-k", str(ROOT / "config" / "credential-provider"))
    original = list(node.kubelet.argv)
    _restart_kubelet(
        node,
        [
            *original,
            f"--image-credential-provider-config={config}",
            f"--image-credential-provider-bin-dir={bin_dir}",
        ],
    )
    try:
        yield PluginNode(node, Pods(ClusterHelper(stack), node), bin_dir, recorded)
    finally:
        _restart_kubelet(node, original)


@dataclass
class Workload:
    namespace: str
    service_account: str
    identity: str


def workload(
    stack: LocalStack, cluster: ClusterHelper, namespace: str, name: str, *, trusts: str | None
) -> Workload:
    """ServiceAccount `name`, annotated with a new identity that trusts the ServiceAccount
    `trusts` of the same namespace (None: no annotation, no identity)."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", name)
    if trusts is None:
        return Workload(namespace, name, "")
    identity = stack.create_kind_identity(
        name=unique("kubelet"), namespace=namespace, service_account=trusts
    )
    cluster.kubectl("-n", namespace, "annotate", "serviceaccount", name,
                    f"{IDENTITY_KEY}={identity}")  # fmt: skip
    return Workload(namespace, name, identity)


def pod_of(image: str, service_account: str) -> dict[str, Any]:
    """A Pod with no imagePullSecrets that pulls at every start."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{service_account}-"},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "imagePullPolicy": "Always",
                    "command": ["sleep", "Infinity"],
                }
            ],
        },
    }


def pulls(plugin_node: PluginNode, stack: LocalStack, workload: Workload) -> str:
    """A Pod of the workload pulls and runs; returns its name."""
    pods = plugin_node.pods
    name = pods.create(workload.namespace, pod_of(stack.registry.image, workload.service_account))
    pods.wait_event(workload.namespace, name, reason="Pulled",
                    containing="Successfully pulled image")  # fmt: skip
    pods.wait_running(workload.namespace, name)
    pods.delete(workload.namespace, name)
    return name


def is_refused(plugin_node: PluginNode, stack: LocalStack, workload: Workload) -> str:
    """A Pod of the workload is refused by the registry (401); returns its name."""
    pods = plugin_node.pods
    name = pods.create(workload.namespace, pod_of(stack.registry.image, workload.service_account))
    pods.wait_event(workload.namespace, name, reason="Failed", containing=UNAUTHORIZED)
    # NB: gone before anything changes: the kubelet retries a failed pull, and a retry once
    # the token service is back would fill its cache for this ServiceAccount.
    pods.kubectl("-n", workload.namespace, "delete", "pod", name, "--wait=true", "--timeout=90s")
    return name


def total_exchanges(stack: LocalStack) -> int:
    counts = stack.token_admin().stats()["exchanges_total"]
    return int(counts["ok"]) + int(counts["error"])


def test_pods_of_an_annotated_service_account_pull_without_a_secret_and_share_one_exchange(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet")
    app = workload(stack, cluster, namespace, "app", trusts="app")

    asked_before = len(plugin_node.requests())
    first = pulls(plugin_node, stack, app)
    # The kubelet called the plugin once, with a token of <namespace>/app bound to the Pod,
    # with the config's audience, and the annotation; the identity, which trusts only that
    # ServiceAccount with that audience, accepted it.
    [request] = plugin_node.requests()[asked_before:]
    assert request["image"] == stack.registry.image.rsplit(":", 1)[0]  # the kubelet drops the tag
    assert request["serviceAccountAnnotations"] == {IDENTITY_KEY: app.identity}
    claims = jwt.decode(request["serviceAccountToken"], options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{namespace}:app"
    assert claims["aud"] == ["issuer.enforce.dev"]
    assert claims["kubernetes.io"]["pod"]["name"] == first
    assert exchanges(stack, [app.identity]) == 1

    # A second Pod within the cache duration: the kubelet's cached credential, no call, no
    # exchange.
    pulls(plugin_node, stack, app)
    assert len(plugin_node.requests()) == asked_before + 1
    assert exchanges(stack, [app.identity]) == 1


def test_a_service_account_without_the_annotation_is_not_sent_to_the_plugin(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-plain")
    plain = workload(stack, cluster, namespace, "plain", trusts=None)
    before = total_exchanges(stack)
    offset = plugin_node.kubelet_log_size()

    asked_before = len(plugin_node.requests())

    is_refused(plugin_node, stack, plain)

    assert len(plugin_node.requests()) == asked_before
    assert total_exchanges(stack) == before
    assert PROG not in plugin_node.kubelet_log_since(offset)


def test_a_service_account_the_identity_does_not_trust_gets_the_403_and_no_pull(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-untrusted")
    # Annotated with an identity that trusts another ServiceAccount of the namespace.
    intruder = workload(stack, cluster, namespace, "intruder", trusts="app")
    offset = plugin_node.kubelet_log_size()

    is_refused(plugin_node, stack, intruder)

    log = plugin_node.kubelet_log_since(offset)
    assert f"{PROG}: exchange for identity {intruder.identity}" in log
    assert "token service answered 403" in log
    assert stack.token_admin().stats()["exchanges"][intruder.identity]["ok"] == 0


def test_an_outage_or_a_crashing_plugin_leaves_cached_credentials_working(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-outage")
    cached = workload(stack, cluster, namespace, "cached", trusts="cached")
    fresh = workload(stack, cluster, namespace, "fresh", trusts="fresh")
    crashed = workload(stack, cluster, namespace, "crashed", trusts="crashed")
    pulls(plugin_node, stack, cached)  # the kubelet now holds its credential

    admin = stack.token_admin()
    admin.set_fault("refuse")
    try:
        offset = plugin_node.kubelet_log_size()
        pulls(plugin_node, stack, cached)
        is_refused(plugin_node, stack, fresh)
        log = plugin_node.kubelet_log_since(offset)
        assert f"{PROG}: exchange for identity {fresh.identity}" in log
        assert "ConnectError" in log or "could not reach the token service" in log
    finally:
        admin.clear_faults()

    saved = plugin_node.plugin.with_suffix(".saved")
    plugin_node.plugin.rename(saved)
    plugin_node.plugin.write_text("#!/bin/sh\nkill -SEGV $$\n")
    plugin_node.plugin.chmod(0o755)
    try:
        pulls(plugin_node, stack, cached)
        is_refused(plugin_node, stack, crashed)
    finally:
        saved.replace(plugin_node.plugin)
    assert exchanges(stack, [cached.identity]) == 1
    issued = stack.token_admin().stats()["exchanges"]
    assert issued.get(fresh.identity, {}).get("ok", 0) == 0
    assert issued.get(crashed.identity, {}).get("ok", 0) == 0


# -- every provider ---------------------------------------------------------------------------

CLOUDS = ("ecr", "gar", "acr")


def annotated(
    stack: LocalStack, cluster: ClusterHelper, namespace: str, name: str, *, trusts: str | None
) -> kubeletplugin.Workload | None:
    """ServiceAccount `name`, annotated for every provider with identities that trust the
    ServiceAccount `trusts` of the namespace (None: no annotation, no identity)."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", name)
    if trusts is None:
        return None
    made = kubeletplugin.trusted_workload(stack, namespace, name, trusts=trusts)
    cluster.kubectl("-n", namespace, "annotate", "serviceaccount", name,
                    *(f"{k}={v}" for k, v in made.all_annotations.items()))  # fmt: skip
    return made


def pod_of_every_registry(
    stack: LocalStack, service_account: str, providers: tuple[str, ...]
) -> dict[str, Any]:
    """A Pod with one container per provider, each pulling its registry's image."""
    pod = pod_of(stack.registry.image, service_account)
    [container] = pod["spec"]["containers"]
    pod["spec"]["containers"] = [
        dict(container, name=f"from-{p}", image=kubeletplugin.image_of(stack, p)) for p in providers
    ]
    return pod


def outcome_per_image(pods: Pods, namespace: str, name: str, reason: str, text: str) -> set[str]:
    """The images of the Pod's events with `reason` whose message holds `text`."""
    return {
        image
        for event in pods.events(namespace, name)
        if event["reason"] == reason and text in event["message"]
        for image in _images_in(event["message"])
    }


def _images_in(message: str) -> list[str]:
    # NB: quoted, and in a Failed event followed by a colon: 'image "<ref>": failed ...'.
    return [word.strip("\"',:") for word in message.split() if "/" in word and ":" in word]


def pulls_all(
    plugin_node: PluginNode, stack: LocalStack, namespace: str, service_account: str,
    providers: tuple[str, ...],
) -> None:  # fmt: skip
    """A Pod with an image of each provider's registry pulls them all and runs."""
    pods = plugin_node.pods
    name = pods.create(namespace, pod_of_every_registry(stack, service_account, providers))
    pods.wait_running(namespace, name)
    pulled = outcome_per_image(pods, namespace, name, "Pulled", "Successfully pulled image")
    for provider in providers:
        assert kubeletplugin.image_of(stack, provider) in pulled, provider
    pods.delete(namespace, name)


def refused_all(
    plugin_node: PluginNode, stack: LocalStack, namespace: str, service_account: str,
    providers: tuple[str, ...],
) -> None:  # fmt: skip
    """A Pod with an image of each provider's registry is refused by each registry (401)."""
    pods = plugin_node.pods
    name = pods.create(namespace, pod_of_every_registry(stack, service_account, providers))
    wanted = {kubeletplugin.image_of(stack, p) for p in providers}
    eventually(
        lambda: wanted <= outcome_per_image(pods, namespace, name, "Failed", UNAUTHORIZED),
        timeout=120, interval=1, what="a 401 from every registry",
    )  # fmt: skip
    # NB: gone before anything changes: the kubelet retries a failed pull.
    pods.kubectl("-n", namespace, "delete", "pod", name, "--wait=true", "--timeout=90s")


def cloud_exchanges(stack: LocalStack, workload: kubeletplugin.Workload) -> dict[str, int]:
    """The exchanges each cloud stand-in answered for the workload's identities."""
    return {
        "ecr": stack.aws.authorizations(workload.annotations["ecr"][ROLE_ARN]),
        "gar": stack.gcp.generations(workload.annotations["gar"][SERVICE_ACCOUNT]),
        "acr": stack.azure.exchanges(workload.annotations["acr"][CLIENT_ID]),
    }


def test_a_service_account_annotated_for_every_provider_pulls_from_each_registry(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-every")
    made = annotated(stack, cluster, namespace, "multi", trusts="multi")
    assert made is not None
    asked_before = len(plugin_node.requests())

    pulls_all(plugin_node, stack, namespace, "multi", kubeletplugin.PROVIDERS)

    # Each entry got its own annotations only, and each provider exchanged once.
    [request] = plugin_node.requests()[asked_before:]
    assert request["serviceAccountAnnotations"] == made.annotations["chainguard"]
    assert exchanges(stack, [made.annotations["chainguard"][IDENTITY_KEY]]) == 1
    assert cloud_exchanges(stack, made) == {"ecr": 1, "gar": 1, "acr": 1}

    # A second Pod of the ServiceAccount: every credential from the kubelet's cache.
    pulls_all(plugin_node, stack, namespace, "multi", kubeletplugin.PROVIDERS)
    assert len(plugin_node.requests()) == asked_before + 1
    assert cloud_exchanges(stack, made) == {"ecr": 1, "gar": 1, "acr": 1}


def test_a_service_account_without_annotations_gets_401_from_every_registry(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-every-plain")
    annotated(stack, cluster, namespace, "plain", trusts=None)
    offset = plugin_node.kubelet_log_size()
    asked_before = len(plugin_node.requests())

    refused_all(plugin_node, stack, namespace, "plain", kubeletplugin.PROVIDERS)

    # The kubelet did not call the plugin: no error of ours in its log.
    assert len(plugin_node.requests()) == asked_before
    assert PROG not in plugin_node.kubelet_log_since(offset)


def test_a_service_account_no_identity_trusts_gets_each_services_refusal_in_the_log(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-every-untrusted")
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "app")
    intruder = annotated(stack, cluster, namespace, "intruder", trusts="app")
    assert intruder is not None
    offset = plugin_node.kubelet_log_size()

    refused_all(plugin_node, stack, namespace, "intruder", CLOUDS)

    log = plugin_node.kubelet_log_since(offset)
    refusals = {
        "ecr": "AWS STS answered 403 AccessDenied",
        "gar": "Google STS answered 400 unauthorized_client",
        "acr": "Microsoft Entra ID answered 400 invalid_client AADSTS700213",
    }
    for provider, refusal in refusals.items():
        want = kubeletplugin.want_of(stack, intruder, provider)
        assert (
            f"{PROG}: exchange for identity {want} as ServiceAccount {namespace}/intruder "
            f"failed: {refusal}"
        ) in log, provider
    assert cloud_exchanges(stack, intruder) == {"ecr": 0, "gar": 0, "acr": 0}


def test_an_outage_of_every_cloud_leaves_cached_credentials_pulling(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    namespace = cluster.namespace("kubelet-every-outage")
    cached = annotated(stack, cluster, namespace, "cached", trusts="cached")
    fresh = annotated(stack, cluster, namespace, "fresh", trusts="fresh")
    assert cached is not None
    assert fresh is not None
    pulls_all(plugin_node, stack, namespace, "cached", CLOUDS)

    for cloud in (stack.aws, stack.gcp, stack.azure):
        cloud.set_fault("unavailable")
    try:
        offset = plugin_node.kubelet_log_size()
        pulls_all(plugin_node, stack, namespace, "cached", CLOUDS)
        refused_all(plugin_node, stack, namespace, "fresh", CLOUDS)
        log = plugin_node.kubelet_log_since(offset)
        for provider in CLOUDS:
            want = kubeletplugin.want_of(stack, fresh, provider)
            assert (
                f"{PROG}: exchange for identity {want} as ServiceAccount {namespace}/fresh" in log
            )
    finally:
        for cloud in (stack.aws, stack.gcp, stack.azure):
            cloud.clear_faults()
    assert cloud_exchanges(stack, cached) == {"ecr": 1, "gar": 1, "acr": 1}
    assert cloud_exchanges(stack, fresh) == {"ecr": 0, "gar": 0, "acr": 0}


def test_behind_a_forward_proxy_every_entry_pulls_through_it(
    plugin_node: PluginNode, stack: LocalStack, cluster: ClusterHelper
) -> None:
    # A node that reaches the token services through a proxy: each entry of the kubelet's config
    # gives the plugin HTTPS_PROXY (a proxy demanding a user and password), and every call of
    # the plugin tunnels to its services through it. Last in the module: it restarts the
    # kubelet twice, which empties its cache of credentials.
    config = plugin_node.bin_dir.parent / "config.yaml"
    original = config.read_text()
    argv = list(plugin_node.node.kubelet.argv)
    with HttpProxy(stack.workdir / "proxy", credentials=("node", "pr0xy-s3cret")) as proxy:
        proxied = yaml.safe_load(original)
        for entry in proxied["providers"]:
            entry["env"] = [{"name": "HTTPS_PROXY", "value": proxy.url}]
        config.write_text(yaml.safe_dump(proxied, sort_keys=False))
        _restart_kubelet(plugin_node.node, argv)
        try:
            namespace = cluster.namespace("kubelet-proxy")
            made = annotated(stack, cluster, namespace, "proxied", trusts="proxied")
            assert made is not None
            pulls_all(plugin_node, stack, namespace, "proxied", kubeletplugin.PROVIDERS)
            assert cloud_exchanges(stack, made) == {"ecr": 1, "gar": 1, "acr": 1}
            services = set().union(
                *(kubeletplugin.service_origins(stack, p) for p in kubeletplugin.PROVIDERS)
            )
            assert set(proxy.tunnels()) == services
        finally:
            config.write_text(original)
            _restart_kubelet(plugin_node.node, argv)
