"""Scale: the controller as the number of managed Secrets grows (by default N = 1,000, 5,000
and 20,000 over M = 10 identities).

One stack for all sizes: the Secrets of each size are those of the size before plus new ones
(``pull-secret`` in namespaces ``scale-<i>``, identities round robin). At each N the cold
fill's three rounds run over all N Secrets (``cold_fill.measure``: the bare client, a fresh
controller filling them from empty, the bare client again; the ratio is against the mean of
the two baseline rounds). The controller that did the fill is left running: after
``scale_settle`` seconds its VmRSS and VmHWM are read, then its API requests (in the audit
log, as the footprint scenario counts them) and its CPU over a quiet window.

Across the sizes: the least-squares slope of memory against N (bytes per managed Secret), and
the marginal bytes per Secret between successive sizes, which would show a cost that grows
faster than N.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import lightkube

from bench import cold_fill, lab
from bench.observe import SecretWatch
from bench.results import ScenarioResult, Target, slope
from bench.sizes import Sizes
from devstack.controller import ControllerProcess
from devstack.stack import LocalStack

TITLE = "Scale"
MIB = 2**20
#: Steady-state requests per minute may differ by this factor between the smallest and the
#: largest N: a watch, its restarts and the Lease do not depend on N.
REQUEST_RATE_TOLERANCE = 1.5


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="scale", title=TITLE)
    levels = sorted(set(sizes.scale_secrets))
    m = sizes.identities
    rows: list[dict[str, Any]] = []
    fills: dict[str, dict[str, Any]] = {}
    async with stacks.stack() as stack:
        identities = lab.create_identities(stack, m, prefix="scale")
        namespaces: list[str] = []
        async with lab.admin_client(stack) as client:
            for n in levels:
                fill = await _level(stack, client, namespaces, identities, n, sizes)
                fills[str(n)] = fill.figures
                rows.append(_row(fill))
                result.notes += [f"N={n}: {note}" for note in fill.notes]
    _summarise(result, rows, fills, sizes)
    return result


async def _level(
    stack: LocalStack,
    client: lightkube.AsyncClient,
    namespaces: list[str],
    identities: list[str],
    n: int,
    sizes: Sizes,
) -> ScenarioResult:
    """Grow the managed Secrets to `n` (`namespaces` grows with them), fill them, read."""
    have = len(namespaces)
    new = [f"scale-{i:05d}" for i in range(have, n)]
    started = time.monotonic()
    await lab.create_namespaces(client, new)
    # The round robin goes on where the previous size stopped.
    shift = have % len(identities)
    await lab.create_pull_secrets(client, new, identities[shift:] + identities[:shift])
    namespaces.extend(new)
    setup_seconds = time.monotonic() - started
    lab.progress(f"N={n}: {len(new)} namespaces and Secrets created in {setup_seconds:.1f} s")

    fill = ScenarioResult(name=f"scale_{n}", title=f"{TITLE}, N={n}")
    fill.figures["setup_seconds"] = round(setup_seconds, 2)

    async def while_filled(process: ControllerProcess) -> None:
        await asyncio.sleep(sizes.scale_settle)
        memory = lab.read_process(process.process.pid)
        steady = await lab.steady_state(stack, process, window=sizes.scale_request_window)
        fill.figures.update(
            rss_after_fill_bytes=memory.rss_bytes,
            hwm_after_fill_bytes=memory.hwm_bytes,
            **steady.figures(),
        )
        lab.progress(
            f"N={n}: RSS {memory.rss_bytes / MIB:.1f} MiB (peak {memory.hwm_bytes / MIB:.1f}); "
            f"steady state {steady.describe()}"
        )

    async with SecretWatch(stack, namespaces=namespaces, keep_history=False) as watch:
        await cold_fill.measure(
            stack, client, watch, namespaces, identities, sizes, fill, while_filled=while_filled
        )
    return fill


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


def _row(fill: ScenarioResult) -> dict[str, Any]:
    """The summary's line for one N (None where the controller never finished its fill)."""
    f = fill.figures
    return {
        "secrets": f["secrets"],
        "baseline_s": f["baseline_seconds"],
        "controller_s": f["controller_fill_seconds"],
        "ratio": f["ratio"],
        "ratio_excl_startup": f["ratio_excluding_startup"],
        "exchanges": f["exchanges"],
        "valid_tokens": f["valid_tokens"],
        "rss_mib": _mib(f.get("rss_after_fill_bytes")),
        "peak_rss_mib": _mib(f.get("hwm_after_fill_bytes")),
        "requests_per_min": f.get("steady_requests_per_minute"),
        "cpu_s_per_min": f.get("steady_cpu_seconds_per_minute"),
        "cpu_ms_per_secret": f["cpu_ms_per_secret_controller"],
        "cpu_cost_ratio": f["cpu_cost_ratio"],
        "load_average": f["load_average"],
    }


def _summarise(
    result: ScenarioResult,
    rows: list[dict[str, Any]],
    fills: dict[str, dict[str, Any]],
    sizes: Sizes,
) -> None:
    m = sizes.identities
    figures = result.figures
    measured = [(f["secrets"], f) for f in fills.values() if "rss_after_fill_bytes" in f]
    ns = [float(n) for n, _ in measured]
    rss = [float(f["rss_after_fill_bytes"]) for _, f in measured]
    hwm = [float(f["hwm_after_fill_bytes"]) for _, f in measured]
    marginal = [round((rss[i] - rss[i - 1]) / (ns[i] - ns[i - 1])) for i in range(1, len(measured))]
    figures.update(
        sizes=[r["secrets"] for r in rows],
        identities=m,
        workers=sizes.workers,
        settle_seconds=sizes.scale_settle,
        steady_window_seconds=sizes.scale_request_window,
        rss_slope_bytes_per_secret=round(slope(ns, rss)) if len(ns) > 1 else None,
        hwm_slope_bytes_per_secret=round(slope(ns, hwm)) if len(ns) > 1 else None,
        rss_marginal_bytes_per_secret=marginal,
        levels=rows,
        fills=fills,
    )
    result.table = rows
    result.series = {
        "secrets": [r["secrets"] for r in rows],
        "baseline_seconds": [r["baseline_s"] for r in rows],
        "controller_seconds": [r["controller_s"] for r in rows],
        "ratio": [r["ratio"] for r in rows],
        "rss_mib": [r["rss_mib"] for r in rows],
        "peak_rss_mib": [r["peak_rss_mib"] for r in rows],
        "requests_per_minute": [r["requests_per_min"] for r in rows],
        "cpu_seconds_per_minute": [r["cpu_s_per_min"] for r in rows],
    }
    if not rows:
        return
    at = " / ".join(str(r["secrets"]) for r in rows)
    complete = all(f["complete"] for f in fills.values())
    rates = [r["requests_per_min"] for r in rows if r["requests_per_min"] is not None]
    result.targets = [
        Target(
            name="cold fill vs baseline at every N",
            requirement="fill time <= 1.5 x baseline",
            measured=" / ".join(f"{r['ratio']:.2f}x" for r in rows) + f" at N = {at}",
            passed=complete and all(r["ratio"] <= 1.5 for r in rows),
        ),
        Target(
            name="exchanges at every N",
            requirement=f"exchanges == M ({m})",
            measured=" / ".join(str(r["exchanges"]) for r in rows) + f" at N = {at}",
            passed=all(r["exchanges"] == m for r in rows),
        ),
        Target(
            name="tokens valid at every N",
            requirement="every Secret holds a valid token",
            measured=" / ".join(str(r["valid_tokens"]) for r in rows) + f" valid at N = {at}",
            passed=all(r["valid_tokens"] == r["secrets"] for r in rows),
        ),
        Target(
            name="steady API requests vs N",
            requirement=(
                f"requests/min at the largest N <= {REQUEST_RATE_TOLERANCE}x that at the smallest"
            ),
            measured=" / ".join(f"{v:.0f}" for v in rates) + f" per minute at N = {at}",
            passed=len(rates) == len(rows)
            and rates[-1] <= REQUEST_RATE_TOLERANCE * max(rates[0], 1.0),
        ),
    ]
    if len(ns) > 1:
        result.notes.insert(
            0,
            f"Memory after the fill: {figures['rss_slope_bytes_per_secret']} B per managed "
            f"Secret (RSS slope; peak {figures['hwm_slope_bytes_per_secret']} B); between "
            "successive sizes " + ", ".join(f"{b} B" for b in marginal) + " per Secret added.",
        )
