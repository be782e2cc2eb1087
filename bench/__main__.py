"""``python -m bench [--quick] [--out DIR] [--only NAME ...] [--strict]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import (
    cold_fill,
    credential_provider,
    ecr_fill,
    ecr_wave,
    footprint,
    mixed_fill,
    mixed_wave,
    outage_wave,
    refresh_wave,
    report,
    scale,
    steady_latency,
)
from bench.lab import Stacks
from bench.results import ScenarioResult
from bench.sizes import FULL, QUICK, Sizes
from devstack import shutdown

Scenario = Callable[[Sizes, Stacks], Awaitable[ScenarioResult]]

# NB: footprint comes last: on a shared stack, its unrelated Secrets stay behind.
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "cold_fill": (cold_fill.TITLE, cold_fill.run),
    "steady_latency": (steady_latency.TITLE, steady_latency.run),
    "refresh_wave": (refresh_wave.TITLE, refresh_wave.run),
    "outage_wave": (outage_wave.TITLE, outage_wave.run),
    "ecr_fill": (ecr_fill.TITLE, ecr_fill.run),
    "ecr_wave": (ecr_wave.TITLE, ecr_wave.run),
    "mixed_fill": (mixed_fill.TITLE, mixed_fill.run),
    "mixed_wave": (mixed_wave.TITLE, mixed_wave.run),
    "scale": (scale.TITLE, scale.run),
    "credential_provider": (credential_provider.TITLE, credential_provider.run),
    "footprint": (footprint.TITLE, footprint.run),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the controller on the local stack; figures, not assertions.",
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes (a few minutes)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="directory for results.json, summary.md and the plots (default: bench-results)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"run only these scenarios ({', '.join(SCENARIOS)})",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    return parser.parse_args(argv)


async def run_all(names: list[str], sizes: Sizes) -> list[ScenarioResult]:
    results = []
    stacks = Stacks(shared=sizes.shared_stack)
    try:
        for name in names:
            title, scenario = SCENARIOS[name]
            print(f"== {title} ({sizes.mode})", flush=True)
            started = time.monotonic()
            try:
                result = await scenario(sizes, stacks)
            except Exception as e:
                traceback.print_exc()
                result = ScenarioResult(name=name, title=title, error=f"{type(e).__name__}: {e}")
            result.seconds = round(time.monotonic() - started, 1)
            unclean = result.figures.get("unclean_stops")
            if unclean:
                result.notes.append(
                    f"{len(unclean)} controller stop(s) did not finish their own shutdown (killed "
                    "after the grace period, Lease not released; the Lease was deleted so the "
                    f"next controller could lead): {', '.join(s['name'] for s in unclean)}."
                )
            print(report.scenario_text(result), flush=True)
            results.append(result)
    finally:
        stacks.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    names = [name for name in SCENARIOS if name in (args.only or SCENARIOS)]
    # Ctrl-C, SIGTERM, SIGHUP and a closed output stop the run; the stacks' stop() runs to its end.
    shutdown.install()
    started = time.monotonic()
    try:
        results = asyncio.run(run_all(names, sizes))
    except KeyboardInterrupt as stop:
        print(f"\nstopped ({stop or 'Ctrl-C'}); every stack it started is gone", flush=True)
        return 130
    elapsed = time.monotonic() - started
    written = report.write(args.out, results, sizes=sizes, seconds=elapsed)
    print(f"\n{elapsed:.0f} s in all; wrote {', '.join(str(p) for p in written)}")
    if any(r.error for r in results):
        return 2
    if args.strict and any(not t.passed for r in results for t in r.targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
