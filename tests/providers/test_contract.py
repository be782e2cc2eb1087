"""The contract every registry provider keeps, run against each (see `support.CONTRACTS`).

A provider exchanges for what a Secret's annotations ask, states the answer as a `Credential`
whose times come from the exchange (or a verified token), lets the refresh follow that expiry,
never trusts a credential it did not issue to this process, maps its failures to retryable or
not, and never lets a secret into a message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pull_secret_updater.core.decision import Fill, Part, Untrusted, decide
from pull_secret_updater.core.dockerconfig import parse_docker_config, with_entries
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.providers import Want, filled_identity_key
from pull_secret_updater.tokens import ExchangeError
from pull_secret_updater.tokens.trust import look_at
from tests.fakes import NOW
from tests.providers.support import SCHEDULE, TEAM_A, TEAM_B, Contract
from tests.tokens.fakes import OWN, everything_printed

REPO = Path(__file__).resolve().parents[2]


async def test_an_exchange_gives_a_credential_of_what_the_secret_asks(contract: Contract) -> None:
    want = contract.want
    credential = await contract.provider.issue(want=want, subject=OWN)
    spec = contract.provider.spec
    assert (credential.provider, credential.identity) == (spec.name, want.identity)
    assert credential.registries == want.registries
    assert credential.username == spec.username
    assert credential.token.isascii()
    assert credential.token.isprintable()
    assert (credential.issued_at, credential.expires_at) == (NOW, NOW + contract.lifetime)
    assert credential.token not in repr(credential)


async def test_what_is_written_reads_back_as_the_same_credential(contract: Contract) -> None:
    want = contract.want
    credential = await contract.provider.issue(want=want, subject=OWN)
    document = with_entries(
        parse_docker_config(b'{"auths": {"ghcr.io": {"auth": "dTpw"}}}'),
        {host: (credential.username, credential.token) for host in want.registries},
    )
    config = parse_docker_config(document)
    for host in want.registries:
        entry = config.entry(host)
        assert entry is not None
        assert (entry.username, entry.password) == (credential.username, credential.token)
    assert config.entry("ghcr.io") is not None, "other registries' entries are kept"


async def test_the_refresh_follows_the_credentials_own_expiry(contract: Contract) -> None:
    cache = contract.cache()
    want = contract.want
    first = await cache.get(want=want, subject=OWN)
    due = SCHEDULE.refresh_at(
        token=first.token, issued_at=first.issued_at, expires_at=first.expires_at
    )
    assert due == NOW + contract.lifetime / 2
    contract.clock.now = due - 1
    assert await cache.get(want=want, subject=OWN) == first, "shared until due"
    contract.clock.now = due
    second = await cache.get(want=want, subject=OWN)
    assert second.token != first.token
    assert second.expires_at == due + contract.lifetime
    assert cache.exchanges == {want.identity: 2}


async def test_a_credential_it_issued_to_this_process_is_trusted_and_waits(
    contract: Contract,
) -> None:
    cache = contract.cache()
    want = contract.want
    issued = await cache.get(want=want, subject=OWN)
    verdict = await look_at(
        issued.token, want=want, subject=OWN, provider=contract.provider, cache=cache
    )
    assert verdict == issued
    decision = decide(Part(want=want, current=issued.token), verdict=verdict, now=NOW + 1,
                      schedule=SCHEDULE)  # fmt: skip
    assert not isinstance(decision, Fill)


async def test_a_planted_credential_is_never_trusted_and_is_replaced(contract: Contract) -> None:
    cache = contract.cache()
    want = contract.want
    await cache.get(want=want, subject=OWN)  # the cache holds a genuine one meanwhile
    for planted in contract.planted():
        verdict = await look_at(
            planted, want=want, subject=OWN, provider=contract.provider, cache=cache
        )
        assert isinstance(verdict, Untrusted)
        assert planted not in verdict.why
        decision = decide(Part(want=want, current=planted), verdict=verdict, now=NOW,
                          schedule=SCHEDULE)  # fmt: skip
        assert isinstance(decision, Fill)
        assert (decision.reason, decision.stale) == ("token not trusted", None)


async def test_a_genuine_credential_of_another_namespace_is_not_trusted_in_this_one(
    contract: Contract,
) -> None:
    # Namespace-scoped identities: a credential obtained as team-a's ServiceAccount, copied
    # into a team-b Secret of the same identity, must not vouch for team-b. A verifiable
    # provider's token does verify (its identity is the same, and team-b would be refused at
    # the exchange if the identity did not trust it); an unverifiable one is simply unknown.
    cache = contract.cache()
    want = contract.want
    team_a = await cache.get(want=want, subject=TEAM_A)
    verdict = await look_at(
        team_a.token, want=want, subject=TEAM_B, provider=contract.provider, cache=cache
    )
    if contract.provider.spec.verifiable:
        assert verdict == team_a
    else:
        assert isinstance(verdict, Untrusted)


@pytest.mark.parametrize("retryable", [True, False], ids=["retryable", "not retryable"])
async def test_failures_are_mapped_to_retryable_or_not_and_hold_no_secret(
    contract: Contract, retryable: bool
) -> None:
    cache = contract.cache()
    issued = await cache.get(want=contract.want, subject=OWN)
    contract.fail(retryable)
    with pytest.raises(ExchangeError) as caught:
        await contract.provider.issue(want=contract.want, subject=OWN)
    error = caught.value
    assert error.retryable is retryable
    assert error.cause
    printed = everything_printed(error)
    for secret in [*contract.secrets, *contract.handled(), issued.token]:
        assert secret not in printed


def test_annotations_it_cannot_accept_are_bad_input_naming_the_annotation(
    contract: Contract,
) -> None:
    spec = contract.provider.spec
    for key in contract.annotations:
        assert key.startswith(spec.annotation_prefix)
        for value in ["", " x", "a b", "x" * 300, "eyJhbGciOiJFUzI1NiJ9\n"]:
            with pytest.raises(BadInput) as caught:
                spec.wants({**contract.annotations, key: value})
            assert key in caught.value.message
            if value.strip():
                assert value.strip() not in caught.value.message
    assert spec.wants({}) is None
    assert spec.wants({"other.example/identity": "x"}) is None


def test_what_a_secret_asks_is_one_want_with_the_providers_hosts(contract: Contract) -> None:
    want = contract.want
    assert isinstance(want, Want)
    assert want.provider == contract.provider.spec.name
    assert want.registries
    assert all("/" not in host for host in want.registries)


def test_its_annotations_are_where_the_admission_policy_looks_for_them(
    contract: Contract,
) -> None:
    # config/admission/policy.yaml tells a provider's annotations (which the controller may
    # never change) and its status (which it writes) by these patterns.
    spec = contract.provider.spec
    assert re.fullmatch(r"([a-z0-9-]+[.])?pull-secret-updater[.]chainguard[.]dev/",
                        spec.annotation_prefix)  # fmt: skip
    assert re.fullmatch(
        r"([a-z0-9-]+[.])?pull-secret-updater[.]chainguard[.]dev/filled-identity",
        filled_identity_key(spec),
    )
    policy = (REPO / "config" / "admission" / "policy.yaml").read_text()
    assert "^([a-z0-9-]+[.])?pull-secret-updater[.]chainguard[.]dev/" in policy
