"""Credential-provider plugin: the cold call, for every provider, beside the official ECR plugin.

The kubelet starts the plugin as a new process at every pull it has no cached credential for,
so what matters is a cold call: process start, imports, the exchange at the provider's token
service (for Chainguard the key discovery and the verification too), the answer. Each call here
is exactly that, one process with a real ServiceAccount token (the provider's audience) against
the local stack's stand-ins, run one after the other, with the arguments the config generator
writes (`devstack.kubeletplugin.plans`). Measured per call: wall time from process start to its
exit, CPU (user + system) and peak RSS of that process alone (``wait4``).

Series, in one run:

- the shipped bundle (PyInstaller one-dir) for each provider; Chainguard twice, without and with
  ``--key-cache`` (verified keys kept between calls: no key discovery once the file holds them);
- the official ECR plugin (``k8s.io/cloud-provider-aws/cmd/ecr-credential-provider``, Go) on
  the same ECR stand-in with the same kind of token: the ratio is ours over theirs;
- ``--help`` (every import, the help text and an orderly exit; no network), and the
  project's own Python running the same module, for reference.

The target is each provider's p99 at most `TARGET_COLD_P99_S`; a missed one is reported as
MISSED (and fails the run with ``--strict``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import lab
from bench.results import ScenarioResult, Target, distribution
from bench.sizes import Sizes
from devstack import kubeletplugin
from devstack.binaries import find_ecr_credential_provider
from devstack.ecrplugin import build_request, plugin_env
from devstack.stack import LocalStack

TITLE = "Credential-provider plugin"
TARGET_COLD_P99_S = 0.25
ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "hack" / "build-credential-provider.sh"


def build_bundle() -> tuple[Path, float]:
    """The bundle's executable, and the seconds the build (or the cache look-up) took."""
    started = time.monotonic()
    built = subprocess.run(
        [str(BUILD)], capture_output=True, text=True, check=True, timeout=1800, cwd=ROOT
    )
    return Path(built.stdout.strip().splitlines()[-1]), time.monotonic() - started


@dataclass
class Calls:
    """Wall and CPU (user + system) seconds, peak RSS (MiB) and exit status of each call."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    last_stdout: bytes = b""
    last_stderr: bytes = b""

    @property
    def failures(self) -> int:
        return sum(1 for status in self.statuses if status != 0)

    def figures(self) -> dict[str, object]:
        return {
            "wall_seconds": distribution(self.wall),
            "cpu_seconds": distribution(self.cpu),
            "peak_rss_mib": distribution(self.rss_mib),
            "failures": self.failures,
        }


#: Runs a series of calls and reports each one's wall time, CPU time, peak RSS and status. NB:
#: a process of its own, small and forking (never vfork): a child's peak RSS starts at what
#: its parent had mapped when it forked, so children of this benchmark (a big Python) would
#: all report its size. From this launcher they report at least its own (the floor, measured
#: with /bin/true and reported beside).
LAUNCHER = """
import json, os, sys, time
spec = json.loads(sys.stdin.read())
env = spec["env"] if spec["env"] is not None else dict(os.environ)
results = []
for _ in range(spec["count"]):
    read_end, write_end = os.pipe()
    os.write(write_end, spec["stdin"].encode())
    os.close(write_end)
    out, err = os.open(spec["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), \\
        os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(read_end, 0); os.dup2(out, 1); os.dup2(err, 2)
        os.execve(spec["argv"][0], spec["argv"], env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    for fd in (read_end, out, err):
        os.close(fd)
    results.append([wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                    os.waitstatus_to_exitcode(status)])
print(json.dumps(results))
"""


def timed_calls(
    argv: Sequence[str], stdin: str, count: int, env: dict[str, str] | None = None
) -> Calls:
    """`count` calls, one after the other, each measured alone (see `LAUNCHER`)."""
    calls = Calls()
    with tempfile.TemporaryDirectory(prefix="psu-bench-call-") as scratch:
        stdout, stderr = Path(scratch) / "stdout", Path(scratch) / "stderr"
        spec = {
            "argv": [str(a) for a in argv],
            "stdin": stdin,
            "count": count,
            "env": env,
            "stdout": str(stdout),
            "stderr": str(stderr),
        }
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER],
            input=json.dumps(spec), capture_output=True, text=True, check=True, timeout=1800,
        )  # fmt: skip
        for wall, cpu, rss, status in json.loads(done.stdout):
            calls.wall.append(wall)
            calls.cpu.append(cpu)
            calls.rss_mib.append(rss)
            calls.statuses.append(status)
        calls.last_stdout = stdout.read_bytes()
        calls.last_stderr = stderr.read_bytes()
    return calls


def answered(calls: Calls, registry: str) -> bool:
    """Whether the last call answered with credentials for `registry`."""
    try:
        auth = json.loads(calls.last_stdout)["auth"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(auth, dict) and any(key.split(":")[0] == registry for key in auth)


def workload(stack: LocalStack) -> kubeletplugin.Workload:
    namespace = f"bench-cp-{int(time.time())}"
    kubectl = stack.control_plane.kubectl
    kubectl("create", "namespace", namespace)
    kubectl("-n", namespace, "create", "serviceaccount", "app")
    return kubeletplugin.trusted_workload(stack, namespace, "app")


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 1) if ours and theirs else None


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="credential_provider", title=TITLE)
    count = sizes.plugin_calls
    bundle, build_seconds = build_bundle()
    size = sum(f.stat().st_size for f in bundle.parent.rglob("*") if f.is_file())
    lab.progress(f"bundle {bundle.parent} ({size / 2**20:.1f} MiB, one-dir)")
    official: Path | None
    try:
        official = find_ecr_credential_provider(build=True)
    except Exception as e:  # reported, and the rest measured
        official = None
        result.notes.append(f"The official ECR plugin could not be built: {e}")
    load_before = os.getloadavg()
    series: dict[str, Calls] = {}
    async with stacks.stack() as stack:
        app = workload(stack)
        plans = {plan.provider: plan for plan in kubeletplugin.plans(stack)}
        requests = {p: kubeletplugin.request(stack, app, p) for p in kubeletplugin.PROVIDERS}
        admin = stack.token_admin()
        identity = app.annotations["chainguard"][kubeletplugin.IDENTITY]
        before = int(admin.stats()["exchanges"].get(identity, {}).get("ok", 0))
        module = [sys.executable, "-m", "pull_secret_updater.credentialprovider"]
        # One warm-up each (page cache), not counted.
        timed_calls([str(bundle), "--help"], "", 1)
        timed_calls([*module, "--help"], "", 1)
        series["rss_floor"] = timed_calls(["/bin/true"], "", 3)
        series["startup"] = timed_calls([str(bundle), "--help"], "", count)
        series["startup_project_python"] = timed_calls([*module, "--help"], "", count)
        for provider in kubeletplugin.PROVIDERS:
            argv = [str(bundle), *kubeletplugin.args_of(plans[provider])]
            timed_calls(argv, requests[provider], 1)
            series[provider] = timed_calls(argv, requests[provider], count)
        with tempfile.TemporaryDirectory(prefix="psu-keys-") as keys:
            cached = kubeletplugin.plans(stack, providers=("chainguard",), key_cache=Path(keys))
            argv = [str(bundle), *kubeletplugin.args_of(cached[0])]
            timed_calls(argv, requests["chainguard"], 1)  # fills the key file
            series["chainguard_key_cache"] = timed_calls(argv, requests["chainguard"], count)
        chainguard_args = kubeletplugin.args_of(plans["chainguard"])
        series["chainguard_project_python"] = timed_calls(
            [*module, *chainguard_args], requests["chainguard"], count
        )
        after = int(admin.stats()["exchanges"].get(identity, {}).get("ok", 0))
        if official is not None:
            ecr = json.loads(requests["ecr"])
            request = build_request(
                ecr["image"],
                service_account_token=ecr["serviceAccountToken"],
                role_arn=app.annotations["ecr"][kubeletplugin.ROLE_ARN],
            )
            env = plugin_env(
                endpoint=stack.aws.endpoint,
                ca_file=stack.ca_file,
                region=stack.aws.region,
                role_arn=None,
                web_identity_token_file=None,
            )
            timed_calls([str(official)], json.dumps(request), 1, env)
            series["official_ecr"] = timed_calls([str(official)], json.dumps(request), count, env)
        registries = {
            "chainguard": stack.registry.host.split(":")[0],
            "ecr": stack.aws.registry_host.split(":")[0],
            "gar": stack.gcp.registry_host.split(":")[0],
            "acr": stack.azure.registry_host.split(":")[0],
        }
    load_after = os.getloadavg()

    result.figures.update(
        calls=count,
        bundle_form="PyInstaller one-dir (executable + _internal/)",
        bundle_bytes=size,
        bundle_mib=round(size / 2**20, 1),
        bundle_build_seconds=round(build_seconds, 1),
        load_average_before=[round(v, 2) for v in load_before],
        load_average_after=[round(v, 2) for v in load_after],
        cpus=os.cpu_count(),
        chainguard_exchanges=after - before,
    )
    for name, calls in series.items():
        result.figures[name] = calls.figures()
    result.series = {f"{name}_wall_seconds": [round(v, 4) for v in c.wall]
                     for name, c in series.items()}  # fmt: skip
    # Chainguard: the series with and without the key file, the warm-ups and the project's
    # Python each exchange once per call.
    expected = 3 * count + 2
    for name in (*kubeletplugin.PROVIDERS, "chainguard_key_cache"):
        calls = series[name]
        provider = name.split("_")[0]
        wall = distribution(calls.wall)
        cpu = distribution(calls.cpu)
        rss = distribution(calls.rss_mib)
        p99 = wall.get("p99", float("inf"))
        ok = calls.failures == 0 and answered(calls, registries[provider])
        if provider == "chainguard":
            ok = ok and after - before == expected
        result.targets.append(
            Target(
                name=f"cold call p99, {name.replace('_', ' ')}",
                requirement=f"p99 <= {TARGET_COLD_P99_S:g} s wall, every call answered",
                measured=f"p50 {wall.get('p50')} / p99 {p99} s, CPU p50 {cpu.get('p50')} s, "
                f"RSS p50 {rss.get('p50')} MiB, {calls.failures} failed of {count}",
                passed=ok and p99 <= TARGET_COLD_P99_S,
            )
        )
        if not answered(calls, registries[provider]):
            result.notes.append(
                f"{name}: no answer for {registries[provider]}: "
                + calls.last_stderr.decode(errors="replace")[-300:]
            )
    if "official_ecr" in series:
        ours, theirs = series["ecr"], series["official_ecr"]
        comparison = {}
        for what in ("wall", "cpu", "rss_mib"):
            mine, other = distribution(getattr(ours, what)), distribution(getattr(theirs, what))
            for q in ("p50", "p99"):
                comparison[f"{what}_{q}_ratio"] = _ratio(mine.get(q), other.get(q))
        result.figures["ecr_ours_over_official"] = comparison
        if theirs.failures:
            result.notes.append(
                "the official ECR plugin failed: "
                + theirs.last_stderr.decode(errors="replace")[-300:]
            )
    if after - before != expected:
        result.notes.append(f"{after - before} Chainguard exchanges for {expected} calls.")
    result.notes.append(
        f"Load average (1, 5, 15 min) {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f} before, {load_after[0]:.2f} {load_after[1]:.2f} "
        f"{load_after[2]:.2f} after, on {os.cpu_count()} CPUs: wall times on a busy machine are "
        "inflated, CPU times much less."
    )
    return result
