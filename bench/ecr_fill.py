"""ECR cold fill: N empty Secrets, each asking for a cgr.dev token (one of M identities) and
an ECR password (one of R roles, for the AWS stand-in's registry), and a controller with both
providers that starts.

The cold fill's three rounds (`cold_fill`): the bare client writes both entries, a token and
a password minted beforehand, with the status annotations the controller writes for both
providers; the controller fills the emptied Secrets; the bare client again, and the ratio is
against the mean of the two. A Secret counts as filled when the watch sees both entries in it,
new ones (`read_both`). Reported besides the cold fill's figures: the token service's
exchanges (target M), the stand-in's AssumeRoleWithWebIdentity and GetAuthorizationToken
calls (target: one of each per role), and whether every Secret holds a valid cgr token and an
unexpired ECR password that the stand-in issued for the Secret's role.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import lightkube

from bench import cold_fill, ecr, lab
from bench.cold_fill import Baseline
from bench.observe import Reader, SecretWatch, Token, claims_of, token_of, verify_tokens
from bench.observe import registry_password as entry_password
from bench.results import ScenarioResult, Target
from bench.sizes import Sizes
from devstack.stack import LocalStack
from pull_secret_updater.providers.chainguard import spec as chainguard_spec
from pull_secret_updater.providers.ecr import USERNAME
from pull_secret_updater.providers.ecr import spec as ecr_spec

TITLE = "Cold fill, cgr.dev and ECR"


def pair(token: Token, password: str) -> Token:
    """A Secret's two credentials as one: the token's times, both names. (The password's
    expiry, 12 hours away, is checked against the stand-in's ledger after the fill.)"""
    return Token(exp=token.exp, iat=token.iat, jti=f"{token.jti}+{ecr.digest(password)}")


def read_both(registry: str, ecr_host: str) -> Reader:
    """Reads a Secret's token for `registry` and password for `ecr_host`; None unless both."""

    def read(secret: Mapping[str, Any]) -> Token | None:
        token = token_of(secret, registry)
        password = entry_password(secret, ecr_host)
        return None if token is None or password is None else pair(token, password)

    return read


def both_baseline(stack: LocalStack, identity: str, role: str) -> tuple[Baseline, str]:
    """A token of `identity` and a password of `role`, minted beforehand, in the entries and
    annotations the controller writes; and the password."""
    token = lab.exchange(stack, identity)
    claims = claims_of(token)
    assert claims is not None
    password, expires_at = ecr.mint_password(stack, role)
    data, annotations = cold_fill.baseline_patch(
        {stack.registry.host: ("_token", token), stack.aws.registry_host: (USERNAME, password)},
        filled={chainguard_spec.FILLED_IDENTITY: identity, ecr_spec.FILLED_IDENTITY: role},
        expires_at=min(claims.exp, expires_at),
    )
    return Baseline(data, annotations, pair(claims, password)), password


async def run(sizes: Sizes, stacks: lab.Stacks) -> ScenarioResult:
    result = ScenarioResult(name="ecr_fill", title=TITLE)
    n, m, r = sizes.fill_secrets, sizes.identities, sizes.roles
    async with stacks.stack() as stack:
        identities = lab.create_identities(stack, m, prefix="ecr-fill")
        roles = ecr.create_roles(stack, r, prefix="ecr-fill")
        host = stack.aws.registry_host
        namespaces = [f"ecr-fill-{i:05d}" for i in range(n)]
        async with lab.admin_client(stack) as client:
            started = time.monotonic()
            await lab.create_namespaces(client, namespaces)
            await lab.create_pull_secrets(
                client,
                namespaces,
                identities,
                also=lambda i: ecr.ask(lab.identity_for(i, roles), host),
            )
            result.figures["setup_seconds"] = round(time.monotonic() - started, 2)
            lab.progress(f"{n} namespaces and Secrets created")
            read = read_both(stack.registry.host, host)
            async with SecretWatch(
                stack, namespaces=namespaces, keep_history=False, read=read
            ) as watch:
                await measure(stack, client, watch, namespaces, identities, roles, sizes, result)
    return result


async def measure(
    stack: LocalStack,
    client: lightkube.AsyncClient,
    watch: SecretWatch,
    namespaces: list[str],
    identities: list[str],
    roles: list[str],
    sizes: Sizes,
    result: ScenarioResult,
) -> None:
    """The cold fill's three rounds over Secrets asking for both providers' entries (the
    i-th Secret for identity i mod M and role i mod R); figures, targets and notes to
    `result`."""
    n, m, r, workers = len(namespaces), len(identities), len(roles), sizes.workers
    result.figures.update(
        secrets=n, identities=m, roles=r, workers=workers, load_average=lab.load_average()
    )
    role_of = {ns: lab.identity_for(i, roles) for i, ns in enumerate(namespaces)}

    baseline, minted_password = both_baseline(stack, identities[0], roles[0])
    before = await cold_fill.baseline_round(
        stack, client, watch, namespaces, baseline, workers=workers
    )
    lab.progress(f"baseline: {before.seconds:.2f} s")
    await cold_fill.empty_secrets(stack, client, watch, namespaces)
    process = ecr.controller(stack, name="ecr-fill", workers=workers)
    fill = await cold_fill.controller_round(stack, watch, namespaces, process, baseline=baseline)
    tokens = await verify_tokens(stack, namespaces)
    book = ecr.PasswordBook(stack.aws)
    passwords = await ecr.verify_passwords(
        stack,
        namespaces,
        role_of,
        book=book,
        now=time.time(),
        exclude={minted_password},
    )
    # The baseline again, over the controller's credentials: brackets any drift in load.
    after = await cold_fill.baseline_round(
        stack, client, watch, namespaces, baseline, workers=workers
    )
    lab.progress(f"baseline again: {after.seconds:.2f} s")

    counts = fill.counts
    exchanges = lab.total_exchanges(counts)
    per_role = ecr.calls_of(fill.aws_calls)
    aws = ecr.calls_figures(per_role)
    one_each = all(
        per_role[api].get(role, {}) == {"ok": 1, "error": 0}
        for api in ("sts", "ecr")
        for role in roles
    )
    cold_fill.fill_figures(
        result,
        before=before,
        fill=fill,
        after=after,
        exchanged=dict(
            exchanges=exchanges,
            exchanges_by_identity={k: v["ok"] + v["error"] for k, v in counts.items()},
            exchange_errors=sum(c["error"] for c in counts.values()),
            **aws,
        ),
        checked=dict(
            valid_tokens=tokens.valid,
            token_problems=tokens.problems,
            valid_passwords=passwords.valid,
            password_problems=passwords.problems,
        ),
    )
    problems = {**tokens.problems, **{f"ECR: {k}": v for k, v in passwords.problems.items()}}
    result.targets = [
        cold_fill.fill_target(
            before=before,
            fill=fill,
            after=after,
            secrets=n,
            workers=workers,
            name="fill of both entries vs baseline",
        ),
        Target(
            name="Chainguard exchanges during the fill",
            requirement=f"exchanges == M ({m})",
            measured=f"{exchanges} exchanges for {n} Secrets",
            passed=exchanges == m,
        ),
        Target(
            name="ECR exchanges during the fill",
            requirement=f"one AssumeRoleWithWebIdentity and one GetAuthorizationToken per role "
            f"(R = {r})",
            measured=f"{aws['sts_calls']} AssumeRoleWithWebIdentity and {aws['ecr_calls']} "
            f"GetAuthorizationToken calls ({aws['aws_call_errors']} failed) for {n} Secrets",
            passed=one_each and aws["sts_calls"] == r and aws["ecr_calls"] == r,
        ),
        Target(
            name="credentials valid after the fill",
            requirement=f"all {n} Secrets hold a valid cgr token and an ECR password the "
            "stand-in issued for their role",
            measured=f"{tokens.valid} valid tokens, {passwords.valid} valid passwords"
            + (f", problems: {problems}" if problems else ""),
            passed=tokens.valid == n and passwords.valid == n,
        ),
    ]
    result.notes += cold_fill.fill_notes(result, before=before, fill=fill, after=after)
