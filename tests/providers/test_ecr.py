"""The ECR provider: what its annotations may ask, where the exchange goes, and how every
answer AWS (or something pretending to be AWS) can give is taken."""

from __future__ import annotations

import base64

import pytest

from pull_secret_updater.providers.ecr import MAX_LIFETIME
from pull_secret_updater.providers.ecr.exchange import EcrExchange, session_name
from pull_secret_updater.providers.ecr.section import EcrSection
from pull_secret_updater.providers.ecr.spec import REGISTRIES, ROLE_ARN, EcrSpec
from pull_secret_updater.providers.table import parse_section
from pull_secret_updater.tokens import ExchangeError, Subject
from tests.fakes import NOW, FakeClock
from tests.providers.aws import ACCOUNT, HOST, REGION, ROLE, FakeAws, ecr_error, sts_error
from tests.providers.support import outcome, refusal
from tests.tokens.fakes import OWN, SA_TOKEN, SubjectTokenMap, everything_printed

SPEC = EcrSpec()


def ask(role: str = ROLE, registries: str = HOST) -> dict[str, str]:
    return {ROLE_ARN: role, REGISTRIES: registries}


# -- what a Secret may ask ------------------------------------------------------------------


def test_a_role_and_its_registries_are_one_want_whose_scope_is_the_region() -> None:
    other = f"444455556666.dkr.ecr.{REGION}.amazonaws.com"
    want = SPEC.wants(ask(registries=f"{HOST}, {other.upper()},{HOST}"))
    assert want is not None
    assert (want.provider, want.identity, want.scope) == ("ecr", ROLE, REGION)
    assert want.registries == (HOST, other), "lower-cased, in order, without repeats"
    assert want.exchange_key == ("ecr", ROLE, REGION)


@pytest.mark.parametrize(
    "host",
    [
        "111122223333.dkr.ecr.us-east-1.amazonaws.com",
        "111122223333.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
        "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "111122223333.dkr-ecr.eu-central-1.on.aws",
        "111122223333.dkr.ecr.ap-southeast-5.amazonaws.com:5000",
    ],
)
def test_every_kind_of_ecr_host_is_accepted(host: str) -> None:
    region = next(part for part in host.split(".") if part.count("-") >= 2)
    partition = {"cn": "aws-cn", "us-gov": "aws-us-gov"}.get(
        "us-gov" if region.startswith("us-gov") else region[:2], "aws"
    )
    want = SPEC.wants(ask(role=f"arn:{partition}:iam::{ACCOUNT}:role/x", registries=host))
    assert want is not None
    assert want.scope == region


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        ({ROLE_ARN: ROLE}, f"{REGISTRIES} is missing"),
        ({REGISTRIES: HOST}, f"{ROLE_ARN} is missing"),
        (ask(role="arn:aws:iam::1111:role/x"), "not an IAM role ARN"),
        (ask(role=f"arn:aws:iam::{ACCOUNT}:user/x"), "not an IAM role ARN"),
        (ask(role=f"arn:aws:sts::{ACCOUNT}:assumed-role/x/y"), "not an IAM role ARN"),
        (ask(registries="ghcr.io"), "item 1 is not an ECR registry host"),
        (ask(registries=f"{HOST},evil.example"), "item 2 is not an ECR registry host"),
        (ask(registries=f"{HOST}.evil.example"), "item 1 is not an ECR registry host"),
        (ask(registries=f"{HOST},"), "empty item at position 2"),
        (
            ask(registries=f"{HOST},{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"),
            "in 2 regions (eu-west-1, us-east-1)",
        ),
        (
            ask(registries=f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            "outside the partition of region cn-north-1",
        ),
        (
            ask(registries=",".join(f"{n:012d}.dkr.ecr.{REGION}.amazonaws.com" for n in range(21))),
            "more than 20",
        ),
    ],
)
def test_what_cannot_be_right_is_refused_naming_the_problem(
    annotations: dict[str, str], problem: str
) -> None:
    assert problem in refusal(SPEC, annotations)


def test_neither_annotation_asks_nothing() -> None:
    assert SPEC.wants({"pull-secret-updater.chainguard.dev/identity": "x"}) is None


# -- where the exchange goes -----------------------------------------------------------------


def test_endpoints_follow_the_region_and_its_partition_unless_overridden() -> None:
    exchange = EcrExchange(sa_tokens=SubjectTokenMap())
    assert exchange.sts_url("eu-west-1") == "https://sts.eu-west-1.amazonaws.com"
    assert exchange.ecr_url("cn-north-1") == "https://api.ecr.cn-north-1.amazonaws.com.cn"
    overridden = EcrExchange(
        sa_tokens=SubjectTokenMap(),
        sts_endpoint="https://vpce-sts.example/",
        ecr_endpoint="https://vpce-ecr.example",
    )
    assert overridden.sts_url("eu-west-1") == "https://vpce-sts.example"
    assert overridden.ecr_url("eu-west-1") == "https://vpce-ecr.example"


def test_the_section_refuses_clear_text_and_odd_endpoints_and_durations() -> None:
    assert isinstance(parse_section({"kind": "ecr"}), EcrSection)
    cases: list[tuple[dict[str, object], str]] = [
        ({"sts_endpoint": "http://sts.example"}, "https://"),
        ({"ecr_endpoint": "https://ecr.example/a%20b"}, "the path may hold only"),
        ({"session_duration": 600}, "between 900 and 43200"),
    ]
    for bad, problem in cases:
        with pytest.raises(ValueError, match=problem):
            parse_section({"kind": "ecr", **bad})


def test_the_session_is_named_after_the_subject_within_aws_limits() -> None:
    assert session_name(OWN) == "pull-secret-updater@pull-secret-updater.controller"
    long = session_name(Subject(namespace="n" * 63, service_account="s" * 63))
    assert len(long) == 64
    assert set(session_name(Subject(namespace="a", service_account="b:c"))) <= set(
        "abcdefghijklmnopqrstuvwxyz-@._=,0123456789"
    )


# -- the answers -----------------------------------------------------------------------------


def exchange_against(aws: FakeAws, *, min_lifetime: float = 30.0) -> EcrExchange:
    return EcrExchange(
        sa_tokens=SubjectTokenMap(),
        clock=aws.clock,
        transport=aws.transport(),
        min_lifetime=min_lifetime,
    )


async def issue(aws: FakeAws, **kwargs: float) -> object:
    return await outcome(exchange_against(aws, **kwargs), SPEC.wants(ask()))


async def test_a_password_lives_as_long_as_ecr_says_and_is_written_as_aws() -> None:
    aws = FakeAws(clock=FakeClock(), roles={ROLE: SA_TOKEN}, lifetime=7200)
    credential = await issue(aws)
    assert not isinstance(credential, ExchangeError)
    assert credential.username == "AWS"  # type: ignore[attr-defined]
    assert credential.token == aws.issued[-1]  # type: ignore[attr-defined]
    assert credential.expires_at == NOW + 7200  # type: ignore[attr-defined]
    assert aws.calls == {"sts": 1, "ecr": 1}


async def test_an_expiry_beyond_ecrs_twelve_hours_is_not_believed() -> None:
    aws = FakeAws(clock=FakeClock(), roles={ROLE: SA_TOKEN}, lifetime=30 * 86400)
    credential = await issue(aws)
    assert credential.expires_at == NOW + MAX_LIFETIME  # type: ignore[attr-defined]


def token_of(password: str, user: str = "AWS") -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("document", "cause", "problem"),
    [
        ({}, "malformed", "without authorizationData"),
        ({"authorizationData": []}, "malformed", "without authorizationData"),
        ({"authorizationData": [{"expiresAt": NOW + 3600}]}, "malformed", "authorizationToken"),
        (
            {"authorizationData": [{"authorizationToken": "%%%", "expiresAt": NOW + 3600}]},
            "malformed",
            "not base64 of AWS:<password>",
        ),
        (
            {"authorizationData": [{"authorizationToken": token_of("p", "root")}]},
            "malformed",
            "not base64 of AWS:<password>",
        ),
        (
            {"authorizationData": [{"authorizationToken": token_of("p\x00")}]},
            "malformed",
            "not base64 of AWS:<password>",
        ),
        ({"authorizationData": [{"authorizationToken": token_of("p")}]}, "no_exp", "expiresAt"),
        (
            {"authorizationData": [{"authorizationToken": token_of("p"), "expiresAt": "soon"}]},
            "no_exp",
            "expiresAt",
        ),
        (
            {"authorizationData": [{"authorizationToken": token_of("p"), "expiresAt": 1420070400}]},
            "expired",
            "already expired",
        ),
        (
            {"authorizationData": [{"authorizationToken": token_of("p"), "expiresAt": NOW + 5}]},
            "short_lived",
            "less than the minimum of 30s",
        ),
    ],
)
async def test_an_answer_it_cannot_use_is_malformed_and_retryable(
    document: object, cause: str, problem: str
) -> None:
    aws = FakeAws(clock=FakeClock(), roles={ROLE: SA_TOKEN}, ecr_answer=document)
    error = await issue(aws)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == (cause, True)
    assert problem in str(error)
    assert "p\x00" not in everything_printed(error)


@pytest.mark.parametrize(
    ("service", "answer", "cause", "retryable", "words"),
    [
        ("sts", sts_error(400, "Throttling", "Rate exceeded"), "throttled", True, "Throttling"),
        ("sts", sts_error(503, "ServiceUnavailable", "down"), "unavailable", True, "503"),
        ("sts", sts_error(400, "IDPCommunicationError", "x"), "unavailable", True, "IDP"),
        (
            "sts",
            sts_error(400, "InvalidIdentityToken", "No OpenIDConnect provider found"),
            "unauthorized",
            False,
            "No OpenIDConnect provider found",
        ),
        (
            "sts",
            sts_error(400, "ExpiredTokenException", "expired"),
            "unauthorized",
            False,
            "Expired",
        ),
        ("sts", sts_error(403, "IDPRejectedClaim", "no"), "rejected", False, "IDPRejectedClaim"),
        ("ecr", ecr_error(400, "ThrottlingException", "Rate exceeded"), "throttled", True, "Rate"),
        ("ecr", ecr_error(500, "ServerException", "oops"), "unavailable", True, "ServerException"),
        (
            "ecr",
            ecr_error(400, "AccessDeniedException", "not allowed"),
            "rejected",
            False,
            "Access",
        ),
    ],
)
async def test_aws_errors_keep_their_code_and_message_and_say_whether_to_retry(
    service: str, answer: object, cause: str, retryable: bool, words: str
) -> None:
    import httpx2

    assert isinstance(answer, httpx2.Response)
    aws = FakeAws(clock=FakeClock(), roles={ROLE: SA_TOKEN})
    aws.failing[service] = (answer.status_code, answer.content, {"Retry-After": "7"})
    error = await issue(aws)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == (cause, retryable)
    assert words in str(error)
    assert str(error).startswith("AWS STS answered" if service == "sts" else "Amazon ECR answered")
    if retryable:
        assert error.retry_after == 7


async def test_a_trust_policy_mismatch_says_access_denied_and_nothing_of_the_token() -> None:
    aws = FakeAws(clock=FakeClock(), roles={ROLE: "another subject's token"})
    error = await issue(aws)
    assert isinstance(error, ExchangeError)
    assert not error.retryable
    assert "AccessDenied" in str(error)
    assert SA_TOKEN not in everything_printed(error)


async def test_a_message_echoing_what_was_sent_is_scrubbed() -> None:
    aws = FakeAws(clock=FakeClock(), roles={ROLE: SA_TOKEN})
    aws.failing["sts"] = (
        400,
        sts_error(400, "InvalidIdentityToken", f"bad token {SA_TOKEN}").content,
        {},
    )
    error = await issue(aws)
    assert SA_TOKEN not in everything_printed(error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b"<AssumeRoleWithWebIdentityResponse><Credentials><AccessKeyId>A</AccessKeyId>"
        b"</Credentials></AssumeRoleWithWebIdentityResponse>",
    ],
    ids=["not xml", "a DTD", "no secret key"],
)
async def test_an_sts_answer_without_usable_credentials_is_malformed(body: bytes) -> None:
    aws = FakeAws(clock=FakeClock(), roles={ROLE: SA_TOKEN})
    aws.failing["sts"] = (200, body, {})
    error = await issue(aws)
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == ("malformed", True)
    assert aws.calls["ecr"] == 0
