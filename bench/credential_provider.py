"""Credential-provider plugin: start-up and cold-call latency of the one-file bundle.

The kubelet starts the plugin as a new process at every pull it has no cached credential for,
so what matters is a cold call: process start (the bundle unpacks its Python), imports, the
key discovery and the exchange at the token service, the verification, the answer. Each call
here is exactly that, one process with a real ServiceAccount token against the local stack's
token service, run one after the other. Start-up alone is the same process answering
``--help`` (no network). The baseline is the same plugin run by the project's own Python
(``python -m pull_secret_updater.credentialprovider``), in the same run: the bundle's extra cost
is the unpacking.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import lab
from bench.results import ScenarioResult, Target, distribution
from bench.sizes import Sizes
from devstack.stack import SA_AUDIENCE, LocalStack

TITLE = "Credential-provider plugin"
TARGET_COLD_P99_S = 2.0
ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "hack" / "build-credential-provider.sh"
IDENTITY_ANNOTATION = lab.IDENTITY_ANNOTATION


def build_bundle() -> tuple[Path, float]:
    """The bundle's path, and the seconds the build (or the cache look-up) took."""
    started = time.monotonic()
    built = subprocess.run(
        [str(BUILD)], capture_output=True, text=True, check=True, timeout=1800, cwd=ROOT
    )
    return Path(built.stdout.strip().splitlines()[-1]), time.monotonic() - started


@dataclass
class Calls:
    """Wall and CPU (user + system) seconds of each call, and its exit status."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(1 for status in self.statuses if status != 0)


def timed_calls(argv: Sequence[str], stdin: str, count: int) -> Calls:
    """`count` calls, one after the other. CPU time is the child's own (getrusage), which a
    busy machine inflates far less than wall time."""
    calls = Calls()
    for _ in range(count):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=90, check=False
        )
        calls.wall.append(time.monotonic() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        calls.cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        calls.statuses.append(done.returncode)
    return calls


def workload(stack: LocalStack) -> tuple[str, str]:
    """An annotated ServiceAccount's identity and a token of it, as the kubelet requests it."""
    kubectl = stack.control_plane.kubectl
    namespace = f"bench-cp-{int(time.time())}"
    kubectl("create", "namespace", namespace)
    kubectl("-n", namespace, "create", "serviceaccount", "app")
    identity = stack.create_kind_identity(
        name=f"{namespace}-app", namespace=namespace, service_account="app"
    )
    token = kubectl(
        "-n", namespace, "create", "token", "app", f"--audience={SA_AUDIENCE}", "--duration=1h"
    ).strip()
    return identity, token


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="credential_provider", title=TITLE)
    calls = sizes.plugin_calls
    bundle, build_seconds = build_bundle()
    lab.progress(f"bundle {bundle} ({bundle.stat().st_size / 2**20:.1f} MiB)")
    async with stacks.stack() as stack:
        identity, token = workload(stack)
        request = json.dumps(
            {
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "kind": "CredentialProviderRequest",
                "image": stack.registry.image,
                "serviceAccountToken": token,
                "serviceAccountAnnotations": {IDENTITY_ANNOTATION: identity},
            }
        )
        flags = [
            f"--issuer={stack.token_service.url}",
            f"--registry={stack.registry.host}",
            f"--ca-bundle={stack.ca_file}",
        ]
        module = [sys.executable, "-m", "pull_secret_updater.credentialprovider"]
        # One warm-up each (page cache), not counted.
        timed_calls([str(bundle), "--help"], "", 1)
        timed_calls([*module, "--help"], "", 1)
        startup = timed_calls([str(bundle), "--help"], "", calls)
        startup_module = timed_calls([*module, "--help"], "", calls)
        admin = stack.token_admin()
        before = int(admin.stats()["exchanges"].get(identity, {}).get("ok", 0))
        cold = timed_calls([str(bundle), *flags], request, calls)
        cold_module = timed_calls([*module, *flags], request, calls)
        after = int(admin.stats()["exchanges"].get(identity, {}).get("ok", 0))

    failures = cold.failures + cold_module.failures
    cold_dist = distribution(cold.wall)
    startup_dist = distribution(startup.wall)
    size = bundle.stat().st_size
    result.figures.update(
        calls=calls,
        bundle_bytes=size,
        bundle_mib=round(size / 2**20, 1),
        bundle_build_seconds=round(build_seconds, 1),
        load_average_1m=round(os.getloadavg()[0], 2),
        startup_seconds=startup_dist,
        startup_cpu_seconds=distribution(startup.cpu),
        startup_seconds_project_python=distribution(startup_module.wall),
        startup_cpu_seconds_project_python=distribution(startup_module.cpu),
        cold_call_seconds=cold_dist,
        cold_call_cpu_seconds=distribution(cold.cpu),
        cold_call_seconds_project_python=distribution(cold_module.wall),
        cold_call_cpu_seconds_project_python=distribution(cold_module.cpu),
        exchanges=after - before,
        failed_calls=failures,
    )
    result.series = {
        "cold_call_seconds": [round(v, 4) for v in cold.wall],
        "cold_call_seconds_project_python": [round(v, 4) for v in cold_module.wall],
    }
    p99 = cold_dist.get("p99", float("inf"))
    result.targets = [
        Target(
            name="cold call p99 (bundle)",
            requirement=f"p99 < {TARGET_COLD_P99_S:g} s, one exchange per call",
            measured=(
                f"p50 {cold_dist.get('p50')} / p99 {p99} s over {calls} calls (CPU p50 "
                f"{distribution(cold.cpu).get('p50')} s); start-up p50 "
                f"{startup_dist.get('p50')} s; {size / 2**20:.1f} MiB"
            ),
            passed=failures == 0 and p99 < TARGET_COLD_P99_S and after - before == 2 * calls,
        )
    ]
    if after - before != 2 * calls:
        result.notes.append(f"{after - before} exchanges for {2 * calls} calls.")
    result.notes.append(
        f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end: "
        "wall times on a busy machine are inflated, CPU times much less."
    )
    return result
