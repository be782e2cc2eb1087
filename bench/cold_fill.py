"""Cold fill: N empty annotated Secrets over M identities, and a controller that starts.

The baseline is a bare lightkube client writing a token minted beforehand into the same
Secrets, one get and one merge patch (with the same resourceVersion precondition, data and
annotations as the controller's write) per Secret, with as many concurrent writers as the
controller has workers. Both are timed the same way: from the start (the controller's process
launch, the baseline's first request) to the moment the admin watch has seen the last Secret
with its token.

Three rounds on the same Secrets: the baseline; the Secrets put back to their empty state and
the controller started; the baseline again, over the controller's tokens. The ratio is against
the mean of the two baseline rounds, which brackets any drift in the machine's load. CPU
seconds per Secret (writer, API server, etcd and the observer together) are reported too: on a
machine shared with other work they are steadier than wall time.

The rounds and their common figures are shared with the fill of other providers' entries
(`mixed_fill`): a `Baseline` says what the bare client writes, `baseline_round`,
`empty_secrets` and `controller_round` run the rounds, `fill_figures`, `fill_target` and
`fill_notes` report them.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import lightkube
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from bench import lab
from bench.observe import Observation, SecretWatch, Token, claims_of, verify_tokens
from bench.results import ScenarioResult, Target, distribution, ratio
from bench.sizes import Sizes
from devstack.controller import ControllerProcess
from devstack.stack import LocalStack
from pull_secret_updater.core.dockerconfig import DockerConfig, with_entries
from pull_secret_updater.core.status import status_annotations
from pull_secret_updater.providers.chainguard import spec as chainguard_spec

TITLE = "Cold fill"


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Baseline:
    """What the bare client writes into every Secret: the data and annotations the controller
    writes, with credentials minted beforehand; `minted` is what the watch reads once one
    Secret holds them."""

    data: dict[str, Any]
    annotations: dict[str, Any]
    minted: Token


def baseline_patch(
    entries: Mapping[str, tuple[str, str]], *, filled: Mapping[str, str], expires_at: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data and annotations the controller writes, with `entries` (registry: (username,
    password)) in them; `filled` maps each provider's filled-identity annotation to the
    identity. Built by the controller's own core functions, so the baseline writes exactly
    what it writes."""
    document = with_entries(DockerConfig({}), entries)
    data = {lab.DOCKER_CONFIG_KEY: base64.b64encode(document).decode()}
    annotations: dict[str, Any] = status_annotations(
        filled=filled, expires_at=expires_at, refreshed_at=time.time()
    )
    return data, annotations


def chainguard_baseline(stack: LocalStack, identity: str) -> Baseline:
    """A token of `identity` minted at the token service, in the Secret's cgr entry."""
    token = lab.exchange(stack, identity)
    minted = claims_of(token)
    assert minted is not None
    data, annotations = baseline_patch(
        {stack.registry.host: ("_token", token)},
        filled={chainguard_spec.FILLED_IDENTITY: identity},
        expires_at=minted.exp,
    )
    return Baseline(data, annotations, minted)


async def _baseline(
    client: lightkube.AsyncClient,
    namespaces: Sequence[str],
    *,
    data: dict[str, Any],
    annotations: dict[str, Any],
    workers: int,
) -> None:
    async def write(namespace: str) -> None:
        secret = await client.get(Secret, lab.MANAGED_NAME, namespace=namespace)
        assert secret.metadata is not None
        body = {
            "metadata": {
                "resourceVersion": secret.metadata.resourceVersion,
                "annotations": annotations,
            },
            "data": data,
        }
        await client.patch(
            Secret, lab.MANAGED_NAME, body, namespace=namespace, patch_type=PatchType.MERGE
        )

    await lab.bounded(namespaces, write, concurrency=workers)


def _curve(reached: dict[str, Observation], start: float) -> list[float]:
    return sorted(round(seen.mono - start, 4) for seen in reached.values())


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="cold_fill", title=TITLE)
    n, m = sizes.fill_secrets, sizes.identities
    async with stacks.stack() as stack:
        identities = lab.create_identities(stack, m, prefix="fill")
        namespaces = [f"fill-{i:05d}" for i in range(n)]
        async with lab.admin_client(stack) as client:
            started = time.monotonic()
            await lab.create_namespaces(client, namespaces)
            await lab.create_pull_secrets(client, namespaces, identities)
            result.figures["setup_seconds"] = round(time.monotonic() - started, 2)
            lab.progress(f"{n} namespaces and Secrets created")
            async with SecretWatch(stack, namespaces=namespaces, keep_history=False) as watch:
                await measure(stack, client, watch, namespaces, identities, sizes, result)
    return result


@dataclass(frozen=True)
class Round:
    """One round of the bare client."""

    seconds: float
    client_seconds: float
    curve: list[float]
    cpu: dict[str, float]


def _cost(cpu: dict[str, float], *, writer: str) -> float:
    """CPU seconds spent on a round by the writer, the API server, etcd and the observer."""
    names = {writer, "kube_apiserver", "etcd", "bench"}
    return sum(cpu.get(f"{name}_cpu_seconds", 0.0) for name in names)


#: Called with the controller once it has filled every Secret, before it is stopped.
WhileFilled = Callable[[ControllerProcess], Awaitable[None]]


def fill_timeout(n: int) -> float:
    """Seconds a round of `n` Secrets may take before it is given up."""
    return max(120.0, n * 0.25)


async def baseline_round(
    stack: LocalStack,
    client: lightkube.AsyncClient,
    watch: SecretWatch,
    namespaces: Sequence[str],
    baseline: Baseline,
    *,
    workers: int,
) -> Round:
    """The bare client writes `baseline` into every Secret; timed until the watch saw all."""
    minted = baseline.minted
    goal = watch.goal(
        namespaces, lambda seen: seen.token is not None and seen.token.jti == minted.jti
    )
    meter = lab.CpuMeter(stack).start()
    start = time.monotonic()
    await _baseline(
        client, namespaces, data=baseline.data, annotations=baseline.annotations, workers=workers
    )
    client_done = time.monotonic() - start
    if not await goal.wait(fill_timeout(len(namespaces))):
        raise RuntimeError(f"the baseline's writes were not all seen ({len(goal.pending)} left)")
    seconds = max(seen.mono for seen in goal.reached.values()) - start
    return Round(seconds, client_done, _curve(goal.reached, start), meter.stop())


async def empty_secrets(
    stack: LocalStack,
    client: lightkube.AsyncClient,
    watch: SecretWatch,
    namespaces: Sequence[str],
) -> None:
    """Back to the quickstart state, and every counter of the stack's token services zeroed."""
    await lab.empty_pull_secrets(client, namespaces)
    emptied = watch.goal(namespaces, lambda seen: seen.token is None)
    if not await emptied.wait(fill_timeout(len(namespaces))):
        raise RuntimeError("the Secrets could not be emptied again")
    lab.reset_counters(stack)


@dataclass(frozen=True)
class ControllerFill:
    """The controller's round: when each Secret was filled (seconds after the launch), the
    readings taken once all were (or the round gave up), and the stop."""

    complete: bool
    times: list[float]
    cpu: dict[str, float]
    reading: lab.ProcessReading
    #: The token service's exchanges by identity, read a second after the fill.
    counts: dict[str, dict[str, int]]
    #: What `read_calls` gave at the same time (the cloud stand-ins' calls).
    calls: dict[str, Any]
    requests: list[lab.AuditedRequest]
    stopped: lab.Stopped

    @property
    def seconds(self) -> float:
        return max(self.times)

    @property
    def first(self) -> float:
        return min(self.times)


async def controller_round(
    stack: LocalStack,
    watch: SecretWatch,
    namespaces: Sequence[str],
    process: ControllerProcess,
    *,
    baseline: Baseline,
    while_filled: WhileFilled | None = None,
    read_calls: Callable[[], dict[str, Any]] | None = None,
) -> ControllerFill:
    """Launch `process` on the emptied Secrets; timed until the watch saw every one with new,
    unexpired credentials. `while_filled` runs after the fill with the controller still
    running (its readings are not part of the fill's figures); `read_calls` reads other
    counters (the cloud stand-ins') when the token service's are read."""
    minted = baseline.minted
    timeout = fill_timeout(len(namespaces))

    def filled(seen: Observation) -> bool:
        return (
            seen.token is not None and seen.token.jti != minted.jti and seen.token.exp > seen.wall
        )

    goal = watch.goal(namespaces, filled)
    since_wall = time.time()
    meter = lab.CpuMeter(stack)
    start = time.monotonic()
    process.start(wait_ready=False)
    try:
        meter.pids["controller"] = process.process.pid
        meter.start()
        complete = await goal.wait(timeout)
        cpu = meter.stop()
        reading = lab.read_process(process.process.pid)
        await asyncio.sleep(1.0)  # an exchange still in flight would show up in the stats
        counts = lab.exchange_counts(stack)
        until_wall = time.time()
        calls = read_calls() if read_calls is not None else {}
        if while_filled is not None and complete:
            await while_filled(process)
    finally:
        stopped = await lab.stop_controller(stack, process)
    reached = goal.reached
    if not reached:
        raise RuntimeError(f"the controller filled no Secret within {timeout:.0f}s")
    times = [seen.mono - start for seen in reached.values()]
    lab.progress(f"controller: {len(reached)} Secrets filled in {max(times):.2f} s")
    await asyncio.sleep(1.0)  # the audit log is written in batches of up to a second
    requests = lab.audited_requests(
        stack.control_plane.audit_log, user=lab.CONTROLLER_USER, since=since_wall, until=until_wall
    )
    return ControllerFill(complete, times, cpu, reading, counts, calls, requests, stopped)


async def measure(
    stack: LocalStack,
    client: lightkube.AsyncClient,
    watch: SecretWatch,
    namespaces: list[str],
    identities: list[str],
    sizes: Sizes,
    result: ScenarioResult,
    *,
    while_filled: WhileFilled | None = None,
) -> None:
    """The three rounds (baseline, controller, baseline) over the existing annotated Secrets
    in `namespaces`; figures, targets, notes and curves go to `result`. `while_filled` runs
    after the fill with the controller still running (its readings are not part of the fill's
    figures)."""
    n, m, workers = len(namespaces), len(identities), sizes.workers
    result.figures.update(secrets=n, identities=m, workers=workers, load_average=lab.load_average())

    baseline = chainguard_baseline(stack, identities[0])
    before = await baseline_round(stack, client, watch, namespaces, baseline, workers=workers)
    lab.progress(f"baseline: {before.seconds:.2f} s")
    await empty_secrets(stack, client, watch, namespaces)
    process = lab.controller(stack, name="cold-fill", workers=workers)
    fill = await controller_round(
        stack, watch, namespaces, process, baseline=baseline, while_filled=while_filled
    )
    verification = await verify_tokens(stack, namespaces)
    # The baseline again, over the controller's tokens: brackets any drift in load.
    after = await baseline_round(stack, client, watch, namespaces, baseline, workers=workers)
    lab.progress(f"baseline again: {after.seconds:.2f} s")

    counts = fill.counts
    exchanges = lab.total_exchanges(counts)
    fill_figures(
        result,
        before=before,
        fill=fill,
        after=after,
        exchanged=dict(
            exchanges=exchanges,
            exchanges_by_identity={k: v["ok"] + v["error"] for k, v in counts.items()},
            exchange_errors=sum(c["error"] for c in counts.values()),
        ),
        checked=dict(valid_tokens=verification.valid, token_problems=verification.problems),
    )
    result.targets = [
        fill_target(before=before, fill=fill, after=after, secrets=n, workers=workers),
        Target(
            name="exchanges during cold fill",
            requirement=f"exchanges == M ({m})",
            measured=f"{exchanges} exchanges for {n} Secrets",
            passed=exchanges == m,
        ),
        Target(
            name="tokens valid after cold fill",
            requirement=f"all {n} Secrets hold a valid token",
            measured=f"{verification.valid} valid"
            + (f", problems: {verification.problems}" if verification.problems else ""),
            passed=verification.valid == n,
        ),
    ]
    result.notes += fill_notes(result, before=before, fill=fill, after=after)


def fill_figures(
    result: ScenarioResult,
    *,
    before: Round,
    fill: ControllerFill,
    after: Round,
    exchanged: Mapping[str, Any],
    checked: Mapping[str, Any],
) -> None:
    """The rounds' figures and curves into `result` (which holds `secrets` and `workers`);
    `exchanged` (what the token services counted) and `checked` (what the Secrets were found
    to hold) go in among them."""
    figures = result.figures
    n = figures["secrets"]
    fill_seconds, first_fill = fill.seconds, fill.first
    baseline_seconds = (before.seconds + after.seconds) / 2
    fill_ratio = ratio(fill_seconds, baseline_seconds)
    baseline_cost = (_cost(before.cpu, writer="bench") + _cost(after.cpu, writer="bench")) / 2
    controller_cost = _cost(fill.cpu, writer="controller")
    figures.update(
        baseline_seconds=round(baseline_seconds, 3),
        baseline_rounds_seconds=[round(before.seconds, 3), round(after.seconds, 3)],
        baseline_client_seconds=[round(before.client_seconds, 3), round(after.client_seconds, 3)],
        baseline_writes_per_second=round(n / baseline_seconds, 1),
        controller_fill_seconds=round(fill_seconds, 3),
        controller_first_fill_seconds=round(first_fill, 3),
        controller_writing_seconds=round(fill_seconds - first_fill, 3),
        controller_writes_per_second=round(len(fill.times) / max(fill_seconds, 1e-9), 1),
        ratio=round(fill_ratio, 3),
        ratio_excluding_startup=round(ratio(fill_seconds - first_fill, baseline_seconds), 3),
        filled=len(fill.times),
        complete=fill.complete,
        **exchanged,
        controller_cpu_seconds=round(fill.reading.cpu_seconds, 2),
        controller_peak_rss_mib=round(fill.reading.hwm_bytes / 2**20, 1),
        controller_requests=lab.requests_by_kind(fill.requests),
        controller_requests_per_secret=round(len(fill.requests) / n, 2),
        cpu_ms_per_secret_baseline=round(baseline_cost * 1000 / n, 2),
        cpu_ms_per_secret_controller=round(controller_cost * 1000 / n, 2),
        cpu_cost_ratio=round(ratio(controller_cost, baseline_cost), 3),
        cpu_baseline_before=before.cpu,
        cpu_controller=fill.cpu,
        cpu_baseline_after=after.cpu,
        **checked,
        fill_time_distribution=distribution(fill.times),
        unclean_stops=lab.unclean([fill.stopped]),
    )
    result.series = {
        "baseline_curve": before.curve,
        "baseline_after_curve": after.curve,
        "controller_curve": sorted(fill.times),
    }


def fill_target(
    *,
    before: Round,
    fill: ControllerFill,
    after: Round,
    secrets: int,
    workers: int,
    name: str = "cold fill vs baseline",
) -> Target:
    """The fill time against the mean of the baseline rounds."""
    fill_seconds = fill.seconds
    baseline_seconds = (before.seconds + after.seconds) / 2
    fill_ratio = ratio(fill_seconds, baseline_seconds)
    return Target(
        name=name,
        requirement="fill time <= 1.5 x baseline",
        measured=(
            f"{fill_seconds:.2f} s vs {baseline_seconds:.2f} s = {fill_ratio:.2f}x "
            f"(N={secrets}, {workers} workers; baseline rounds {before.seconds:.2f} and "
            f"{after.seconds:.2f} s)"
        ),
        passed=fill.complete and fill_ratio <= 1.5,
    )


def fill_notes(
    result: ScenarioResult, *, before: Round, fill: ControllerFill, after: Round
) -> list[str]:
    """The notes on the rounds, from `fill_figures`'s figures."""
    figures = result.figures
    return [
        f"The baseline ran before and after the controller ({before.seconds:.2f} s, "
        f"{after.seconds:.2f} s); the ratio is against their mean.",
        f"The controller's first write landed {fill.first:.2f} s after its launch (interpreter "
        "start, initial list, Lease); the ratio excluding that is "
        f"{figures['ratio_excluding_startup']:.2f}x.",
        f"CPU per Secret (writer + API server + etcd + observer): controller "
        f"{figures['cpu_ms_per_secret_controller']} ms, baseline "
        f"{figures['cpu_ms_per_secret_baseline']} ms ({figures['cpu_cost_ratio']}x); other load "
        f"on the machine used {fill.cpu['elsewhere_cpu_seconds']:.1f} CPU s during the fill.",
    ]
