"""ECR refresh wave: N Secrets asking for ECR passwords of a short lifetime, followed over
several lifetimes.

The refresh wave (`refresh_wave`) with the AWS stand-in's ECR passwords in place of the
token service's tokens: each Secret asks for a password of one of R roles (round robin) for
the stand-in's registry, and nothing else; the stand-in issues passwords that live
`wave_lifetime` seconds (AWS's are 12 hours). The controller runs with the refresh wave's
settings and the ECR provider. A password carries no claims: its expiry and issue time are
the stand-in's (`ecr.PasswordBook`). Reported, as for the refresh wave: Secrets ever seen
holding an expired password (watch events, watch state, full lists; the target is none),
exchanges per refresh window (R when none is wasted) and per role and lifetime, the spread of
refresh times, the writes; and the stand-in's calls: one AssumeRoleWithWebIdentity for each
GetAuthorizationToken, none failed, and no password in a Secret that it did not issue.

The refresh wave's figures keep their names: its `identities` are the roles here (a role is
what an ECR entry is filled for), its `tokens` the passwords, its `exchanges` the
GetAuthorizationToken calls.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from bench import ecr, lab
from bench.observe import SecretWatch
from bench.refresh_wave import CONTROLLER_ENV, ExpiryChecks, analyse, follow_wave, wave_figures
from bench.results import ScenarioResult, Target
from bench.sizes import Sizes

TITLE = "Refresh wave, ECR"


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="ecr_wave", title=TITLE)
    n, r, lifetime = sizes.wave_secrets, sizes.roles, sizes.wave_lifetime
    observe_seconds = sizes.wave_lifetimes * lifetime
    async with stacks.stack(ecr_token_lifetime=lifetime) as stack:
        roles = ecr.create_roles(stack, r, prefix="ecr-wave")
        host = stack.aws.registry_host
        namespaces = [f"ecr-wave-{i:05d}" for i in range(n)]
        async with lab.admin_client(stack) as client:
            await lab.create_namespaces(client, namespaces)
            await lab.create_pull_secrets(
                client, namespaces, [], also=lambda i: ecr.ask(lab.identity_for(i, roles), host)
            )
        lab.progress(f"{n} namespaces and Secrets created")
        role_of = {ns: lab.identity_for(i, roles) for i, ns in enumerate(namespaces)}
        book = ecr.PasswordBook(stack.aws, lifetime=lifetime)
        async with SecretWatch(stack, namespaces=namespaces, read=book.reader(host)) as watch:
            checks = ExpiryChecks(watch)
            process = ecr.controller(
                stack, name="ecr-wave", workers=sizes.workers, **CONTROLLER_ENV
            )
            wave = await follow_wave(
                stack,
                watch,
                namespaces,
                process,
                checks,
                sizes=sizes,
                observe_seconds=observe_seconds,
            )
            counted = ecr.calls(stack)
            # Kept for the record, as the refresh wave keeps it.
            result.logs["controller"] = process.logs()
        await asyncio.sleep(lab.AUDIT_FLUSH)  # the audit log is written in batches
        requests = lab.audited_requests(
            stack.control_plane.audit_log,
            user=lab.CONTROLLER_USER,
            since=wave.start_wall,
            until=wave.end_wall,
        )

    analyse(
        result,
        history=wave.history,
        identity_of=role_of,
        counts=counted["ecr"],
        checks=checks,
        start=wave.start,
        start_wall=wave.start_wall,
        lifetime=lifetime,
        identities=r,
        sizes=sizes,
        credential="ECR password",
        identity="role",
    )
    wave_figures(result, wave, observe_seconds=observe_seconds)
    _aws_figures(result, counted, book=book, requests=requests, roles=r, sizes=sizes)
    return result


def _aws_figures(
    result: ScenarioResult,
    counted: ecr.Calls,
    *,
    book: ecr.PasswordBook,
    requests: list[lab.AuditedRequest],
    roles: int,
    sizes: Sizes,
) -> None:
    figures = result.figures
    calls = ecr.calls_figures(counted)
    lifetimes = sizes.wave_lifetimes
    sts_ok = sum(c["ok"] for c in counted["sts"].values())
    ecr_ok = sum(c["ok"] for c in counted["ecr"].values())
    writes = Counter(f"{r.verb} {r.resource}" for r in requests)
    secret_writes = writes["update secrets"] + writes["patch secrets"]
    n = figures["secrets"]
    figures.update(
        provider="ecr",
        roles=roles,
        **calls,
        exchanges_per_role_per_lifetime=round(calls["ecr_calls"] / roles / lifetimes, 3),
        ledger_reads=book.reads,
        unknown_passwords=book.unknown,
        controller_requests=lab.requests_by_kind(requests),
        controller_secret_writes=secret_writes,
        controller_secret_writes_per_secret=round(secret_writes / n, 2),
    )
    result.targets.append(
        Target(
            name="AWS calls and passwords",
            requirement="one AssumeRoleWithWebIdentity per GetAuthorizationToken, none failed; "
            "every password seen issued by the stand-in",
            measured=(
                f"{calls['sts_calls']} AssumeRoleWithWebIdentity, {calls['ecr_calls']} "
                f"GetAuthorizationToken ({calls['aws_call_errors']} failed; "
                f"{figures['exchanges_per_role_per_lifetime']} per role per lifetime of "
                f"{figures['token_lifetime']} s); {book.unknown} passwords not issued by it; "
                f"{secret_writes} Secret writes ({figures['token_writes']} new passwords seen)"
            ),
            passed=(
                sts_ok == ecr_ok
                and calls["sts_calls"] == calls["ecr_calls"]
                and calls["aws_call_errors"] == 0
                and book.unknown == 0
            ),
        )
    )
