"""The ACR provider: what its annotations may ask, where the exchange goes, and how every
answer Entra ID and the registry (or something pretending to be them) can give is taken."""

from __future__ import annotations

import httpx2
import jwt
import pytest

from pull_secret_updater.core.redaction import REDACTED
from pull_secret_updater.providers.acr import MAX_LIFETIME, SCOPE, USERNAME
from pull_secret_updater.providers.acr.exchange import AcrExchange
from pull_secret_updater.providers.acr.section import AcrSection
from pull_secret_updater.providers.acr.spec import CLIENT_ID, REGISTRY, TENANT_ID, AcrSpec
from pull_secret_updater.providers.table import parse_section
from pull_secret_updater.tokens import ExchangeError
from tests.fakes import NOW, FakeClock
from tests.providers.azure import CLIENT, IDENTITY, TENANT, FakeAzure, acr_error, entra_error
from tests.providers.azure import REGISTRY as HOST
from tests.providers.support import outcome, refusal
from tests.tokens.fakes import SA_TOKEN, SubjectTokenMap, everything_printed

SPEC = AcrSpec()


def ask(tenant: str = TENANT, client: str = CLIENT, registry: str = HOST) -> dict[str, str]:
    return {TENANT_ID: tenant, CLIENT_ID: client, REGISTRY: registry}


# -- what a Secret may ask ------------------------------------------------------------------


def test_an_app_and_its_registry_are_one_want_scoped_to_that_registry() -> None:
    want = SPEC.wants(ask(client=CLIENT.upper(), registry="Pullers.AzureCR.io"))
    assert want is not None
    assert (want.provider, want.identity, want.scope) == ("acr", IDENTITY, HOST)
    assert want.registries == (HOST,)
    assert want.exchange_key == ("acr", IDENTITY, HOST)


def test_each_registry_is_its_own_exchange() -> None:
    one, other = SPEC.wants(ask()), SPEC.wants(ask(registry="others.azurecr.io"))
    assert one is not None
    assert other is not None
    assert one.exchange_key != other.exchange_key


@pytest.mark.parametrize(
    "host",
    ["pullers.azurecr.io", "pullers.azurecr.cn", "pullers.azurecr.us", "abcde.azurecr.io:5443"],
)
def test_public_and_sovereign_cloud_registries_are_accepted(host: str) -> None:
    want = SPEC.wants(ask(registry=host))
    assert want is not None
    assert want.registries == (host,)


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        ({TENANT_ID: TENANT, CLIENT_ID: CLIENT}, f"{REGISTRY} is missing"),
        ({REGISTRY: HOST}, f"{TENANT_ID} and {CLIENT_ID} are missing"),
        (ask(tenant="contoso.onmicrosoft.com"), "contains 'o'"),
        (ask(client="1111-2222"), "is not a GUID"),
        (ask(client="00000000-0000-0000-0000-000000000000"), "is not a GUID"),
        (ask(registry="ghcr.io"), "not an Azure Container Registry host"),
        (ask(registry="pullers.azurecr.io.evil.example"), "not an Azure Container Registry host"),
        (ask(registry="abc.azurecr.io"), "not an Azure Container Registry host"),
        (ask(registry=f"{HOST},others.azurecr.io"), "contains ','"),
        (ask(registry="https://pullers.azurecr.io"), "contains '/'"),
    ],
)
def test_what_cannot_be_right_is_refused_naming_the_problem(
    annotations: dict[str, str], problem: str
) -> None:
    assert problem in refusal(SPEC, annotations)


def test_none_of_its_annotations_asks_nothing() -> None:
    assert SPEC.wants({"pull-secret-updater.chainguard.dev/identity": "x"}) is None


# -- where the exchange goes -----------------------------------------------------------------


def test_endpoints_are_entras_and_the_registrys_unless_overridden() -> None:
    exchange = AcrExchange(sa_tokens=SubjectTokenMap())
    assert exchange.token_url(TENANT) == (
        f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
    )
    assert exchange.exchange_url(HOST) == f"https://{HOST}/oauth2/exchange"
    overridden = AcrExchange(
        sa_tokens=SubjectTokenMap(),
        authority_host="https://login.microsoftonline.us/",
        acr_endpoint="https://acr.local:8443",
    )
    assert overridden.token_url(TENANT).startswith(f"https://login.microsoftonline.us/{TENANT}/")
    assert overridden.exchange_url(HOST) == "https://acr.local:8443/oauth2/exchange"


def test_the_section_refuses_clear_text_endpoints() -> None:
    section = parse_section({"kind": "acr", "authority_host": "login.microsoftonline.us"})
    assert isinstance(section, AcrSection)
    assert section.authority_host == "https://login.microsoftonline.us"
    assert section.sa_audience == "api://AzureADTokenExchange"
    for bad in ({"authority_host": "http://login.example"}, {"acr_endpoint": "http://acr.x"}):
        with pytest.raises(ValueError, match="https://"):
            parse_section({"kind": "acr", **bad})


# -- the answers -----------------------------------------------------------------------------


def azure(**kwargs: object) -> FakeAzure:
    return FakeAzure(
        clock=FakeClock(),
        apps={(TENANT, CLIENT): SA_TOKEN},
        pullers={(CLIENT, HOST)},
        **kwargs,  # type: ignore[arg-type]
    )


async def issue(fake: FakeAzure, *, min_lifetime: float = 30.0, registry: str = HOST) -> object:
    exchange = AcrExchange(
        sa_tokens=SubjectTokenMap(),
        clock=fake.clock,
        transport=fake.transport(),
        min_lifetime=min_lifetime,
    )
    return await outcome(exchange, SPEC.wants(ask(registry=registry)))


async def test_a_refresh_token_lives_until_its_exp_and_is_written_with_the_nil_user() -> None:
    fake = azure(lifetime=7200)
    credential = await issue(fake)
    assert not isinstance(credential, ExchangeError)
    assert credential.username == USERNAME == "00000000-0000-0000-0000-000000000000"  # type: ignore[attr-defined]
    assert credential.token == fake.issued[-1]  # type: ignore[attr-defined]
    assert credential.expires_at == NOW + 7200  # type: ignore[attr-defined]
    assert fake.calls == {"entra": 1, "acr": 1}


def test_the_scope_is_the_registries_own_audience_never_arms() -> None:
    assert SCOPE == "https://containerregistry.azure.net/.default"
    assert "management" not in SCOPE


async def test_an_exp_beyond_acrs_three_hours_is_not_believed() -> None:
    credential = await issue(azure(lifetime=30 * 86400))
    assert credential.expires_at == NOW + MAX_LIFETIME  # type: ignore[attr-defined]


async def test_an_app_without_acr_pull_on_the_registry_is_refused_by_the_registry() -> None:
    error = await issue(azure(), registry="others.azurecr.io")
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == ("unauthorized", False)
    assert str(error).startswith("the registry others.azurecr.io answered 401 UNAUTHORIZED")


def refresh(**claims: object) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


@pytest.mark.parametrize(
    ("document", "cause", "problem"),
    [
        ({}, "malformed", "without a refresh_token"),
        ({"refresh_token": ""}, "malformed", "without a refresh_token"),
        ({"refresh_token": "opaque"}, "no_exp", "expiry cannot be read"),
        ({"refresh_token": refresh(aud=HOST)}, "no_exp", "no exp claim"),
        ({"refresh_token": refresh(aud=HOST, exp="soon")}, "no_exp", "expiry cannot be read"),
        (
            {"refresh_token": refresh(aud="others.azurecr.io", exp=NOW + 3600)},
            "malformed",
            "for another registry",
        ),
        ({"refresh_token": refresh(aud=HOST, exp=1420070400)}, "expired", "already expired"),
        ({"refresh_token": refresh(aud=HOST, exp=NOW + 5)}, "short_lived", "minimum of 30s"),
        ([], "malformed", "not a JSON object"),
    ],
)
async def test_an_answer_it_cannot_use_is_malformed_and_retryable(
    document: object, cause: str, problem: str
) -> None:
    error = await issue(azure(acr_answer=document))
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == (cause, True)
    assert problem in str(error)


@pytest.mark.parametrize(
    ("service", "answer", "cause", "retryable", "words"),
    [
        (
            "entra",
            entra_error(429, "temporarily_unavailable", 50196, "Too many requests."),
            "throttled",
            True,
            "429 temporarily_unavailable AADSTS50196: Too many requests.",
        ),
        (
            "entra",
            entra_error(503, "temporarily_unavailable", 90033, "A transient error."),
            "unavailable",
            True,
            "AADSTS90033",
        ),
        (
            "entra",
            entra_error(400, "invalid_request", 90002, "Tenant 'x' not found."),
            "not_found",
            False,
            "400 invalid_request AADSTS90002: Tenant 'x' not found.",
        ),
        (
            "entra",
            entra_error(
                401,
                "invalid_client",
                700211,
                "No matching federated identity record "
                "found for presented assertion issuer 'https://k8s.example'.",
            ),
            "unauthorized",
            False,
            "invalid_client AADSTS700211: No matching federated identity record",
        ),
        ("acr", acr_error(429, "TOOMANYREQUESTS", "slow down"), "throttled", True, "slow down"),
        ("acr", acr_error(500, "UNKNOWN", "oops"), "unavailable", True, "UNKNOWN"),
        ("acr", acr_error(403, "DENIED", "network rules"), "rejected", False, "DENIED"),
        ("acr", acr_error(404, "NAME_UNKNOWN", "no such registry"), "not_found", False, "404"),
    ],
)
async def test_errors_keep_entras_code_and_description_and_say_whether_to_retry(
    service: str, answer: httpx2.Response, cause: str, retryable: bool, words: str
) -> None:
    fake = azure()
    fake.failing[service] = (answer.status_code, answer.content, {"Retry-After": "7"})
    error = await issue(fake)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == (cause, retryable)
    assert words in str(error)
    assert "Trace ID" not in str(error)
    if retryable:
        assert error.retry_after == 7


async def test_no_federated_credential_for_the_subject_says_aadsts700213_and_nothing_secret() -> (
    None
):
    fake = FakeAzure(clock=FakeClock(), apps={(TENANT, CLIENT): "another subject's token"})
    error = await issue(fake)
    assert isinstance(error, ExchangeError)
    assert not error.retryable
    assert "Microsoft Entra ID answered 401 invalid_client AADSTS700213" in str(error)
    assert SA_TOKEN not in everything_printed(error)
    assert fake.calls["acr"] == 0


async def test_a_message_echoing_what_was_sent_is_scrubbed() -> None:
    fake = azure()
    fake.failing["entra"] = (
        400,
        entra_error(400, "invalid_request", 50027, f"Invalid JWT {SA_TOKEN}").content,
        {},
    )
    error = await issue(fake)
    assert SA_TOKEN not in everything_printed(error)  # type: ignore[arg-type]
    assert REDACTED in str(error)


async def test_an_entra_answer_without_an_access_token_is_malformed() -> None:
    fake = azure()
    fake.failing["entra"] = (200, b'{"token_type": "Bearer", "expires_in": 3599}', {})
    error = await issue(fake)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == ("malformed", True)
    assert fake.calls["acr"] == 0
