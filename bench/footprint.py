"""Footprint: the controller's memory and CPU with managed Secrets, as the cluster fills up
with unrelated Secrets; and its API requests per minute in steady state.

A first controller fills the managed Secrets (its CPU and peak memory are reported too). Then
for each level K of unrelated Secrets (``other-<i>``, about 4 KB each, spread over the
managed Secrets' namespaces) a fresh controller starts, lists its Secrets, settles, and its
VmRSS and VmHWM are read: the start-up path, where a controller that listed every Secret
would pay for all of them. Each of these controllers keeps running while the Secrets of the
next level are created, and is read again afterwards: the watch path. The slope of memory
against K is the cost of one unrelated Secret, which should be nil, since the controller
lists and watches only its own names.

The request rate is counted in the API server's audit log (secrets, events and leases are
recorded) over a quiet window at the end, with the largest K.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bench import lab
from bench.observe import SecretWatch
from bench.results import ScenarioResult, Target, slope
from bench.sizes import Sizes
from devstack.controller import ControllerProcess
from devstack.stack import LocalStack

TITLE = "Footprint"
MIB = 2**20
#: Memory may grow by at most this share of what keeping the unrelated Secrets would cost.
SLOPE_TOLERANCE = 0.05


def unrelated_secrets(
    namespaces: Sequence[str], *, start: int, stop: int, size: int
) -> Iterator[tuple[str, bytes]]:
    """Secrets other-<start>..other-<stop-1> of about `size` bytes each (base64-encoded),
    spread over `namespaces`, as (path, body) for `lab.bulk_create`."""
    blob = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    for index in range(start, stop):
        namespace = namespaces[index % len(namespaces)]
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"other-{index:06d}", "namespace": namespace},
            "type": "Opaque",
            "data": {"blob": blob},
        }
        yield f"/api/v1/namespaces/{namespace}/secrets", json.dumps(body).encode()


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="footprint", title=TITLE)
    managed, m = sizes.footprint_managed, sizes.identities
    levels = sorted(sizes.footprint_unrelated)
    figures = result.figures
    figures.update(
        managed=managed,
        identities=m,
        workers=sizes.workers,
        unrelated_secret_bytes=sizes.footprint_unrelated_bytes,
        settle_seconds=sizes.footprint_settle,
    )
    async with stacks.stack() as stack:
        identities = lab.create_identities(stack, m, prefix="footprint")
        namespaces = [f"fp-{i:05d}" for i in range(managed)]
        async with lab.admin_client(stack) as client:
            await lab.create_namespaces(client, namespaces)
            await lab.create_pull_secrets(client, namespaces, identities)
            async with SecretWatch(stack, namespaces=namespaces, keep_history=False) as watch:
                goal = watch.goal(namespaces, lambda seen: seen.token is not None)
                filler = lab.controller(stack, name="footprint-fill", workers=sizes.workers)
                start = time.monotonic()
                filler.start(wait_ready=False)
                try:
                    if not await goal.wait(max(120.0, managed * 0.25)):
                        raise RuntimeError(f"{len(goal.pending)} Secrets were never filled")
                    fill_seconds = time.monotonic() - start
                    fill = lab.read_process(filler.process.pid)
                    lab.progress(f"{managed} managed Secrets filled in {fill_seconds:.1f} s")
                finally:
                    stops = [await lab.stop_controller(stack, filler)]
        figures.update(
            fill_seconds=round(fill_seconds, 2),
            fill_cpu_seconds=round(fill.cpu_seconds, 2),
            fill_peak_rss_mib=round(fill.hwm_bytes / MIB, 1),
        )
        await _levels(
            stack, stops=stops, namespaces=namespaces, levels=levels, sizes=sizes, result=result
        )
    return result


async def _levels(
    stack: LocalStack,
    *,
    stops: list[lab.Stopped],
    namespaces: list[str],
    levels: list[int],
    sizes: Sizes,
    result: ScenarioResult,
) -> None:
    figures = result.figures
    rows: list[dict[str, Any]] = []
    created = 0
    running: ControllerProcess | None = None
    before: lab.ProcessReading | None = None
    try:
        for level in levels:
            if level > created:
                started = time.monotonic()
                secrets = unrelated_secrets(
                    namespaces, start=created, stop=level, size=sizes.footprint_unrelated_bytes
                )
                await asyncio.to_thread(lab.bulk_create, stack, secrets)
                seconds = time.monotonic() - started
                lab.progress(f"{level - created} unrelated Secrets created in {seconds:.1f} s")
                if running is not None and before is not None:
                    after = lab.read_process(running.process.pid)
                    rows[-1].update(
                        watch_path_rss_after_bytes=after.rss_bytes,
                        watch_path_rss_growth_bytes=after.rss_bytes - before.rss_bytes,
                        watch_path_cpu_seconds=round(after.cpu_seconds - before.cpu_seconds, 2),
                        watch_path_created=level - created,
                    )
                created = level
            if running is not None:
                stops.append(await lab.stop_controller(stack, running))
            running = lab.controller(stack, name=f"footprint-{level}", workers=sizes.workers)
            launched = time.monotonic()
            running.start(wait_ready=True)
            ready_seconds = time.monotonic() - launched
            await lab.wait_leading(running)
            leading_seconds = time.monotonic() - launched
            await asyncio.sleep(sizes.footprint_settle)
            before = lab.read_process(running.process.pid)
            rows.append(
                {
                    "unrelated": level,
                    "rss_bytes": before.rss_bytes,
                    "hwm_bytes": before.hwm_bytes,
                    "cpu_seconds": round(before.cpu_seconds, 2),
                    "ready_seconds": round(ready_seconds, 2),
                    "leading_seconds": round(leading_seconds, 2),
                }
            )
            lab.progress(
                f"K={level}: RSS {before.rss_bytes / MIB:.1f} MiB, "
                f"peak {before.hwm_bytes / MIB:.1f} MiB, CPU {before.cpu_seconds:.2f} s"
            )
        assert running is not None
        # -- steady state: the API requests of an idle controller ------------------------
        steady = await lab.steady_state(stack, running, window=sizes.footprint_request_window)
    finally:
        if running is not None:
            stops.append(await lab.stop_controller(stack, running))
    ks = [float(r["unrelated"]) for r in rows]
    rss_slope = slope(ks, [float(r["rss_bytes"]) for r in rows])
    hwm_slope = slope(ks, [float(r["hwm_bytes"]) for r in rows])
    tolerance = SLOPE_TOLERANCE * sizes.footprint_unrelated_bytes
    figures.update(
        levels=rows,
        watch_path_rss_growth_bytes=[r.get("watch_path_rss_growth_bytes") for r in rows[:-1]],
        rss_slope_bytes_per_unrelated_secret=round(rss_slope, 2),
        hwm_slope_bytes_per_unrelated_secret=round(hwm_slope, 2),
        rss_mib_by_unrelated={str(r["unrelated"]): round(r["rss_bytes"] / MIB, 1) for r in rows},
        hwm_mib_by_unrelated={str(r["unrelated"]): round(r["hwm_bytes"] / MIB, 1) for r in rows},
        **steady.figures(),
        unclean_stops=lab.unclean(stops),
    )
    result.series = {
        "unrelated": [r["unrelated"] for r in rows],
        "rss_bytes": [r["rss_bytes"] for r in rows],
        "hwm_bytes": [r["hwm_bytes"] for r in rows],
    }
    worst = max(abs(rss_slope), abs(hwm_slope))
    result.targets = [
        Target(
            name="memory vs unrelated Secrets",
            requirement=(
                f"slope ~0 (|slope| <= {tolerance:.0f} B per unrelated Secret, "
                f"{SLOPE_TOLERANCE:.0%} of its size)"
            ),
            measured=(
                f"RSS {rss_slope:.1f} B/Secret, peak {hwm_slope:.1f} B/Secret; RSS "
                + ", ".join(f"{r['rss_bytes'] / MIB:.1f}" for r in rows)
                + f" MiB at K = {', '.join(str(r['unrelated']) for r in rows)}"
            ),
            passed=worst <= tolerance,
        )
    ]
    watched = [r for r in rows if "watch_path_created" in r]
    if watched:
        result.notes.append(
            "Watch path: while a running controller saw "
            + ", ".join(f"{r['watch_path_created']}" for r in watched)
            + " unrelated Secrets created, its RSS changed by "
            + ", ".join(f"{r['watch_path_rss_growth_bytes'] / 1024:+.0f} KiB" for r in watched)
            + "."
        )
    result.notes.append(f"Steady state: {steady.describe()}.")
