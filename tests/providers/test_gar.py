"""The Google provider: what its annotations may ask, what is sent to STS and IAM Credentials,
and how every answer Google (or something pretending to be Google) can give is taken."""

from __future__ import annotations

from pathlib import Path

import httpx2
import jwt
import pytest

from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.providers.base import BuildContext
from pull_secret_updater.providers.gar.exchange import GarExchange
from pull_secret_updater.providers.gar.section import GarSection
from pull_secret_updater.providers.gar.spec import (
    REGISTRIES,
    SERVICE_ACCOUNT,
    WORKLOAD_IDENTITY_PROVIDER,
    GarSpec,
)
from pull_secret_updater.providers.table import parse_section
from pull_secret_updater.tokens import ExchangeError
from pull_secret_updater.tokens.provider import SubjectTokenSource
from tests.fakes import NOW, FakeClock
from tests.providers.gcp import (
    HOST,
    PROVIDER,
    FakeGoogle,
    api_error,
    oauth_error,
)
from tests.providers.gcp import (
    SERVICE_ACCOUNT as EMAIL,
)
from tests.providers.support import outcome, refusal
from tests.tokens.fakes import OWN, SA_TOKEN, SubjectTokenMap, everything_printed

SPEC = GarSpec()
POOL = PROVIDER.rsplit("/providers/", 1)[0]


def ask(
    provider: str = PROVIDER, registries: str = HOST, account: str | None = None
) -> dict[str, str]:
    asked = {WORKLOAD_IDENTITY_PROVIDER: provider, REGISTRIES: registries}
    if account is not None:
        asked[SERVICE_ACCOUNT] = account
    return asked


# -- what a Secret may ask ------------------------------------------------------------------


def test_without_a_service_account_the_identity_is_the_pool_provider() -> None:
    want = SPEC.wants(ask(registries=f"{HOST}, GCR.io,{HOST}, us.gcr.io"))
    assert want is not None
    assert (want.provider, want.identity, want.scope) == ("gar", PROVIDER, "")
    assert want.registries == (HOST, "gcr.io", "us.gcr.io"), "lower-cased, without repeats"


def test_with_a_service_account_it_is_the_identity_and_the_provider_the_scope() -> None:
    want = SPEC.wants(ask(provider="//iam.googleapis.com/" + PROVIDER, account=EMAIL))
    assert want is not None
    assert (want.identity, want.scope) == (EMAIL, PROVIDER)


@pytest.mark.parametrize(
    "host",
    ["us-docker.pkg.dev", "europe-west4-docker.pkg.dev", "asia.gcr.io", "eu.gcr.io",
     "us-docker.pkg.dev:5000", "northamerica-northeast1-docker.pkg.dev"],
)  # fmt: skip
def test_every_kind_of_google_host_is_accepted(host: str) -> None:
    assert SPEC.wants(ask(registries=host)) is not None


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        ({REGISTRIES: HOST}, f"{WORKLOAD_IDENTITY_PROVIDER} is missing"),
        ({SERVICE_ACCOUNT: EMAIL}, f"{WORKLOAD_IDENTITY_PROVIDER} is missing"),
        ({WORKLOAD_IDENTITY_PROVIDER: PROVIDER}, f"{REGISTRIES} is missing"),
        (ask(provider=PROVIDER.replace("123456789012", "my-project")), "not a workload identity"),
        (ask(provider=PROVIDER.replace("global", "europe-west4")), "not a workload identity"),
        (ask(provider=PROVIDER.replace("cluster-pool", "gcp-pool")), "not a workload identity"),
        (ask(provider=PROVIDER + "/x"), "not a workload identity"),
        (ask(account="puller@example.com"), "not a Google service account"),
        (ask(registries="ghcr.io"), "item 1 is not a Google registry host"),
        (ask(registries=f"{HOST},docker.pkg.dev.evil.example"), "item 2 is not a Google"),
        (ask(registries="gcr.io.evil.example"), "item 1 is not a Google registry host"),
        (ask(registries="xx.gcr.io"), "item 1 is not a Google registry host"),
        (ask(registries=f"{HOST},"), "empty item at position 2"),
    ],
)
def test_what_cannot_be_right_is_refused_naming_the_problem(
    annotations: dict[str, str], problem: str
) -> None:
    assert problem in refusal(SPEC, annotations)


def test_an_audience_naming_a_provider_binds_secrets_to_it() -> None:
    bound = GarSpec(audience="https://iam.googleapis.com/" + PROVIDER)
    assert bound.wants(ask()) is not None
    other = PROVIDER.replace("providers/kube", "providers/other")
    with pytest.raises(BadInput, match="names another provider than the one"):
        bound.wants(ask(provider=other))
    assert GarSpec(audience="sts.googleapis.com").wants(ask(provider=other)) is not None


def test_the_section_refuses_clear_text_endpoints_and_audiences_naming_no_provider() -> None:
    section = parse_section({"kind": "gar"})
    assert isinstance(section, GarSection)
    assert section.sts_endpoint == "https://sts.googleapis.com"
    cases: list[tuple[dict[str, object], str]] = [
        ({"sts_endpoint": "http://sts.example"}, "https://"),
        ({"iamcredentials_endpoint": "http://iam.example"}, "https://"),
        ({"sa_audience": "https://iam.googleapis.com/projects/x"}, "names no workload identity"),
        ({"sa_audience": "a b"}, "without spaces"),
    ]
    for bad, problem in cases:
        with pytest.raises(ValueError, match=problem):
            parse_section({"kind": "gar", **bad})


# -- the answers -----------------------------------------------------------------------------


def google(**kwargs: object) -> FakeGoogle:
    return FakeGoogle(clock=FakeClock(), providers={PROVIDER: SA_TOKEN},
                      bindings={EMAIL: {POOL}}, **kwargs)  # type: ignore[arg-type]  # fmt: skip


async def issue(
    fake: FakeGoogle, *, account: str | None = EMAIL, sa_token: str = SA_TOKEN
) -> Credential | ExchangeError:
    exchange = GarExchange(
        sa_tokens=SubjectTokenMap({OWN: sa_token}), clock=fake.clock, transport=fake.transport()
    )
    return await outcome(exchange, SPEC.wants(ask(account=account)))


async def test_the_federated_token_itself_lives_as_long_as_sts_says() -> None:
    fake = google(lifetime=1200)
    credential = await issue(fake, account=None)
    assert isinstance(credential, Credential)
    assert credential.username == "oauth2accesstoken"
    assert credential.token == fake.issued[-1]
    assert credential.expires_at == NOW + 1200
    assert fake.calls == {"sts": 1, "iam": 0}


async def test_an_impersonated_token_lives_until_its_expire_time() -> None:
    fake = google()
    credential = await issue(fake)
    assert isinstance(credential, Credential)
    assert credential.token == fake.issued[-1]
    assert credential.token not in fake.federated, "the service account's, not the federated"
    assert credential.expires_at == NOW + 3600, "fractions of a second dropped"
    assert fake.calls == {"sts": 1, "iam": 1}


async def test_a_federated_token_does_not_outlive_the_kubernetes_token() -> None:
    short = jwt.encode({"sub": "x", "exp": int(NOW) + 700}, "k" * 32, algorithm="HS256")
    fake = FakeGoogle(clock=FakeClock(), providers={PROVIDER: short})
    credential = await issue(fake, account=None, sa_token=short)
    assert isinstance(credential, Credential)
    assert credential.expires_at == NOW + 700


async def test_lifetimes_beyond_an_hour_are_not_believed() -> None:
    fake = google()
    fake.answers["sts"] = {"access_token": "ya29.x", "token_type": "Bearer", "expires_in": 86400}
    credential = await issue(fake, account=None)
    assert isinstance(credential, Credential)
    assert credential.expires_at == NOW + 3600


@pytest.mark.parametrize(
    ("service", "document", "cause", "problem"),
    [
        ("sts", {"token_type": "Bearer", "expires_in": 3600}, "malformed", "without an access"),
        ("sts", {"access_token": "ya29.x"}, "no_exp", "expires_in"),
        ("sts", {"access_token": "ya29.x", "expires_in": "3600"}, "no_exp", "expires_in"),
        ("sts", {"access_token": "ya 29", "expires_in": 3600}, "malformed", "printable"),
        ("sts", {"access_token": "ya29.x", "expires_in": 5}, "short_lived", "minimum of 30s"),
        ("sts", {"access_token": "ya29.x", "expires_in": -1}, "expired", "already expired"),
        ("iam", {"accessToken": "ya29.x"}, "no_exp", "RFC 3339 expireTime"),
        ("iam", {"accessToken": "ya29.x", "expireTime": "tomorrow"}, "no_exp", "expireTime"),
        ("iam", {"accessToken": "ya29.x", "expireTime": "2015-01-01T00:00:00Z"}, "expired",
         "already expired"),
        ("iam", {"expireTime": "2099-01-01T00:00:00Z"}, "malformed", "without an accessToken"),
        ("iam", [1], "malformed", "not a JSON object"),
    ],
)  # fmt: skip
async def test_an_answer_it_cannot_use_is_malformed_and_retryable(
    service: str, document: object, cause: str, problem: str
) -> None:
    fake = google()
    fake.answers[service] = document
    error = await issue(fake)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == (cause, True)
    assert problem in str(error)


@pytest.mark.parametrize(
    ("service", "answer", "cause", "retryable", "words"),
    [
        ("sts", oauth_error(400, "invalid_grant", "The audience in ID Token does not match"),
         "unauthorized", False, "invalid_grant: The audience in ID Token"),
        ("sts", oauth_error(400, "invalid_target", "no such provider"), "not_found", False,
         "invalid_target"),
        ("sts", oauth_error(400, "unauthorized_client", "condition"), "unauthorized", False,
         "unauthorized_client"),
        ("sts", oauth_error(429, "rate_limit_exceeded", "slow down"), "throttled", True, "429"),
        ("sts", oauth_error(503, "temporarily_unavailable", "x"), "unavailable", True, "503"),
        ("iam", api_error(403, "PERMISSION_DENIED", "Permission denied"), "rejected", False,
         "PERMISSION_DENIED"),
        ("iam", api_error(404, "NOT_FOUND", "no such account"), "not_found", False, "NOT_FOUND"),
        ("iam", api_error(429, "RESOURCE_EXHAUSTED", "quota"), "throttled", True, "RESOURCE"),
        ("iam", api_error(503, "UNAVAILABLE", "down"), "unavailable", True, "UNAVAILABLE"),
    ],
)  # fmt: skip
async def test_google_errors_keep_their_code_and_message_and_say_whether_to_retry(
    service: str, answer: httpx2.Response, cause: str, retryable: bool, words: str
) -> None:
    fake = google()
    fake.failing[service] = (answer.status_code, answer.content, {"Retry-After": "7"})
    error = await issue(fake)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == (cause, retryable)
    assert words in str(error)
    assert str(error).startswith(
        "Google STS answered" if service == "sts" else "Google IAM Credentials answered"
    )
    if retryable:
        assert error.retry_after == 7


async def test_the_real_refusals_of_the_fake_are_reported_as_google_words_them() -> None:
    untrusted = FakeGoogle(clock=FakeClock(), providers={PROVIDER: "another token"})
    error = await issue(untrusted)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == ("unauthorized", False)
    elsewhere = "projects/1/locations/global/workloadIdentityPools/x"
    unbound = FakeGoogle(
        clock=FakeClock(), providers={PROVIDER: SA_TOKEN}, bindings={EMAIL: {elsewhere}}
    )
    error = await issue(unbound)
    assert isinstance(error, ExchangeError)
    assert "403 PERMISSION_DENIED" in str(error)
    assert unbound.calls == {"sts": 1, "iam": 1}


async def test_a_message_echoing_what_was_sent_is_scrubbed() -> None:
    fake = google()
    await issue(fake)
    federated = next(iter(fake.federated))
    body = api_error(403, "PERMISSION_DENIED", f"token {federated} and {SA_TOKEN} refused")
    fake.failing["iam"] = (403, body.content, {})
    fake.federated.clear()
    error = await issue(fake)
    printed = everything_printed(error)  # type: ignore[arg-type]
    assert "PERMISSION_DENIED" in printed
    assert SA_TOKEN not in printed
    for token in fake.federated:
        assert token not in printed


def test_endpoints_are_googles_unless_overridden() -> None:
    exchange = GarExchange(sa_tokens=SubjectTokenMap())
    assert "https://sts.googleapis.com" in repr(exchange)
    with pytest.raises(ValueError, match="https://"):
        GarExchange(sa_tokens=SubjectTokenMap(), sts_endpoint="http://sts.example")


async def test_the_section_asks_for_kubernetes_tokens_of_an_hour() -> None:
    # A federated token lives no longer than the Kubernetes token it came from.
    asked: list[tuple[str, int | None]] = []

    def tokens(
        *, audience: str, token_path: Path | None, expiration_seconds: int | None = None
    ) -> SubjectTokenSource:
        asked.append((audience, expiration_seconds))
        return SubjectTokenMap()

    section = parse_section(
        {"kind": "gar", "sa_audience": "https://iam.googleapis.com/" + PROVIDER}
    )
    exchange = section.build(BuildContext(subject_tokens=tokens, timeout=5, min_lifetime=30))
    await exchange.aclose()
    assert asked == [("https://iam.googleapis.com/" + PROVIDER, 3600)]
    with pytest.raises(BadInput, match="names another provider"):
        exchange.spec.wants(ask(provider=PROVIDER.replace("/kube", "/other")))
