"""Steady latency: annotated Secrets created at a steady rate while the controller runs.

Each Secret is created (already annotated, empty) in its own namespace by the admin client;
its latency runs from the moment the create call returns to the moment the admin watch
(``fieldSelector=metadata.name=pull-secret``) delivers the MODIFIED event that carries the
token. The first Secret of each identity also pays for that identity's token exchange; the
figures are given with and without those.
"""

from __future__ import annotations

import asyncio
import time

from bench import lab
from bench.observe import SecretWatch
from bench.results import ScenarioResult, Target, distribution
from bench.sizes import Sizes

TITLE = "Steady latency"
TARGET_P99_MS = 250.0


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="steady_latency", title=TITLE)
    n, rate, m = sizes.steady_secrets, sizes.steady_rate, sizes.identities
    async with stacks.stack() as stack:
        identities = lab.create_identities(stack, m, prefix="steady")
        namespaces = [f"steady-{i:04d}" for i in range(n)]
        async with lab.admin_client(stack) as client:
            await lab.create_namespaces(client, namespaces)
            async with SecretWatch(stack, namespaces=namespaces, keep_history=False) as watch:
                goal = watch.goal(namespaces, lambda seen: seen.token is not None)
                process = lab.controller(stack, name="steady", workers=sizes.workers)
                process.start(wait_ready=True)
                try:
                    await lab.wait_leading(process)
                    lab.progress("controller leading; creating Secrets")
                    created: dict[str, float] = {}
                    sent: dict[str, float] = {}

                    async def create(index: int, namespace: str) -> None:
                        secret = lab.pull_secret(namespace, lab.identity_for(index, identities))
                        sent[namespace] = time.monotonic()
                        await client.create(secret)
                        created[namespace] = time.monotonic()

                    start = time.monotonic()
                    async with asyncio.TaskGroup() as group:
                        for index, namespace in enumerate(namespaces):
                            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
                            group.create_task(create(index, namespace))
                    created_in = time.monotonic() - start
                    complete = await goal.wait(30.0)
                    reading = lab.read_process(process.process.pid)
                    counts = lab.exchange_counts(stack)
                finally:
                    stopped = await lab.stop_controller(stack, process)

    latencies = {
        namespace: max(0.0, (seen.mono - created[namespace]) * 1000)
        for namespace, seen in goal.reached.items()
    }
    from_sent = [(seen.mono - sent[namespace]) * 1000 for namespace, seen in goal.reached.items()]
    first_of_identity = set(namespaces[:m])
    all_ms = [latencies[ns] for ns in namespaces if ns in latencies]
    cached_ms = [latencies[ns] for ns in namespaces[m:] if ns in latencies]
    first_ms = [latencies[ns] for ns in first_of_identity if ns in latencies]
    dist = distribution(all_ms, digits=1)
    exchanges = lab.total_exchanges(counts)
    result.figures.update(
        secrets=n,
        rate_per_second=rate,
        achieved_rate_per_second=round(n / created_in, 2) if created_in else None,
        workers=sizes.workers,
        filled=len(latencies),
        complete=complete,
        latency_ms=dist,
        latency_ms_without_first_of_identity=distribution(cached_ms, digits=1),
        latency_ms_first_of_identity=distribution(first_ms, digits=1),
        latency_ms_from_create_call_start=distribution(from_sent, digits=1),
        exchanges=exchanges,
        controller_cpu_seconds=round(reading.cpu_seconds, 2),
        controller_peak_rss_mib=round(reading.hwm_bytes / 2**20, 1),
        unclean_stops=lab.unclean([stopped]),
    )
    result.series = {"latencies_ms": [round(v, 2) for v in all_ms]}
    p99 = dist.get("p99", float("inf"))
    result.targets = [
        Target(
            name="create-to-filled p99",
            requirement=f"p99 < {TARGET_P99_MS:.0f} ms",
            measured=(
                f"p50 {dist.get('p50')} / p90 {dist.get('p90')} / p99 {p99} / "
                f"max {dist.get('max')} ms ({len(all_ms)} Secrets at {rate:g}/s)"
            ),
            passed=complete and p99 < TARGET_P99_MS,
        )
    ]
    if exchanges != m:
        result.notes.append(f"{exchanges} exchanges for {m} identities.")
    return result
