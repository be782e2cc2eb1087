"""Rendering the chart and config/, and running the rendered controller without a kubelet.

``Helm`` wraps the helm binary: ``template`` returns the rendered objects, parsed, and ``notes``
what ``helm install`` prints for the user; ``kustomize`` renders a kustomization. ``PodRunner``
does for one replica what kubelet would do with the Deployment read back from the API server:
it writes the ConfigMap and projected-token volumes to files, resolves the environment (field
references, paths under mounts) and starts the container's command as a local process that
authenticates as the pod's ServiceAccount. So what runs is configured by the chart alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from devstack.binaries import REPO, MissingBinary, find_binaries
from devstack.procs import Process, free_port, wait_until
from devstack.stack import LocalStack
from pull_secret_updater.cli.flags import load_settings
from pull_secret_updater.providers.ecr.section import EcrSection
from pull_secret_updater.settings import Settings

CHART = REPO / "charts" / "pull-secret-updater"
CONFIG = REPO / "config"
ADMISSION = CONFIG / "admission"
WITHOUT_ADMISSION = CONFIG / "without-admission"
VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"

Obj = dict[str, Any]


class HelmError(RuntimeError):
    pass


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: Path | None = None

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kube = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        result = subprocess.run(
            [str(self.binary), *kube, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise HelmError(f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
        return result

    def template(
        self,
        *,
        release: str = "pull-secret-updater",
        namespace: str = "pull-secret-updater",
        values: Mapping[str, object] | None = None,
        api_versions: Iterable[str] = (VAP_API,),
    ) -> list[Obj]:
        """The chart rendered offline, as a list of objects."""
        args = ["template", release, str(CHART), f"--namespace={namespace}"]
        args += [f"--api-versions={v}" for v in api_versions]
        args += value_args(values)
        return parse_objects(self.run(*args).stdout)

    def notes(
        self,
        *,
        release: str,
        namespace: str,
        values: Mapping[str, object] | None = None,
        dry_run: bool = True,
    ) -> str:
        """What ``helm install`` into the cluster of ``kubeconfig`` prints after ``NOTES:``.

        A dry run (``--dry-run=server``) still asks the cluster which APIs it serves.
        """
        args = ["install", release, str(CHART), f"--namespace={namespace}"]
        args += ["--dry-run=server"] if dry_run else []
        out = self.run(*args, *value_args(values)).stdout
        assert "\nNOTES:\n" in out, out
        return out.split("\nNOTES:\n", 1)[1]


def value_args(values: Mapping[str, object] | None) -> list[str]:
    """``--set-json`` per top-level key: maps are merged with the chart's defaults."""
    return [f"--set-json={key}={json.dumps(value)}" for key, value in (values or {}).items()]


def parse_objects(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(path: os.PathLike[str]) -> list[Obj]:
    """``kubectl kustomize``: the objects ``kubectl apply -k`` would send."""
    try:
        kubectl = find_binaries().kubectl
    except MissingBinary as e:
        pytest.skip(str(e))
    out = subprocess.run(
        [str(kubectl), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return parse_objects(out)


def find(objects: Sequence[Obj], kind: str, name: str | None = None) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name!r} in {kinds(objects)}"
    return matches[0]


def kinds(objects: Sequence[Obj]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def container(objects: Sequence[Obj]) -> Obj:
    containers = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def plain_env(objects: Sequence[Obj]) -> dict[str, str]:
    """The container's environment variables that have a literal value."""
    return {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}


def volume_for(objects: Sequence[Obj], path: str) -> tuple[Obj, str]:
    """The pod volume a file path lies in, and the path inside the volume."""
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    for mount in container(objects).get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            return dict(volume), path.removeprefix(prefix)
    raise AssertionError(f"{path} is on no volume")


def load_pod_settings(objects: Sequence[Obj], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The controller's settings from the rendered container's environment alone, as in a pod
    named pod-0 in the namespace pull-secret-updater."""
    for name in list(os.environ):
        if name.startswith("PSU_") or name in ("POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(name)
    for name, value in plain_env(objects).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_NAME", "pod-0")
    monkeypatch.setenv("POD_NAMESPACE", "pull-secret-updater")
    return load_settings([])


def ecr_section(settings: Settings) -> EcrSection:
    """The settings' one ECR provider section."""
    (section,) = [s for s in settings.sections if isinstance(s, EcrSection)]
    return section


def rules_for(role: Obj, resource: str) -> list[Obj]:
    return [r for r in role["rules"] if resource in r["resources"]]


# -- a replica of the rendered Deployment, without a kubelet ------------------------------------


@dataclass
class PodRunner:
    """Runs the container of a Deployment read from the API server, as kubelet would."""

    stack: LocalStack
    namespace: str
    deployment: str
    workdir: Path
    pod_name: str = "pod-0"
    metrics_port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self) -> PodRunner:
        spec = json.loads(
            self.stack.control_plane.kubectl(
                "-n", self.namespace, "get", "deployment", self.deployment, "-o", "json"
            )
        )["spec"]["template"]["spec"]
        (box,) = spec["containers"]
        service_account = spec["serviceAccountName"]
        mounts = self._materialise(
            spec.get("volumes", []), box.get("volumeMounts", []), service_account=service_account
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.workdir),
            **self._environment(box.get("env", []), mounts),
            # What differs from a pod: the API server is reached with a kubeconfig for the
            # same ServiceAccount, and the port must be free on this machine.
            "PSU_KUBECONFIG": str(
                self.stack.control_plane.service_account_kubeconfig(
                    self.namespace, service_account, self.workdir / "kubeconfig"
                )
            ),
            "PSU_METRICS_HOST": "127.0.0.1",
            "PSU_METRICS_PORT": str(self.metrics_port),
        }
        self.process = Process(
            self.pod_name,
            [sys.executable, "-m", "pull_secret_updater", *box.get("args", [])],
            log_dir=self.workdir,
            env=env,
            cwd=REPO,
        )
        self.process.start()
        with httpx2.Client(timeout=2.0) as client:
            wait_until(
                lambda: client.get(f"{self.metrics_url}/readyz").status_code == 200,
                what=f"waiting for {self.pod_name} to be ready",
                timeout=30,
                process=self.process,
            )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines) if self.process else ""

    def _materialise(
        self, volumes: list[Obj], mounts: list[Obj], *, service_account: str
    ) -> dict[str, Path]:
        """Write each mounted volume to a directory; returns mountPath -> directory."""
        by_name = {v["name"]: v for v in volumes}
        placed: dict[str, Path] = {}
        for mount in mounts:
            volume = by_name[mount["name"]]
            target = self.workdir / "volumes" / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = json.loads(
                    self.stack.control_plane.kubectl(
                        "-n",
                        self.namespace,
                        "get",
                        "configmap",
                        volume["configMap"]["name"],
                        "-o",
                        "json",
                    )
                ).get("data", {})
                for key, value in data.items():
                    (target / key).write_text(value)
            elif "projected" in volume:
                for source in volume["projected"]["sources"]:
                    token = source["serviceAccountToken"]
                    (target / token["path"]).write_text(
                        self.stack.control_plane.service_account_token(
                            self.namespace,
                            service_account,
                            audience=token.get("audience"),
                            seconds=int(token.get("expirationSeconds", 3600)),
                        )
                    )
            elif "emptyDir" not in volume:
                raise AssertionError(f"volume {volume['name']}: kind not emulated")
            placed[mount["mountPath"].rstrip("/")] = target
        return placed

    def _environment(self, env: list[Obj], mounts: Mapping[str, Path]) -> dict[str, str]:
        fields = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}
        resolved: dict[str, str] = {}

        def local_path(value: str) -> str:
            for mount_path, local in mounts.items():
                if value.startswith(mount_path + "/"):
                    return str(local / value.removeprefix(mount_path + "/"))
            return value

        for item in env:
            if item["name"].startswith("PSU_PROVIDERS") and "value" in item:
                # The sections' paths (token_path, ca_bundle) point into mounts too. A
                # PSU_PROVIDERS_<NAME> may hold one section rather than a list.
                value = json.loads(item["value"])
                listed = value if isinstance(value, list) else [value]
                sections = [
                    {k: local_path(v) if isinstance(v, str) else v for k, v in section.items()}
                    for section in listed
                ]
                resolved[item["name"]] = json.dumps(sections)
            elif "value" in item:
                resolved[item["name"]] = local_path(str(item["value"]))
            else:
                resolved[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        return resolved
