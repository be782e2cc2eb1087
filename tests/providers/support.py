"""One harness per registry provider, so that every provider runs the same contract suite.

A `Contract` holds a provider wired to its stand-in (Chainguard: the HTTP token service of
`tests.tokens.fakes`; ECR: STS and ECR of `tests.providers.aws`; Google: STS and IAM
Credentials of `tests.providers.gcp`; fake: in-process), what a Secret would ask of it, and
the two ways its exchange can fail: one that waiting may mend, one that it will not. Adding a
provider to the suite is one more `Contract` in `CONTRACTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import jwt
import pytest

from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.providers import ProviderSpec, Want
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.providers.acr.exchange import AcrExchange
from pull_secret_updater.providers.acr.spec import CLIENT_ID as ACR_CLIENT_ID
from pull_secret_updater.providers.acr.spec import REGISTRY as ACR_REGISTRY
from pull_secret_updater.providers.acr.spec import TENANT_ID as ACR_TENANT_ID
from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.providers.chainguard.spec import IDENTITY as CHAINGUARD_IDENTITY
from pull_secret_updater.providers.ecr.exchange import EcrExchange
from pull_secret_updater.providers.ecr.spec import REGISTRIES as ECR_REGISTRIES
from pull_secret_updater.providers.ecr.spec import ROLE_ARN as ECR_ROLE_ARN
from pull_secret_updater.providers.fake.exchange import FakeProvider
from pull_secret_updater.providers.fake.spec import IDENTITY as FAKE_IDENTITY
from pull_secret_updater.providers.fake.spec import FakeSpec
from pull_secret_updater.providers.gar.exchange import GarExchange
from pull_secret_updater.providers.gar.spec import REGISTRIES as GAR_REGISTRIES
from pull_secret_updater.providers.gar.spec import SERVICE_ACCOUNT as GAR_SERVICE_ACCOUNT
from pull_secret_updater.providers.gar.spec import WORKLOAD_IDENTITY_PROVIDER as GAR_PROVIDER
from pull_secret_updater.tokens import ExchangeError, Subject, TokenCache, TokenSourceError
from pull_secret_updater.tokens.provider import TokenProvider
from tests.fakes import REGISTRY, FakeClock
from tests.providers import gcp
from tests.providers.aws import HOST, ROLE, FakeAws
from tests.providers.azure import CLIENT, TENANT, FakeAzure
from tests.providers.azure import REGISTRY as AZURE_REGISTRY
from tests.providers.gcp import FakeGoogle, api_error
from tests.tokens.fakes import (
    EXCHANGE_PATH,
    IDENTITY,
    ISSUER,
    OWN,
    SA_TOKEN,
    FakeTokenService,
    SigningKey,
    SubjectTokenMap,
    claims,
)

TEAM_A = Subject(namespace="team-a", service_account="pull-secret-updater")
TEAM_B = Subject(namespace="team-b", service_account="pull-secret-updater")
SCHEDULE = Schedule(fraction=0.5, jitter=0.0, margin=60)


@dataclass
class FlakyTokens:
    """Kubernetes tokens per subject, that can be made to fail."""

    tokens: SubjectTokenMap = field(default_factory=SubjectTokenMap)
    error: TokenSourceError | None = None

    async def get(self, subject: Subject) -> str:
        if self.error is not None:
            raise self.error
        return await self.tokens.get(subject)


@dataclass
class Contract:
    """A provider under the contract suite (see the module docstring)."""

    name: str
    provider: TokenProvider
    clock: FakeClock
    annotations: dict[str, str]
    #: The credential's lifetime the stand-in gives.
    lifetime: float
    #: Make the next exchanges fail: retryable (waiting may mend it) or not.
    fail: Callable[[bool], None]
    #: Credentials shaped like the provider's that it never issued to us.
    planted: Callable[[], list[str]]
    #: Everything secret the exchange handled, which no message may contain.
    secrets: list[str] = field(default_factory=lambda: [SA_TOKEN])
    #: Secrets the exchange handled that exist only once it ran (an AWS session's keys).
    handled: Callable[[], list[str]] = list
    subjects: FlakyTokens = field(default_factory=FlakyTokens)

    @property
    def want(self) -> Want:
        want = self.provider.spec.wants(self.annotations)
        assert want is not None
        return want

    def cache(self) -> TokenCache:
        return TokenCache({self.name: self.provider}, schedule=SCHEDULE, clock=self.clock)


def chainguard() -> Contract:
    clock = FakeClock()
    service = FakeTokenService(clock=clock, lifetime=1800)
    subjects = FlakyTokens(tokens=SubjectTokenMap({OWN: SA_TOKEN, TEAM_A: SA_TOKEN}))
    provider = ChainguardSTS(
        sa_tokens=subjects,
        issuer=ISSUER,
        audience=REGISTRY,
        clock=clock,
        transport=service.transport(),
    )

    def fail(retryable: bool) -> None:
        service.failing[EXCHANGE_PATH] = 503 if retryable else 403

    def planted() -> list[str]:
        # A token with every claim right, signed by a key the service does not publish; and a
        # token-shaped string that is no token at all.
        impostor = SigningKey(kid="key-1")  # the published key's id, other key material
        forged = impostor.sign(claims(identity=IDENTITY, iat=clock.now, lifetime=1800))
        return [forged, "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"]

    return Contract(
        name="chainguard",
        provider=provider,
        clock=clock,
        annotations={CHAINGUARD_IDENTITY: IDENTITY},
        lifetime=1800,
        fail=fail,
        planted=planted,
        subjects=subjects,
    )


def fake() -> Contract:
    clock = FakeClock()
    subjects = FlakyTokens(tokens=SubjectTokenMap({OWN: SA_TOKEN, TEAM_A: SA_TOKEN}))
    provider = FakeProvider(spec=FakeSpec(), sa_tokens=subjects, lifetime=1800, clock=clock)

    def fail(retryable: bool) -> None:
        subjects.error = TokenSourceError(
            "TokenRequest for ServiceAccount team-a/pull-secret-updater failed: 503"
            if retryable
            else "TokenRequest for ServiceAccount team-a/pull-secret-updater failed: 403",
            retryable=retryable,
            status=503 if retryable else 403,
        )

    def planted() -> list[str]:
        return ["fake.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "fake."]

    return Contract(
        name="fake",
        provider=provider,
        clock=clock,
        annotations={FAKE_IDENTITY: "team-a/puller"},
        lifetime=1800,
        fail=fail,
        planted=planted,
        subjects=subjects,
    )


def ecr() -> Contract:
    clock = FakeClock()
    aws = FakeAws(clock=clock, roles={ROLE: SA_TOKEN}, lifetime=1800)
    subjects = FlakyTokens(tokens=SubjectTokenMap({OWN: SA_TOKEN, TEAM_A: SA_TOKEN}))
    provider = EcrExchange(sa_tokens=subjects, clock=clock, transport=aws.transport())

    def fail(retryable: bool) -> None:
        code = "ThrottlingException" if retryable else "AccessDeniedException"
        aws.failing["ecr"] = (400, b'{"__type": "%s", "message": "no"}' % code.encode(), {})

    def planted() -> list[str]:
        # ECR-password-shaped strings this process never obtained.
        return ["ecr." + "A" * 64, "eyJwYXlsb2FkIjoiIn0="]

    def handled() -> list[str]:
        sessions = aws.sessions.values()
        return [key for s in sessions for key in (s.secret_key, s.session_token)]

    return Contract(
        name="ecr",
        provider=provider,
        clock=clock,
        annotations={ECR_ROLE_ARN: ROLE, ECR_REGISTRIES: HOST},
        lifetime=1800,
        fail=fail,
        planted=planted,
        subjects=subjects,
        handled=handled,
    )


def gar() -> Contract:
    clock = FakeClock()
    google = FakeGoogle(
        clock=clock,
        providers={gcp.PROVIDER: SA_TOKEN},
        bindings={gcp.SERVICE_ACCOUNT: {gcp.PROVIDER.rsplit("/providers/", 1)[0]}},
    )
    subjects = FlakyTokens(tokens=SubjectTokenMap({OWN: SA_TOKEN, TEAM_A: SA_TOKEN}))
    provider = GarExchange(sa_tokens=subjects, clock=clock, transport=google.transport())

    def fail(retryable: bool) -> None:
        answer = (
            api_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")
            if retryable
            else api_error(403, "PERMISSION_DENIED", "Permission denied")
        )
        google.failing["iam"] = (answer.status_code, answer.content, {})

    def planted() -> list[str]:
        # Access-token-shaped strings this process never obtained.
        return ["ya29.c." + "A" * 64, "ya29.d.planted"]

    return Contract(
        name="gar",
        provider=provider,
        clock=clock,
        annotations={
            GAR_PROVIDER: gcp.PROVIDER,
            GAR_SERVICE_ACCOUNT: gcp.SERVICE_ACCOUNT,
            GAR_REGISTRIES: gcp.HOST,
        },
        lifetime=3600,
        fail=fail,
        planted=planted,
        subjects=subjects,
        handled=lambda: list(google.federated),
    )


def acr() -> Contract:
    clock = FakeClock()
    azure = FakeAzure(
        clock=clock,
        apps={(TENANT, CLIENT): SA_TOKEN},
        pullers={(CLIENT, AZURE_REGISTRY)},
        lifetime=1800,
    )
    subjects = FlakyTokens(tokens=SubjectTokenMap({OWN: SA_TOKEN, TEAM_A: SA_TOKEN}))
    provider = AcrExchange(sa_tokens=subjects, clock=clock, transport=azure.transport())

    def fail(retryable: bool) -> None:
        if retryable:
            azure.failing["entra"] = (429, b'{"error": "temporarily_unavailable"}', {})
        else:
            azure.failing["acr"] = (401, b'{"errors": [{"code": "UNAUTHORIZED"}]}', {})

    def planted() -> list[str]:
        # A refresh-token-shaped JWT with every claim right that the registry never issued
        # to us, and a string that is no token at all.
        forged = jwt.encode(
            {"aud": AZURE_REGISTRY, "exp": int(clock.now + 1800), "sub": CLIENT}, "k" * 32
        )
        return [forged, "refresh." + "A" * 64]

    def handled() -> list[str]:
        return list(azure.access_tokens)

    return Contract(
        name="acr",
        provider=provider,
        clock=clock,
        annotations={ACR_TENANT_ID: TENANT, ACR_CLIENT_ID: CLIENT, ACR_REGISTRY: AZURE_REGISTRY},
        lifetime=1800,
        fail=fail,
        planted=planted,
        subjects=subjects,
        handled=handled,
    )


CONTRACTS = {"acr": acr, "chainguard": chainguard, "ecr": ecr, "fake": fake, "gar": gar}


def refusal(spec: ProviderSpec, annotations: Mapping[str, str]) -> str:
    """The message with which `spec` refuses `annotations` (a `BadInput`, or the test fails)."""
    with pytest.raises(BadInput) as caught:
        spec.wants(annotations)
    return caught.value.message


async def outcome(exchange: TokenProvider, want: Want | None) -> Credential | ExchangeError:
    """What `exchange` answers for `want` asked by the controller's own ServiceAccount: the
    credential, or the ExchangeError it raised. The exchange is closed after."""
    assert want is not None
    try:
        return await exchange.issue(want=want, subject=OWN)
    except ExchangeError as e:
        return e
    finally:
        await exchange.aclose()
