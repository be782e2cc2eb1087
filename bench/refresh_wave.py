"""Refresh wave: N Secrets with short-lived tokens, followed over several lifetimes.

The token service issues tokens of a short lifetime; the controller runs with a refresh margin
of 15 s, an exchange timeout of 5 s and a minimum token lifetime of 10 s. After the cold fill
the Secrets are watched until the given number of lifetimes has passed since the
controller's launch. Reported:

- exchanges per window: every distinct token that reaches the Secrets of an identity is one
  refresh window of that identity; exchanges per window = M x exchanges / distinct tokens,
  which is M when no exchange is wasted;
- the spread of refresh times: when each Secret was refreshed, as seconds of validity its old
  token still had and as a share of that token's lifetime, and how long the burst of writes
  for one identity's new token took;
- expired observations: a watch event carrying an expired token, or a Secret whose current
  token (as the watch last told, checked every quarter second, and as a full list every few
  seconds) has expired. The target is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass

from bench import lab
from bench.observe import Observation, SecretWatch, Token, list_managed
from bench.results import ScenarioResult, Target, distribution
from bench.sizes import Sizes
from devstack.controller import ControllerProcess
from devstack.stack import LocalStack

TITLE = "Refresh wave"
CONTROLLER_ENV = {
    "PSU_REFRESH_MARGIN": "15",
    "PSU_EXCHANGE_TIMEOUT": "5",
    "PSU_MIN_TOKEN_LIFETIME": "10",
}
STATE_CHECK_INTERVAL = 0.25


@dataclass(frozen=True)
class Expired:
    how: str  # "event", "state" or "sweep"
    namespace: str
    jti: str
    late_seconds: float


class ExpiryChecks:
    """Every way of seeing an expired token, each counted once per (Secret, token)."""

    def __init__(self, watch: SecretWatch) -> None:
        self.watch = watch
        self.found: dict[tuple[str, str, str], Expired] = {}
        self.sweeps = 0
        self.state_checks = 0
        watch.listeners.append(self.on_event)

    def _record(self, how: str, namespace: str, token: Token, now: float) -> None:
        key = (how, namespace, token.jti)
        if key not in self.found:
            self.found[key] = Expired(how, namespace, token.jti, round(now - token.exp, 3))

    def on_event(self, seen: Observation) -> None:
        if seen.token is not None and seen.token.exp <= seen.wall:
            self._record("event", seen.namespace, seen.token, seen.wall)

    async def check_state(self) -> None:
        while True:
            now = time.time()
            for namespace, token in self.watch.current.items():
                if token is not None and token.exp <= now:
                    self._record("state", namespace, token, now)
            self.state_checks += 1
            await asyncio.sleep(STATE_CHECK_INTERVAL)

    async def sweep(self, interval: float) -> None:
        while True:
            items, _ = await list_managed(self.watch.http)
            now = time.time()
            for item in items:
                namespace = str((item.get("metadata") or {}).get("namespace", ""))
                if not self.watch.follows(namespace):
                    continue
                token = self.watch.read(item)
                if token is not None and token.exp <= now:
                    self._record("sweep", namespace, token, now)
            self.sweeps += 1
            await asyncio.sleep(interval)

    def figures(self) -> dict[str, object]:
        """What was seen expired: observations, Secrets, the latest, and by which check."""
        return {
            "expired_observations": self.count(),
            "secrets_seen_expired": len({e.namespace for e in self.found.values()}),
            "latest_expired_seconds": max(
                (e.late_seconds for e in self.found.values()), default=0.0
            ),
            "expired_by_how": {how: self.count(how) for how in ("event", "state", "sweep")},
        }

    def count(self, how: str | None = None) -> int:
        """Tokens seen expired in a Secret (each (Secret, token) once), or those seen `how`."""
        if how is None:
            return len({(e.namespace, e.jti) for e in self.found.values()})
        return sum(1 for e in self.found.values() if e.how == how)


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="refresh_wave", title=TITLE)
    n, m, lifetime = sizes.wave_secrets, sizes.identities, sizes.wave_lifetime
    observe_seconds = sizes.wave_lifetimes * lifetime
    async with stacks.stack(token_lifetime=lifetime) as stack:
        namespaces, identity_of = await lab.managed_secrets(stack, n, identities=m, prefix="wave")
        async with SecretWatch(stack, namespaces=namespaces) as watch:
            checks = ExpiryChecks(watch)
            process = lab.controller(stack, name="wave", workers=sizes.workers, **CONTROLLER_ENV)
            wave = await follow_wave(
                stack,
                watch,
                namespaces,
                process,
                checks,
                sizes=sizes,
                observe_seconds=observe_seconds,
            )
            counts = lab.exchange_counts(stack)
            # Kept for the record: a token seen expired is explained by what the controller
            # did meanwhile (leadership, failures, when each identity was exchanged).
            result.logs["controller"] = process.logs()

    analyse(
        result,
        history=wave.history,
        identity_of=identity_of,
        counts=counts,
        checks=checks,
        start=wave.start,
        start_wall=wave.start_wall,
        lifetime=lifetime,
        identities=m,
        sizes=sizes,
    )
    wave_figures(result, wave, observe_seconds=observe_seconds)
    return result


@dataclass(frozen=True)
class Wave:
    """A followed wave: every observation, and the controller's readings."""

    history: list[Observation]
    #: The controller's launch (monotonic and epoch seconds) and the end of the observation.
    start: float
    start_wall: float
    end_wall: float
    #: Seconds from the launch until every Secret held a credential.
    filled_at: float
    reading: lab.ProcessReading
    cpu: dict[str, float]
    stopped: lab.Stopped


async def follow_wave(
    stack: LocalStack,
    watch: SecretWatch,
    namespaces: list[str],
    process: ControllerProcess,
    checks: ExpiryChecks,
    *,
    sizes: Sizes,
    observe_seconds: float,
) -> Wave:
    """Launch `process` on the empty Secrets in `namespaces`, wait for every one to hold a
    credential (as `watch` reads it), and run `checks` until `observe_seconds` after the
    launch; the controller is stopped before this returns. The counters of the stack's token
    services are zeroed at the launch."""
    n = len(namespaces)
    goal = watch.goal(namespaces, lambda seen: seen.token is not None)
    lab.reset_counters(stack)
    start, start_wall = time.monotonic(), time.time()
    process.start(wait_ready=False)
    meter = lab.CpuMeter(stack, controller=process.process.pid).start()
    tasks = [
        asyncio.create_task(checks.check_state()),
        asyncio.create_task(checks.sweep(sizes.wave_sweep_interval)),
    ]
    try:
        if not await goal.wait(max(120.0, n * 0.25)):
            raise RuntimeError(f"{len(goal.pending)} Secrets were never filled")
        filled_at = time.monotonic() - start
        lab.progress(f"{n} Secrets filled in {filled_at:.1f} s; watching")
        await asyncio.sleep(max(0.0, start + observe_seconds - time.monotonic()))
        end_wall = time.time()
        reading = lab.read_process(process.process.pid)
        cpu = meter.stop()
    finally:
        # NB: the controller stops before the counting, so that every exchange counted
        # had its chance to reach the Secrets, and every token seen was counted.
        stopped = await lab.stop_controller(stack, process)
        await asyncio.sleep(0.5)  # the last writes' events are on their way
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return Wave(list(watch.history), start, start_wall, end_wall, filled_at, reading, cpu, stopped)


def wave_figures(result: ScenarioResult, wave: Wave, *, observe_seconds: float) -> None:
    """The controller's readings during the wave, as figures and a note."""
    cpu = wave.cpu
    result.figures.update(
        fill_seconds=round(wave.filled_at, 2),
        observed_seconds=observe_seconds,
        controller_cpu_seconds=round(wave.reading.cpu_seconds, 2),
        controller_peak_rss_mib=round(wave.reading.hwm_bytes / 2**20, 1),
        cpu=cpu,
        unclean_stops=lab.unclean([wave.stopped]),
    )
    result.notes.append(
        f"Other load on the machine used {cpu['elsewhere_cpu_seconds']:.0f} of the "
        f"{cpu['machine_cpu_seconds_available']:.0f} CPU seconds available during the run "
        f"(the controller {cpu['controller_cpu_seconds']:.0f}, the API server "
        f"{cpu['kube_apiserver_cpu_seconds']:.0f})."
    )


def analyse(
    result: ScenarioResult,
    *,
    history: list[Observation],
    identity_of: dict[str, str],
    counts: dict[str, dict[str, int]],
    checks: ExpiryChecks,
    start: float,
    start_wall: float,
    lifetime: int,
    identities: int,
    sizes: Sizes,
    credential: str = "token",
    identity: str = "identity",
) -> None:
    """Figures, targets and series of a wave from its observations: `identity_of` maps each
    Secret's namespace to what it is filled for, `counts` the exchanges by that, `identities`
    how many there are. `credential` and `identity` name them in the targets and notes."""
    m = identities
    held: dict[str, Token] = {}
    tokens_by_identity: dict[str, dict[str, Token]] = {}
    writes: list[float] = []
    burst: dict[str, list[float]] = {}
    lead: list[float] = []
    age_share: list[float] = []
    for seen in history:
        token = seen.token
        if token is None or seen.kind == "LISTED":
            continue
        previous = held.get(seen.namespace)
        if previous is not None and previous.jti == token.jti:
            continue
        held[seen.namespace] = token
        at = seen.mono - start
        writes.append(at)
        tokens_by_identity.setdefault(identity_of[seen.namespace], {})[token.jti] = token
        if previous is not None:
            burst.setdefault(token.jti, []).append(at)
            lead.append(previous.exp - seen.wall)
            age_share.append((seen.wall - previous.iat) / (previous.exp - previous.iat))
    distinct = sum(len(t) for t in tokens_by_identity.values())
    exchanges_all = lab.total_exchanges(counts)
    per_window = m * exchanges_all / distinct if distinct else float("nan")
    windows = [len(t) for t in tokens_by_identity.values()]
    durations = [max(times) - min(times) for times in burst.values()]
    per_second = Counter(int(t) for t in writes)
    expired = checks.count()
    figures = result.figures
    figures.update(
        secrets=len(identity_of),
        identities=m,
        workers=sizes.workers,
        token_lifetime=lifetime,
        lifetimes_observed=sizes.wave_lifetimes,
        controller_settings=CONTROLLER_ENV,
        token_writes=len(writes),
        peak_writes_per_second=max(per_second.values(), default=0),
        refreshes=len(lead),
        distinct_tokens=distinct,
        windows_per_identity={"min": min(windows, default=0), "max": max(windows, default=0)},
        exchanges=exchanges_all,
        exchange_errors=sum(c["error"] for c in counts.values()),
        exchanges_per_window=round(per_window, 3),
        wasted_exchanges=exchanges_all - distinct,
        validity_left_at_refresh_seconds=distribution(lead, digits=2),
        refresh_at_share_of_lifetime=distribution(age_share, digits=3),
        burst_seconds=distribution(durations, digits=3),
        burst_size=distribution([float(len(t)) for t in burst.values()], digits=1),
        **checks.figures(),
        expired_examples=[vars(e) for e in list(checks.found.values())[:10]],
        sweeps=checks.sweeps,
        state_checks=checks.state_checks,
    )
    result.series = {
        "write_seconds": [round(t, 3) for t in writes],
        "exchange_seconds": sorted(
            round(t.iat - start_wall, 3) for ts in tokens_by_identity.values() for t in ts.values()
        ),
    }
    result.targets = [
        Target(
            name=f"expired {credential}s observed",
            requirement="none (watch events, watch state every 0.25 s, full lists)",
            measured=(
                f"{expired} expired {credential}s seen in "
                f"{figures['secrets_seen_expired']} Secrets "
                f"over {sizes.wave_lifetimes} lifetimes of {lifetime} s ({len(lead)} refreshes, "
                + (
                    f"the latest written {-min(lead):.1f} s after expiry"
                    if lead and min(lead) < 0
                    else f"each with at least {min(lead, default=0.0):.1f} s of validity left"
                )
                + f"; {checks.sweeps} sweeps)"
            ),
            passed=expired == 0,
        ),
        Target(
            name="exchanges per refresh window",
            requirement=f"M ({m}) per window",
            measured=(
                f"{per_window:.2f} ({exchanges_all} exchanges, {distinct} distinct {credential}s "
                f"written, {min(windows, default=0)}-{max(windows, default=0)} windows per "
                f"{identity})"
            ),
            passed=distinct > 0 and exchanges_all == distinct,
        ),
    ]
    if lead:
        result.notes.append(
            f"Refreshed with {min(lead):.1f}-{max(lead):.1f} s of validity left "
            f"(at {min(age_share):.0%}-{max(age_share):.0%} of the old {credential}'s lifetime); "
            f"one {identity}'s burst of writes took up to {max(durations):.2f} s."
        )
