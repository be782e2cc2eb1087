"""Writing the results: results.json (every figure), summary.md (targets, PASS or MISSED) and
PNG plots (fill curves, latency histogram, memory against unrelated Secrets, refresh waves,
fill time, memory and requests against managed Secrets)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.results import ScenarioResult
from bench.sizes import Sizes

MIB = 2**20


def scenario_text(result: ScenarioResult) -> str:
    """The scenario's targets and main figures, for the terminal."""
    lines = []
    if result.error:
        lines.append(f"   ERROR: {result.error}")
    for target in result.targets:
        lines.append(
            f"   {target.verdict}  {target.name}: {target.measured}  [{target.requirement}]"
        )
    for key, value in result.figures.items():
        if not isinstance(value, dict | list):
            lines.append(f"     {key} = {value}")
    lines.extend(f"   note: {note}" for note in result.notes)
    lines.append(f"   ({result.seconds:.0f} s)")
    return "\n".join(lines)


def write(
    out: Path, results: Sequence[ScenarioResult], *, sizes: Sizes, seconds: float
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "mode": sizes.mode,
        "sizes": dataclasses.asdict(sizes),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - seconds)),
        "seconds": round(seconds, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "scenarios": {
            r.name: {
                "title": r.title,
                "seconds": r.seconds,
                "error": r.error,
                "targets": [{**dataclasses.asdict(t), "verdict": t.verdict} for t in r.targets],
                "figures": r.figures,
                "notes": r.notes,
                "series": r.series,
            }
            for r in results
        },
    }
    written = [out / "results.json", out / "summary.md"]
    for r in results:
        for name, text in r.logs.items():
            (out / "logs").mkdir(exist_ok=True)
            written.append(out / "logs" / f"{r.name}-{name}.log")
            written[-1].write_text(text)
    written[0].write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    plots = _plots(out, {r.name: r for r in results})
    written[1].write_text(_summary(results, sizes=sizes, seconds=seconds, plots=plots))
    return written + plots


def _jsonable(value: object) -> Any:
    if isinstance(value, set | tuple):
        return list(value)
    return str(value)


# -- summary.md -----------------------------------------------------------------------------


def _summary(
    results: Sequence[ScenarioResult], *, sizes: Sizes, seconds: float, plots: list[Path]
) -> str:
    targets = [t for r in results for t in r.targets]
    passed = sum(t.passed for t in targets)
    stacks = "one stack shared by the scenarios" if sizes.shared_stack else "a fresh stack each"
    lines = [
        f"# Benchmark summary ({sizes.mode} mode)",
        "",
        f"{len(results)} scenarios in {seconds:.0f} s on {os.cpu_count()} CPUs ({stacks}); "
        f"{passed} of {len(targets)} targets met. Every comparing figure is a ratio against a "
        "baseline measured in the same run; all figures are in results.json.",
        "",
        "| scenario | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.title} | (did not finish) | {_cell(r.error)} | ERROR |")
        for t in r.targets:
            lines.append(
                f"| {r.title} | {_cell(t.requirement)} | {_cell(t.measured)} | {t.verdict} |"
            )
    for r in results:
        lines += ["", f"## {r.title}", ""]
        if r.error:
            lines.append(f"Did not finish: {r.error}")
        lines += _table(r.table)
        for key, value in r.figures.items():
            if not isinstance(value, dict | list):
                lines.append(f"- {key}: {value}")
        lines += [f"- {key}: `{json.dumps(value)}`" for key, value in _small_dicts(r.figures)]
        if r.notes:
            lines.append("")
            lines += [f"{note}" for note in r.notes]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    """`rows` as a Markdown table (the first row's keys are the header), then a blank line."""
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = ("-" if row.get(k) is None else _cell(f"{row[k]}") for k in keys)
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _small_dicts(figures: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in figures.items() if isinstance(v, dict) and len(json.dumps(v)) <= 400]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- plots ----------------------------------------------------------------------------------


def _plots(out: Path, results: dict[str, ScenarioResult]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        print("matplotlib is not installed: no plots")
        return []
    written: list[Path] = []
    # name: (file, maker, panels); a maker of several panels gets an array of axes.
    makers: dict[str, tuple[str, Callable[[Any, ScenarioResult], None], int]] = {
        "cold_fill": ("fill-curve.png", _fill_curve, 1),
        "ecr_fill": ("ecr-fill-curve.png", _fill_curve, 1),
        "mixed_fill": ("mixed-fill-curve.png", _fill_curve, 1),
        "steady_latency": ("latency-histogram.png", _latency_histogram, 1),
        "footprint": ("rss-vs-unrelated.png", _rss_vs_unrelated, 1),
        "refresh_wave": ("refresh-wave.png", _refresh_wave, 1),
        "ecr_wave": ("ecr-refresh-wave.png", _refresh_wave, 1),
        "mixed_wave": ("mixed-refresh-wave.png", _refresh_wave, 1),
        "scale": ("scale.png", _scale, 3),
    }
    for name, (filename, maker, panels) in makers.items():
        result = results.get(name)
        if result is None or not result.series:
            continue
        figure, axes = pyplot.subplots(
            1, panels, figsize=(8 if panels == 1 else 5.5 * panels, 4.5), layout="constrained"
        )
        maker(axes, result)
        path = out / filename
        figure.savefig(path, dpi=110)
        pyplot.close(figure)
        written.append(path)
    return written


def _wrapped(title: str, width: int = 90) -> str:
    """A one-panel plot's title, on two lines when it is too long for one."""
    return title if len(title) <= width else title.replace(": ", ":\n", 1)


def _fill_curve(axes: Any, result: ScenarioResult) -> None:
    for key, label in (
        ("baseline_curve", "baseline (bare client), before"),
        ("baseline_after_curve", "baseline (bare client), after"),
        ("controller_curve", "controller"),
    ):
        times = result.series.get(key) or []
        axes.step([0.0, *times], range(len(times) + 1), where="post", label=label)
    n = result.figures.get("secrets")
    identities = result.figures.get("identities")
    if isinstance(identities, dict):  # several providers: identities of each
        identities = ", ".join(f"{v} {k}" for k, v in identities.items())
    axes.set_title(
        _wrapped(
            f"{result.title}: {n} Secrets, {identities} identities, "
            + f"{result.figures.get('workers')} workers (ratio {result.figures.get('ratio')}x)"
        )
    )
    axes.set_xlabel("seconds since start (controller: process launch)")
    axes.set_ylabel("Secrets holding every entry")
    axes.grid(alpha=0.3)
    axes.legend()


def _latency_histogram(axes: Any, result: ScenarioResult) -> None:
    latencies = result.series.get("latencies_ms") or []
    axes.hist(latencies, bins=40, color="tab:blue")
    dist = result.figures.get("latency_ms") or {}
    for key, style in (("p50", "--"), ("p99", ":")):
        if key in dist:
            axes.axvline(dist[key], color="black", linestyle=style, label=f"{key} {dist[key]} ms")
    axes.axvline(250, color="tab:red", label="target p99 < 250 ms")
    axes.set_title(
        f"Create-to-filled latency, {len(latencies)} Secrets at "
        f"{result.figures.get('rate_per_second')}/s"
    )
    axes.set_xlabel("milliseconds from the create call's return to the filled event")
    axes.set_ylabel("Secrets")
    axes.legend()


def _rss_vs_unrelated(axes: Any, result: ScenarioResult) -> None:
    series = result.series
    ks = series.get("unrelated") or []
    axes.plot(ks, [v / MIB for v in series.get("rss_bytes", [])], "o-", label="VmRSS")
    axes.plot(ks, [v / MIB for v in series.get("hwm_bytes", [])], "s--", label="VmHWM (peak)")
    axes.set_title(
        f"Controller memory with {result.figures.get('managed')} managed Secrets "
        f"(slope {result.figures.get('rss_slope_bytes_per_unrelated_secret')} B per Secret)"
    )
    axes.set_xlabel("unrelated Secrets in the cluster (about 4 KB each)")
    axes.set_ylabel("MiB")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()


def _refresh_wave(axes: Any, result: ScenarioResult) -> None:
    credential = {"ecr": "ECR password", None: "token"}.get(
        result.figures.get("provider"), "credential"
    )
    if "by_provider" in result.figures:
        credential = "credential"
    writes = result.series.get("write_seconds") or []
    if writes:
        width = 1.0
        bins = int(max(writes) / width) + 1
        axes.hist(writes, bins=bins, range=(0, bins * width),
                  label=f"{credential} writes per second")  # fmt: skip
    exchanges = result.series.get("exchange_seconds") or []
    axes.vlines(exchanges, 0, axes.get_ylim()[1] or 1, colors="tab:orange", alpha=0.6,
                label="exchanges")  # fmt: skip
    axes.set_title(
        _wrapped(
            f"{result.title}: {result.figures.get('secrets')} Secrets, {credential} lifetime "
            f"{result.figures.get('token_lifetime')} s, "
            f"{result.figures.get('expired_observations')} expired observations"
        )
    )
    axes.set_xlabel("seconds since the controller's launch")
    axes.set_ylabel("Secrets written")
    axes.legend()


def _scale(axes: Any, result: ScenarioResult) -> None:
    fill, memory, requests = axes
    series, figures = result.series, result.figures
    ns = series.get("secrets") or []
    fill.plot(ns, series.get("baseline_seconds", []), "o--", label="baseline (bare client)")
    fill.plot(ns, series.get("controller_seconds", []), "o-", label="controller")
    for n, seconds, value in zip(
        ns, series.get("controller_seconds", []), series.get("ratio", []), strict=False
    ):
        fill.annotate(f"{value:.2f}x", (n, seconds), textcoords="offset points", xytext=(4, 6))
    fill.set_title(f"Cold fill, {figures.get('identities')} identities, "
                   f"{figures.get('workers')} workers")  # fmt: skip
    fill.set_xlabel("managed Secrets")
    fill.set_ylabel("seconds until every Secret holds a token")
    fill.legend()

    def known(key: str) -> tuple[list[Any], list[Any]]:
        pairs = [(n, v) for n, v in zip(ns, series.get(key, []), strict=False) if v is not None]
        return [n for n, _ in pairs], [v for _, v in pairs]

    memory.plot(*known("rss_mib"), "o-", label="VmRSS after the fill")
    memory.plot(*known("peak_rss_mib"), "s--", label="VmHWM (peak)")
    memory.set_title(
        f"Controller memory ({figures.get('rss_slope_bytes_per_secret')} B per Secret)"
    )
    memory.set_xlabel("managed Secrets")
    memory.set_ylabel("MiB")
    memory.set_ylim(bottom=0)
    memory.legend()

    requests.plot(*known("requests_per_minute"), "o-", color="tab:green")
    requests.set_title(
        f"Steady state after the fill ({figures.get('steady_window_seconds'):g} s window)"
    )
    requests.set_xlabel("managed Secrets")
    requests.set_ylabel("API requests per minute", color="tab:green")
    requests.set_ylim(bottom=0)
    cpu = requests.twinx()
    cpu.plot(*known("cpu_seconds_per_minute"), "s--", color="tab:purple")
    cpu.set_ylabel("controller CPU seconds per minute", color="tab:purple")
    cpu.set_ylim(bottom=0)
    for panel in axes:
        panel.grid(alpha=0.3)
