"""Mixed cold fill: N empty Secrets, each asking for every provider's entry (a cgr.dev token
of one of M identities, an ECR password of one of R roles, a Google access token of one of M
workload identities, an ACR refresh token of one of M apps; round robin), and a controller
with all four providers that starts.

The cold fill's three rounds (`cold_fill`): the bare client writes every entry, credentials
minted beforehand, with the status annotations the controller writes for every provider
(built by the controller's own core functions); the controller fills the emptied Secrets; the
bare client again, and the ratio is against the mean of the two. A Secret counts as filled
when the watch sees all its entries in it, new ones (`read_all`). Reported besides the cold
fill's figures: each stand-in's calls (target: one of each API per identity: the token
service's exchanges, STS and ECR, Google STS and IAM Credentials for the identities that
impersonate a service account, Entra and the registry's exchange), and whether every Secret
holds a valid cgr token and, for each cloud, a live credential its stand-in issued for the
Secret's identity.

`fill` runs it for any clouds: `ecr_fill` is the same scenario with cgr.dev and ECR.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightkube

from bench import clouds, cold_fill, lab
from bench.clouds import Cloud
from bench.cold_fill import Baseline
from bench.observe import (
    Reader,
    SecretWatch,
    Token,
    Verification,
    claims_of,
    token_of,
    verify_tokens,
)
from bench.observe import registry_password as entry_password
from bench.results import ScenarioResult, Target
from bench.sizes import Sizes
from devstack.stack import LocalStack

TITLE = "Cold fill, cgr.dev, ECR, Artifact Registry and ACR"


def combined(parts: Sequence[Token]) -> Token:
    """A Secret's credentials as one: the earliest expiry and latest issue of those with
    claims, every one's name. (An opaque credential's expiry is checked against its stand-in's
    ledger after the fill.)"""
    return Token(
        exp=min((p.exp for p in parts), default=math.inf),
        iat=max((p.iat for p in parts), default=0.0),
        jti="+".join(p.jti for p in parts),
    )


def _opaque(credential: str) -> Token:
    return Token(exp=math.inf, iat=0.0, jti=clouds.digest(credential))


def read_all(stack: LocalStack, every: Sequence[Cloud]) -> Reader:
    """Reads every cloud's entry of a Secret: the claims of a verifiable token, the digest of
    an opaque credential; None unless all are there."""
    hosts = [(cloud.verifiable, cloud.host(stack)) for cloud in every]

    def read(secret: Mapping[str, Any]) -> Token | None:
        parts = []
        for verifiable, host in hosts:
            if verifiable:
                part = token_of(secret, host)
            else:
                credential = entry_password(secret, host)
                part = None if credential is None else _opaque(credential)
            if part is None:
                return None
            parts.append(part)
        return combined(parts)

    return read


def minted_baseline(stack: LocalStack, every: Sequence[Cloud]) -> tuple[Baseline, list[str]]:
    """Each cloud's credential for its first identity, minted beforehand, in the entries and
    annotations the controller writes; and the credentials."""
    entries: dict[str, tuple[str, str]] = {}
    filled: dict[str, str] = {}
    parts: list[Token] = []
    minted: list[str] = []
    expiries: list[float] = []
    for cloud in every:
        identity = cloud.identities[0]
        credential, expires_at = cloud.mint(stack, identity)
        entries[cloud.host(stack)] = (cloud.username, credential)
        filled[cloud.filled] = identity.key
        expiries.append(expires_at)
        minted.append(credential)
        claims = claims_of(credential) if cloud.verifiable else None
        parts.append(claims if claims is not None else _opaque(credential))
    data, annotations = cold_fill.baseline_patch(entries, filled=filled, expires_at=min(expiries))
    return Baseline(data, annotations, combined(parts)), minted


async def fill(
    sizes: Sizes,
    stacks: lab.Stacks,
    *,
    every: Sequence[Cloud],
    name: str,
    title: str,
    prefix: str,
) -> ScenarioResult:
    """The cold fill of Secrets asking for an entry of each of `every`."""
    result = ScenarioResult(name=name, title=title)
    n = sizes.fill_secrets
    async with stacks.stack() as stack:
        for cloud in every:
            cloud.create(stack, getattr(sizes, cloud.size_field), prefix=prefix)
        namespaces = [f"{prefix}-{i:05d}" for i in range(n)]
        async with lab.admin_client(stack) as client:
            started = time.monotonic()
            await lab.create_namespaces(client, namespaces)
            await lab.create_pull_secrets(
                client, namespaces, [], also=lambda i: clouds.asked(every, i)
            )
            result.figures["setup_seconds"] = round(time.monotonic() - started, 2)
            lab.progress(f"{n} namespaces and Secrets created")
            read = read_all(stack, every)
            async with SecretWatch(
                stack, namespaces=namespaces, keep_history=False, read=read
            ) as watch:
                await measure(stack, client, watch, namespaces, every, sizes, result,
                              prefix=prefix)  # fmt: skip
    return result


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    every = [kind() for kind in clouds.ALL]
    return await fill(sizes, stacks, every=every, name="mixed_fill", title=TITLE,
                      prefix="mixed-fill")  # fmt: skip


async def measure(
    stack: LocalStack,
    client: lightkube.AsyncClient,
    watch: SecretWatch,
    namespaces: list[str],
    every: Sequence[Cloud],
    sizes: Sizes,
    result: ScenarioResult,
    *,
    prefix: str,
) -> None:
    """The cold fill's three rounds over Secrets asking for every cloud's entry (the i-th
    Secret for identity i mod M of each); figures, targets and notes to `result`."""
    n, workers = len(namespaces), sizes.workers
    result.figures.update(
        secrets=n,
        identities={cloud.kind: len(cloud.identities) for cloud in every},
        workers=workers,
        load_average=lab.load_average(),
    )

    baseline, minted = minted_baseline(stack, every)
    before = await cold_fill.baseline_round(
        stack, client, watch, namespaces, baseline, workers=workers
    )
    lab.progress(f"baseline: {before.seconds:.2f} s")
    await cold_fill.empty_secrets(stack, client, watch, namespaces)
    process = clouds.controller(stack, every, name=prefix, workers=workers)
    fill = await cold_fill.controller_round(
        stack, watch, namespaces, process, baseline=baseline,
        read_calls=lambda: {cloud.kind: cloud.calls(stack) for cloud in every},
    )  # fmt: skip
    now = time.time()
    checked: dict[str, Verification] = {}
    for cloud in every:
        if cloud.verifiable:
            checked[cloud.kind] = await verify_tokens(stack, namespaces)
            continue
        identity_of = {
            ns: lab.identity_for(i, cloud.identities).key for i, ns in enumerate(namespaces)
        }
        checked[cloud.kind] = await clouds.verify_entries(
            stack, cloud, namespaces, identity_of, book=cloud.book(stack, lifetime=0.0),
            now=now, exclude=set(minted),
        )  # fmt: skip
    # The baseline again, over the controller's credentials: brackets any drift in load.
    after = await cold_fill.baseline_round(
        stack, client, watch, namespaces, baseline, workers=workers
    )
    lab.progress(f"baseline again: {after.seconds:.2f} s")

    calls: dict[str, clouds.Calls] = fill.calls
    totals = {
        cloud.kind: {api: clouds.total(calls[cloud.kind].get(api, {})) for api in cloud.apis}
        for cloud in every
    }
    cold_fill.fill_figures(
        result,
        before=before,
        fill=fill,
        after=after,
        exchanged=dict(
            exchanges=lab.total_exchanges(fill.counts),
            calls=totals,
            call_errors={
                cloud.kind: sum(clouds.errors(c) for c in calls[cloud.kind].values())
                for cloud in every
            },
            calls_by_identity={
                cloud.kind: {
                    api: {_short(k): v["ok"] + v["error"] for k, v in counts.items()}
                    for api, counts in calls[cloud.kind].items()
                }
                for cloud in every
            },
        ),
        checked=dict(
            valid={kind: v.valid for kind, v in checked.items()},
            problems={kind: v.problems for kind, v in checked.items() if v.problems},
        ),
    )
    result.targets = [
        cold_fill.fill_target(
            before=before,
            fill=fill,
            after=after,
            secrets=n,
            workers=workers,
            name=f"fill of {len(every)} entries vs baseline",
        ),
    ]
    for cloud in every:
        expected = cloud.expected()
        wanted = ", ".join(f"{api} {len(keys)}" for api, keys in expected.items())
        measured = ", ".join(f"{api} {totals[cloud.kind][api]}" for api in cloud.apis)
        errors = sum(clouds.errors(c) for c in calls[cloud.kind].values())
        result.targets.append(
            Target(
                name=f"{cloud.title} exchanges during the fill",
                requirement=f"one call of each API per {cloud.identity_word} "
                f"({len(cloud.identities)}): {wanted}",
                measured=f"{measured} ({errors} failed) for {n} Secrets",
                passed=clouds.one_each(calls[cloud.kind], expected),
            )
        )
    problems = {
        f"{kind}: {problem}": count
        for kind, v in checked.items()
        for problem, count in v.problems.items()
    }
    result.targets.append(
        Target(
            name="credentials valid after the fill",
            requirement=f"all {n} Secrets hold a valid credential of each provider, issued "
            "for their identities",
            measured=", ".join(f"{kind} {v.valid}" for kind, v in checked.items())
            + (f"; problems: {problems}" if problems else ""),
            passed=all(v.valid == n for v in checked.values()),
        )
    )
    result.notes += cold_fill.fill_notes(result, before=before, fill=fill, after=after)


def _short(key: str) -> str:
    """An identity's name in figures: a role's or a provider's last part, an email's name."""
    return key.rsplit("/", 1)[-1].split("@", 1)[0] or "(none)"
