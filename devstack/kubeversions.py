"""Which Kubernetes version the stack runs, and everything that differs between versions.

One setting picks the version: ``KUBERNETES_VERSION`` in the environment (``make test``,
``python -m devstack``, the build script) or pytest's ``--kubernetes-version`` (which sets the
same variable); without it, the pinned newest one (``hack/versions.env``). The versions the
test matrix runs are pinned there too: ``KUBERNETES_VERSION`` (the newest, the whole suite)
and ``KUBERNETES_COMPAT_VERSIONS`` (the oldest supported and one in between, a compatibility
subset).

Every difference between versions that the stack or the tests must know is here, as a
version where something appeared (or went away) and what to do about it: the rest of the stack
asks this module and never compares versions itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devstack.binaries import kubernetes_version, versions

__all__ = [
    "ADMISSION_POLICY",
    "ENDPOINT_RECONCILER_NEEDS_ROUTABLE_IP",
    "KUBELET_FAIL_CGROUP_V1",
    "NODE_AUDIENCE_RESTRICTION",
    "PLUGIN_SERVICE_ACCOUNT_TOKENS",
    "PLUGIN_SERVICE_ACCOUNT_TOKENS_GATE",
    "KubeVersion",
    "apiserver_args",
    "compat_versions",
    "kubelet_config",
    "kubelet_feature_gates",
    "newest",
    "oldest",
    "selected",
]

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class KubeVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        """``v1.30.14``, ``1.30.14`` or ``v1.30``; a build suffix (``-gke.1``) is ignored."""
        match = _VERSION.match(text.strip())
        if match is None:
            raise ValueError(f"not a Kubernetes version: {text!r}")
        major, minor, patch = match.groups()
        return cls(int(major), int(minor), int(patch or 0))

    def at_least(self, other: KubeVersion) -> bool:
        return (self.major, self.minor) >= (other.major, other.minor)

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


# -- what appeared or went away, by the first minor version that has it -------------------------

#: ``admissionregistration.k8s.io/v1`` ValidatingAdmissionPolicy (GA, served by default): the
#: policy that config/ ships on the controller's writes. Before it: config/without-admission/.
ADMISSION_POLICY = KubeVersion(1, 30)

#: KEP-4412: the kubelet hands a credential-provider plugin the pulling Pod's ServiceAccount
#: token (``tokenAttributes``). Alpha behind a kubelet feature gate in 1.33, on by default from
#: 1.34, which is the first version the plugin's ServiceAccount-token mode is tested on.
PLUGIN_SERVICE_ACCOUNT_TOKENS = KubeVersion(1, 34)
PLUGIN_SERVICE_ACCOUNT_TOKENS_GATE = (
    KubeVersion(1, 33),
    "KubeletServiceAccountTokenForCredentialProviders",
)

#: NodeRestriction lets a kubelet request ServiceAccount tokens only for audiences its Pods
#: mount or RBAC grants it (``ServiceAccountNodeAudienceRestriction``, on by default from 1.33).
NODE_AUDIENCE_RESTRICTION = KubeVersion(1, 33)

#: From 1.37 kube-apiserver refuses a loopback ``--advertise-address`` while it reconciles the
#: ``kubernetes`` Service's endpoints ("may not be in the loopback range"). Nothing on this
#: stack routes through that Service (no kube-proxy; Pods reach the API server at 127.0.0.1),
#: so from then on the stack turns the reconciler off.
ENDPOINT_RECONCILER_NEEDS_ROUTABLE_IP = KubeVersion(1, 37)

#: The KubeletConfiguration field ``failCgroupV1`` (1.31+). Kubelets from 1.35 refuse to start
#: on a cgroup v1 host unless it is false; older ones do not know the field.
KUBELET_FAIL_CGROUP_V1 = KubeVersion(1, 31)


# -- which version ---------------------------------------------------------------------------


def newest() -> KubeVersion:
    """The pinned default: the newest version tested, on which the whole suite runs."""
    return KubeVersion.parse(versions()["KUBERNETES_VERSION"])


def compat_versions() -> tuple[KubeVersion, ...]:
    """The older versions the compatibility subset runs on, oldest first."""
    listed = versions().get("KUBERNETES_COMPAT_VERSIONS", "")
    return tuple(sorted(KubeVersion.parse(v) for v in listed.split(",") if v.strip()))


def oldest() -> KubeVersion:
    """The oldest version tested (and so supported)."""
    return min((newest(), *compat_versions()))


def selected() -> KubeVersion:
    """The version this stack runs: ``KUBERNETES_VERSION`` if set, else the newest."""
    return KubeVersion.parse(kubernetes_version())


# -- what differs ----------------------------------------------------------------------------


def apiserver_args(version: KubeVersion) -> list[str]:
    """kube-apiserver flags that depend on the version (the rest are the same everywhere)."""
    args = ["--advertise-address=127.0.0.1"]
    if version.at_least(ENDPOINT_RECONCILER_NEEDS_ROUTABLE_IP):
        args.append("--endpoint-reconciler-type=none")
    return args


def kubelet_feature_gates(version: KubeVersion) -> dict[str, bool]:
    """Feature gates the node's kubelet needs for what the tests run on this version."""
    since, gate = PLUGIN_SERVICE_ACCOUNT_TOKENS_GATE
    if version.at_least(since) and not version.at_least(PLUGIN_SERVICE_ACCOUNT_TOKENS):
        return {gate: True}
    return {}


def kubelet_config(version: KubeVersion, config: Mapping[str, Any]) -> dict[str, Any]:
    """The KubeletConfiguration ``config`` (written for the newest kubelet) as this version's
    kubelet accepts it: fields it does not know removed, its feature gates added."""
    adapted = dict(config)
    if not version.at_least(KUBELET_FAIL_CGROUP_V1):
        adapted.pop("failCgroupV1", None)
    gates = kubelet_feature_gates(version)
    if gates:
        adapted["featureGates"] = {**adapted.get("featureGates", {}), **gates}
    return adapted
