"""Mixed refresh wave: N Secrets asking for every provider's entry, each credential of a short
lifetime, followed over several lifetimes.

The refresh wave (`refresh_wave`) with every provider's credentials at once: each Secret asks
for a cgr.dev token (one of M identities), an ECR password (one of R roles), a Google access
token (one of M workload identities, every other one impersonating a service account) and an
ACR refresh token (one of M apps), round robin; the token service and every cloud stand-in
issue credentials that live `wave_lifetime` seconds (`lab.set_cloud_lifetimes`: AWS's are
12 hours, Google's an hour, and never longer than the Kubernetes token they came from, ACR's
3 hours). The controller runs with the refresh wave's settings and all four providers. An
opaque credential carries no claims: its expiry and issue time are its stand-in's
(`clouds.Book`).

The watch reads all of a Secret's entries as one (`Entries`): it expires with the first of
them, so a Secret is seen holding an expired credential when any of its entries has expired
(the target is none). Each provider's entries are then analysed as the refresh wave's tokens
are (exchanges per refresh window: the identities when none is wasted; the spread of refresh
times), and its stand-in's calls are checked: every API called as often as the one that
issues the credentials, for the identities that need it, none failed, and no credential in a
Secret that the stand-in did not issue.

`wave` runs it for any clouds: `ecr_wave` is the same scenario with ECR alone, whose figures
keep the refresh wave's names (its `identities` are the roles, its `tokens` the passwords, its
`exchanges` the GetAuthorizationToken calls).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bench import clouds, lab
from bench.clouds import Book, Cloud
from bench.observe import Observation, Reader, SecretWatch, Token
from bench.refresh_wave import (
    CONTROLLER_ENV,
    ExpiryChecks,
    Wave,
    analyse,
    follow_wave,
    wave_figures,
)
from bench.results import ScenarioResult, Target
from bench.sizes import Sizes

TITLE = "Refresh wave, cgr.dev, ECR, Artifact Registry and ACR"


class Entries:
    """Reads all of a Secret's entries (None unless every one holds a credential) as one
    token expiring with the first of them, and remembers the parts of each such token."""

    def __init__(self, readers: Sequence[Reader]) -> None:
        self._readers = readers
        self.parts: dict[str, tuple[Token, ...]] = {}

    def __call__(self, secret: Mapping[str, Any]) -> Token | None:
        parts = []
        for read in self._readers:
            part = read(secret)
            if part is None:
                return None
            parts.append(part)
        if len(parts) == 1:
            self.parts.setdefault(parts[0].jti, (parts[0],))
            return parts[0]
        token = Token(
            exp=min(p.exp for p in parts),
            iat=max(p.iat for p in parts),
            jti="+".join(p.jti for p in parts),
        )
        self.parts.setdefault(token.jti, tuple(parts))
        return token

    def projected(self, history: Sequence[Observation], index: int) -> list[Observation]:
        """The observations of the `index`-th entry alone."""
        return [
            seen
            if seen.token is None
            else dataclasses.replace(seen, token=self.parts[seen.token.jti][index])
            for seen in history
        ]

    def checks_of(self, checks: ExpiryChecks, index: int) -> ExpiryChecks:
        """`checks` with only what the `index`-th entry had expired."""
        view = copy.copy(checks)
        view.found = {}
        for key, expired in checks.found.items():
            parts = self.parts[expired.jti]
            first = min(p.exp for p in parts)
            part = parts[index]
            if part.exp <= first + expired.late_seconds:
                view.found[key] = dataclasses.replace(
                    expired, jti=part.jti, late_seconds=round(first + expired.late_seconds
                                                             - part.exp, 3)
                )  # fmt: skip
        return view


async def wave(
    sizes: Sizes,
    stacks: lab.Stacks,
    *,
    every: Sequence[Cloud],
    name: str,
    title: str,
    prefix: str,
) -> ScenarioResult:
    """The refresh wave of Secrets asking for an entry of each of `every`."""
    result = ScenarioResult(name=name, title=title)
    n, lifetime = sizes.wave_secrets, sizes.wave_lifetime
    observe_seconds = sizes.wave_lifetimes * lifetime
    async with stacks.stack(token_lifetime=lifetime, cloud_lifetime=lifetime) as stack:
        for cloud in every:
            cloud.create(stack, getattr(sizes, cloud.size_field), prefix=prefix)
        namespaces = [f"{prefix}-{i:05d}" for i in range(n)]
        async with lab.admin_client(stack) as client:
            await lab.create_namespaces(client, namespaces)
            await lab.create_pull_secrets(
                client, namespaces, [], also=lambda i: clouds.asked(every, i)
            )
        lab.progress(f"{n} namespaces and Secrets created")
        books = {
            cloud.kind: cloud.book(stack, lifetime=lifetime)
            for cloud in every
            if not cloud.verifiable
        }
        entries = Entries([clouds.reader(c, stack, books.get(c.kind)) for c in every])
        async with SecretWatch(stack, namespaces=namespaces, read=entries) as watch:
            checks = ExpiryChecks(watch)
            process = clouds.controller(
                stack, every, name=prefix, workers=sizes.workers, **CONTROLLER_ENV
            )
            followed = await follow_wave(
                stack,
                watch,
                namespaces,
                process,
                checks,
                sizes=sizes,
                observe_seconds=observe_seconds,
            )
            counted = {cloud.kind: cloud.calls(stack) for cloud in every}
            # Kept for the record, as the refresh wave keeps it.
            result.logs["controller"] = process.logs()
        await asyncio.sleep(lab.AUDIT_FLUSH)  # the audit log is written in batches
        requests = lab.audited_requests(
            stack.control_plane.audit_log,
            user=lab.CONTROLLER_USER,
            since=followed.start_wall,
            until=followed.end_wall,
        )

    by_cloud = []
    for index, cloud in enumerate(every):
        part = ScenarioResult(name=name, title=title) if len(every) > 1 else result
        identity_of = {
            ns: lab.identity_for(i, cloud.identities).key for i, ns in enumerate(namespaces)
        }
        analyse(
            part,
            history=entries.projected(followed.history, index),
            identity_of=identity_of,
            counts=counted[cloud.kind].get(cloud.issuing_api, {}),
            checks=entries.checks_of(checks, index),
            start=followed.start,
            start_wall=followed.start_wall,
            lifetime=lifetime,
            identities=len(cloud.identities),
            sizes=sizes,
            credential=f"{cloud.title} {cloud.credential}",
            identity=cloud.identity_word,
        )
        part.targets.append(
            _calls_target(cloud, counted[cloud.kind], book=books.get(cloud.kind), part=part)
        )
        by_cloud.append((cloud, part))
    if len(every) > 1:
        _merge(result, by_cloud, checks=checks, followed=followed, sizes=sizes)
    wave_figures(result, followed, observe_seconds=observe_seconds)
    _write_figures(result, requests, books=books)
    return result


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    every = [kind() for kind in clouds.ALL]
    return await wave(sizes, stacks, every=every, name="mixed_wave", title=TITLE,
                      prefix="mixed-wave")  # fmt: skip


def _calls_target(
    cloud: Cloud, calls: clouds.Calls, *, book: Book | None, part: ScenarioResult
) -> Target:
    """Every API of `cloud` called as often as the one that issues its credentials, for each
    identity that needs it; none failed; every credential seen issued by the stand-in."""
    issuing = calls.get(cloud.issuing_api, {})
    consistent = all(
        calls.get(api, {}).get(key, {}).get("ok", 0) == issuing.get(key, {}).get("ok", 0)
        for api, keys in cloud.expected().items()
        for key in keys
    )
    totals = {api: clouds.total(calls.get(api, {})) for api in cloud.apis}
    failed = sum(clouds.errors(c) for c in calls.values())
    unknown = book.unknown if book is not None else 0
    lifetimes = part.figures["lifetimes_observed"]
    per_identity = totals[cloud.issuing_api] / max(1, len(cloud.identities)) / lifetimes
    part.figures.update(
        provider=cloud.kind,
        calls=totals,
        call_errors=failed,
        exchanges_per_identity_per_lifetime=round(per_identity, 3),
        unknown_credentials=unknown,
        ledger_reads=book.reads if book is not None else 0,
    )
    apis = ", ".join(f"{api} {count}" for api, count in totals.items())
    return Target(
        name=f"{cloud.title} calls and {cloud.credential}s",
        requirement=f"each API once per {cloud.issuing_api} call for each {cloud.identity_word} "
        "that needs it, none failed; every credential seen issued by the stand-in",
        measured=(
            f"{apis} ({failed} failed; {per_identity:.2f} per {cloud.identity_word} per lifetime "
            f"of {part.figures['token_lifetime']} s); {unknown} not issued by it"
        ),
        passed=consistent and failed == 0 and unknown == 0,
    )


def _merge(
    result: ScenarioResult,
    by_cloud: Sequence[tuple[Cloud, ScenarioResult]],
    *,
    checks: ExpiryChecks,
    followed: Wave,
    sizes: Sizes,
) -> None:
    """Every cloud's analysis into `result`: its figures under its kind, its targets named by
    it; and what is seen of the Secrets as a whole (any entry expired)."""
    first = by_cloud[0][1].figures
    expired = checks.count()
    result.figures.update(
        secrets=first["secrets"],
        identities={cloud.kind: len(cloud.identities) for cloud, _ in by_cloud},
        workers=sizes.workers,
        token_lifetime=first["token_lifetime"],
        lifetimes_observed=sizes.wave_lifetimes,
        controller_settings=CONTROLLER_ENV,
        **checks.figures(),
        sweeps=checks.sweeps,
        state_checks=checks.state_checks,
        by_provider={cloud.kind: part.figures for cloud, part in by_cloud},
    )
    least = {
        cloud.kind: part.figures["validity_left_at_refresh_seconds"].get("min")
        for cloud, part in by_cloud
    }
    result.targets.append(
        Target(
            name="expired credentials observed",
            requirement="none in any entry (watch events, watch state every 0.25 s, full lists)",
            measured=(
                f"{expired} expired credentials seen in {result.figures['secrets_seen_expired']} "
                f"Secrets over {sizes.wave_lifetimes} lifetimes of {first['token_lifetime']} s "
                f"({sum(p.figures['refreshes'] for _, p in by_cloud)} refreshes; least validity "
                f"left at a refresh: {least})"
            ),
            passed=expired == 0,
        )
    )
    for cloud, part in by_cloud:
        for target in part.targets:
            if target.name.startswith("expired"):
                continue  # the Secrets' own target above says it for every entry
            result.targets.append(
                dataclasses.replace(target, name=f"{cloud.title}: {target.name}")
                if not target.name.startswith(cloud.title)
                else target
            )
        result.notes += [f"{cloud.title}: {note}" for note in part.notes]
    writes = sorted(t for _, part in by_cloud for t in part.series.get("write_seconds", []))
    result.series = {
        "write_seconds": writes,
        "exchange_seconds": sorted(
            t for _, part in by_cloud for t in part.series.get("exchange_seconds", [])
        ),
    }
    per_second = Counter(int(t) for t in writes)
    result.figures.update(
        entry_writes=len(writes), peak_entry_writes_per_second=max(per_second.values(), default=0)
    )


def _write_figures(
    result: ScenarioResult, requests: list[lab.AuditedRequest], *, books: Mapping[str, Book]
) -> None:
    writes = Counter(f"{r.verb} {r.resource}" for r in requests)
    secret_writes = writes["update secrets"] + writes["patch secrets"]
    n = result.figures["secrets"]
    result.figures.update(
        controller_requests=lab.requests_by_kind(requests),
        controller_secret_writes=secret_writes,
        controller_secret_writes_per_secret=round(secret_writes / n, 2),
    )
    result.notes.append(
        f"The controller wrote the Secrets {secret_writes} times "
        f"({secret_writes / n:.2f} per Secret); "
        + ", ".join(f"{kind}'s ledger read {book.reads} times" for kind, book in books.items())
        + "."
    )
