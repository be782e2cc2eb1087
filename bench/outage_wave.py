"""Outage wave: N Secrets whose refreshes all fail until shortly before their tokens expire.

The token service issues tokens of a short lifetime; the controller runs with the refresh
wave's settings (`refresh_wave.CONTROLLER_ENV`) and the default backoff (1 s doubling up to
300 s). Once every Secret is filled, the token service answers every exchange with a 503
until `ENDS_BEFORE_EXPIRY` seconds before the first of those tokens expires, so each Secret
fails several times from its refresh point on. Then the Secrets are watched until every
one holds a new token, or until every first token has expired and then some. Reported:

- expired observations, as in the refresh wave (watch events, watch state, full lists): the
  target is none; every retry must come before the token in place expires;
- the exchanges the token service saw during the outage, read every second: a failed
  exchange is shared by all the Secrets of its identity for one backoff base, so the target
  is at most two per identity in any second (one per hold, one under way), however many
  Secrets retry, and every identity must have tried;
- after the outage: exchanges per identity (the target is one: the first Secret that gets a
  token brings it to the others) and how long until every Secret held a new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

from bench import lab
from bench.observe import SecretWatch
from bench.refresh_wave import CONTROLLER_ENV, ExpiryChecks
from bench.results import ScenarioResult, Target
from bench.sizes import Sizes
from devstack.stack import LocalStack
from pull_secret_updater.core.backoff import DEFAULT_BASE

TITLE = "Outage wave"
#: The outage ends this long before the first of the tokens in place expires.
ENDS_BEFORE_EXPIRY = 10.0
#: After the last first token has expired, how long to keep watching for a late refresh.
GRACE = 15.0
#: Seconds between readings of the token service's exchange counts during the outage.
SAMPLE_INTERVAL = 1.0
#: The controller's default backoff base, also its failure hold.
BACKOFF_BASE = DEFAULT_BASE


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="outage_wave", title=TITLE)
    n, m, lifetime = sizes.outage_secrets, sizes.identities, sizes.wave_lifetime
    async with stacks.stack(token_lifetime=lifetime) as stack:
        namespaces, _ = await lab.managed_secrets(stack, n, identities=m, prefix="outage")
        async with SecretWatch(stack, namespaces=namespaces, keep_history=False) as watch:
            checks = ExpiryChecks(watch)
            filled = watch.goal(namespaces, lambda seen: seen.token is not None)
            process = lab.controller(stack, name="outage", workers=sizes.workers,
                                     **CONTROLLER_ENV)  # fmt: skip
            process.start(wait_ready=False)
            tasks = [
                asyncio.create_task(checks.check_state()),
                asyncio.create_task(checks.sweep(sizes.wave_sweep_interval)),
            ]
            admin = stack.token_admin()
            try:
                if not await filled.wait(max(120.0, n * 0.25)):
                    raise RuntimeError(f"{len(filled.pending)} Secrets were never filled")
                # The goal saw a token in every one of them.
                first = {ns: t for ns in namespaces if (t := watch.current.get(ns)) is not None}
                try:
                    admin.set_fault("status", status=503)
                    injected = time.time()
                    end_at = min(t.exp for t in first.values()) - ENDS_BEFORE_EXPIRY
                    lab.progress(f"{n} Secrets filled; token service down for "
                                 f"{end_at - injected:.0f} s")  # fmt: skip
                    samples = await _sample_exchanges(stack, until=end_at)
                finally:
                    admin.clear_faults()
                cleared = time.time()
                renewed = watch.goal(
                    namespaces,
                    lambda seen: (
                        seen.token is not None and seen.token.jti != first[seen.namespace].jti
                    ),
                )
                last_expiry = max(t.exp for t in first.values())
                all_renewed = await renewed.wait(max(1.0, last_expiry + GRACE - time.time()))
                renewed_after = time.time() - cleared
                after = _since(lab.exchange_counts(stack), samples[-1][1])
            finally:
                await lab.stop_controller(stack, process)
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            result.logs["controller"] = process.logs()

    outage = cleared - injected
    during = _since(samples[-1][1], samples[0][1])
    errors_during = sum(c["error"] for c in during.values())
    # The busiest second of each identity: the retries come from each token's refresh point
    # on, not from the start of the outage, so an average over the outage would flatter.
    busiest = 0.0
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        for counts in _since(c1, c0).values():
            busiest = max(busiest, counts["error"] / max(t1 - t0, SAMPLE_INTERVAL))
    tried = sum(1 for counts in during.values() if counts["error"] > 0)
    ok_after = sum(c["ok"] for c in after.values())
    expired = checks.count()
    result.figures.update(
        secrets=n,
        identities=m,
        token_lifetime=lifetime,
        controller_settings=CONTROLLER_ENV,
        outage_seconds=round(outage, 1),
        exchanges_during_outage=errors_during,
        exchanges_per_secret_during_outage=round(errors_during / n, 3),
        identities_that_tried=tried,
        busiest_identity_second=round(busiest, 2),
        samples=len(samples),
        exchanges_after_outage={"ok": ok_after, "error": sum(c["error"] for c in after.values())},
        all_renewed=all_renewed,
        renewed_seconds_after_outage=round(renewed_after, 2) if all_renewed else None,
        not_renewed=len(renewed.pending),
        **checks.figures(),
        sweeps=checks.sweeps,
    )
    result.targets = [
        Target(
            name="expired tokens observed",
            requirement="none: retries come before the token in place expires",
            measured=(
                f"{expired} expired tokens seen in {result.figures['secrets_seen_expired']} of "
                f"{n} Secrets; every Secret renewed "
                + (f"{renewed_after:.1f} s after the outage" if all_renewed else "NOT")
                + f" ({len(renewed.pending)} not)"
            ),
            passed=expired == 0 and all_renewed,
        ),
        Target(
            name="exchanges during the outage",
            requirement=f"every identity tried; at most 2 per identity in any second (one "
            f"per backoff base, {BACKOFF_BASE:g} s, and one under way)",
            measured=(
                f"{errors_during} in {outage:.1f} s for {m} identities ({tried} tried) and "
                f"{n} Secrets; busiest identity-second: {busiest:.1f}"
            ),
            passed=tried == m and busiest <= 2 / BACKOFF_BASE,
        ),
        Target(
            name="exchanges after the outage",
            requirement=f"M ({m}): one per identity",
            measured=f"{ok_after} successful",
            passed=ok_after == m,
        ),
    ]
    return result


async def _sample_exchanges(
    stack: LocalStack, *, until: float
) -> list[tuple[float, dict[str, dict[str, int]]]]:
    """The token service's counts about every `SAMPLE_INTERVAL` seconds until `until`."""
    samples = [(time.monotonic(), lab.exchange_counts(stack))]
    while time.time() < until:
        await asyncio.sleep(min(SAMPLE_INTERVAL, max(0.0, until - time.time())))
        samples.append((time.monotonic(), lab.exchange_counts(stack)))
    return samples


def _since(
    now: dict[str, dict[str, int]],
    then: dict[str, dict[str, int]],
    *,
    minus: dict[str, dict[str, int]] | None = None,
) -> dict[str, dict[str, int]]:
    """`now - then (- minus)` per identity and outcome."""
    minus = minus or {}
    return {
        uid: {
            outcome: count - then.get(uid, {}).get(outcome, 0) - minus.get(uid, {}).get(outcome, 0)
            for outcome, count in counts.items()
        }
        for uid, counts in now.items()
    }
