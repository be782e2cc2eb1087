"""One exchange as the controller would do it: the outcome names the tokens, never shows them.

The token service is `tests.tokens.fakes.FakeTokenService` over HTTP: `check` fetches its
discovery document and keys, and trusts only a registry token signed with a published key.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx2
import jwt
import lightkube
import pytest

from pull_secret_updater import wiring
from pull_secret_updater.settings import Settings
from pull_secret_updater.tokens import Subject
from pull_secret_updater.tools.check import CheckOutcome, TokenFacts, describe_outcome, run_check
from pull_secret_updater.tools.errors import ToolError
from tests.cli.fakes import fake_client
from tests.fakes import FakeClock
from tests.tokens.fakes import (
    ATTACKER_KEY,
    DISCOVERY_PATH,
    EXCHANGE_PATH,
    KEY,
    KEYS_PATH,
    FakeTokenService,
    SigningKey,
    SubjectTokenMap,
    claims,
)

NOW = 1_800_000_000.0
ISSUER = "https://kubernetes.default.svc.cluster.local"
SUBJECT = "system:serviceaccount:pull-secret-updater:controller"
IDENTITY = "45a0c61ea6fd977f050c5fb9ac06a69eed764595/d6bd5ea6e3ba0f1e"
#: The settings' default token service, which the fake stands in for.
STS = "https://issuer.enforce.dev"
REGISTRY = "registry.example"
#: The ServiceAccount exchanged in a Secret's namespace with token_subject namespace.
NAMESPACE_SA = "pull-secret-updater"


def sign(payload: dict[str, object]) -> str:
    """A service-account token (its signature is the cluster's business, not the check's)."""
    return jwt.encode(payload, "a-signing-key-used-only-in-these-tests", algorithm="HS256")


def sa_jwt(subject: str) -> str:
    return sign({"iss": ISSUER, "sub": subject, "aud": ["issuer.enforce.dev"], "exp": 4e9})


@pytest.fixture
def sa_token(tmp_path: Path) -> tuple[Path, str]:
    token = sa_jwt(SUBJECT)
    path = tmp_path / "oidc-token"
    path.write_text(token)
    return path, token


@pytest.fixture
def service() -> FakeTokenService:
    # NB: the check verifies with the real clock, so the tokens are issued now.
    return FakeTokenService(clock=FakeClock(time.time()), issuer=STS)


def settings(token_path: Path, **extra: object) -> Settings:
    return Settings(token_path=token_path, registry=REGISTRY, **extra)  # type: ignore[arg-type]


def no_client() -> lightkube.AsyncClient:
    raise AssertionError("a token file needs no Kubernetes client")


def registry_token(*, key: SigningKey = KEY, **extra: object) -> str:
    """A registry token for IDENTITY from the token service, issued now, signed with `key`."""
    payload = claims(identity=IDENTITY, iat=time.time(), iss=STS, aud=REGISTRY)
    return key.sign({**payload, **extra})


def answer(service: FakeTokenService, status: int, body: dict[str, object]) -> None:
    """Make the service's exchange answer `status` and `body` to a request for IDENTITY."""

    async def exchange(request: httpx2.Request) -> httpx2.Response:
        assert request.url.params["identity"] == IDENTITY
        assert request.url.params["aud"] == REGISTRY
        return httpx2.Response(status, json=body)

    service.exchange = exchange


def bearers(service: FakeTokenService) -> list[str]:
    """The service-account tokens the exchanges were sent with."""
    return [
        request.headers["Authorization"].removeprefix("Bearer ")
        for request in service.requests
        if request.url.path == EXCHANGE_PATH
    ]


async def test_a_successful_exchange_reports_both_tokens_claims(
    sa_token: tuple[Path, str], service: FakeTokenService
) -> None:
    path, sent = sa_token
    issued = registry_token(exp=4_000_000_000)
    answer(service, 200, {"token": issued})
    outcome = await run_check(
        settings(path), identity=IDENTITY, open_client=no_client, transport=service.transport()
    )
    assert outcome.ok, outcome.error
    assert (service.hits(DISCOVERY_PATH), service.hits(KEYS_PATH)) == (1, 1)
    assert bearers(service) == [sent]
    assert outcome.issued is not None
    assert outcome.issued.subject == IDENTITY
    assert outcome.sent is not None
    assert (outcome.sent.issuer, outcome.sent.subject) == (ISSUER, SUBJECT)
    lines = describe_outcome(outcome, now=4e9 - 3599.5)
    assert lines[0] == "ok: token for registry.example expires at 2096-10-02T07:06:40Z (in 59m)"
    assert f"issuer {STS}, subject {IDENTITY}" in lines[1]
    assert f"issuer {ISSUER}, subject {SUBJECT}, audience issuer.enforce.dev" in lines[2]
    printed = "\n".join(lines) + repr(outcome)
    assert issued not in printed
    assert sent not in printed


async def test_a_token_signed_with_an_unpublished_key_is_not_reported_as_ok(
    sa_token: tuple[Path, str], service: FakeTokenService
) -> None:
    # Same key id as the published key, another private key: it must not verify.
    forged = registry_token(key=ATTACKER_KEY)
    answer(service, 200, {"token": forged})
    outcome = await run_check(
        settings(sa_token[0]), identity=IDENTITY, open_client=no_client,
        transport=service.transport(),
    )  # fmt: skip
    assert not outcome.ok
    assert outcome.issued is None
    assert outcome.error is not None
    assert outcome.error.cause == "untrusted"
    assert "cannot be trusted" in str(outcome.error)
    assert forged not in str(outcome.error) + "\n".join(describe_outcome(outcome))


async def test_unavailable_keys_stop_the_check_before_anything_is_sent(
    sa_token: tuple[Path, str], service: FakeTokenService
) -> None:
    service.failing[KEYS_PATH] = 503
    outcome = await run_check(
        settings(sa_token[0]), identity=IDENTITY, open_client=no_client,
        transport=service.transport(),
    )  # fmt: skip
    assert outcome.error is not None
    assert outcome.error.cause == "keys"
    assert f"the key set at {STS}{KEYS_PATH} answered 503" in str(outcome.error)
    assert service.hits(EXCHANGE_PATH) == 0
    # The service-account token was read (so a missing one is reported first) but not sent.


async def test_a_refused_exchange_is_an_outcome_with_the_servers_reason(
    sa_token: tuple[Path, str], service: FakeTokenService
) -> None:
    path, sent = sa_token
    answer(service, 404, {"code": "not_found", "message": "no such identity"})
    outcome = await run_check(
        settings(path), identity=IDENTITY, open_client=no_client, transport=service.transport()
    )
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.cause == "not_found"
    assert "404 not_found: no such identity" in str(outcome.error)
    lines = describe_outcome(outcome, now=NOW)
    assert len(lines) == 1
    assert lines[0].startswith("  exchanged service-account token: issuer " + ISSUER)
    assert sent not in "\n".join(lines)


async def test_a_missing_token_file_is_reported_as_such(
    tmp_path: Path, service: FakeTokenService
) -> None:
    service.failing[EXCHANGE_PATH] = 500  # were anything sent, the outcome would say 500
    outcome = await run_check(
        settings(tmp_path / "absent"), identity=IDENTITY, open_client=no_client,
        transport=service.transport(),
    )  # fmt: skip
    assert outcome.error is not None
    assert outcome.error.cause == "sa_token"
    assert "does not exist" in str(outcome.error)
    assert outcome.sent is None
    assert service.hits(EXCHANGE_PATH) == 0


async def test_an_unusable_ca_bundle_is_a_configuration_error(
    sa_token: tuple[Path, str], tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(ToolError) as caught:
        await run_check(settings(sa_token[0], ca_bundle=bundle), identity=IDENTITY,
                        open_client=no_client)  # fmt: skip
    assert caught.value.exit_code == 2
    assert "CA bundle" in caught.value.message


# -- whose service-account token is exchanged ------------------------------------------------

OWN = Subject("pull-secret-updater", "controller")


@pytest.mark.parametrize(
    ("token_subject", "namespace", "expected"),
    [
        ("namespace", "team-a", Subject("team-a", NAMESPACE_SA)),
        # Without a namespace: as for a Secret in the controller's own namespace.
        ("namespace", None, Subject("pull-secret-updater", NAMESPACE_SA)),
        ("controller", "team-a", OWN),
        ("controller", None, OWN),
    ],
)
async def test_the_check_exchanges_the_token_of_the_subject_the_controller_would_use(
    monkeypatch: pytest.MonkeyPatch,
    service: FakeTokenService,
    tmp_path: Path,
    token_subject: str,
    namespace: str | None,
    expected: Subject,
) -> None:
    subjects = [OWN, Subject("team-a", NAMESPACE_SA), Subject("pull-secret-updater", NAMESPACE_SA)]
    tokens = SubjectTokenMap(tokens={s: sa_jwt(str(s)) for s in subjects})
    made: list[Settings] = []

    def subject_tokens(settings: Settings, *, client: object) -> SubjectTokenMap:
        made.append(settings)
        return tokens

    monkeypatch.setattr(wiring, "subject_tokens", subject_tokens)
    answer(service, 200, {"token": registry_token()})
    checked = settings(tmp_path / "unused", token_subject=token_subject)
    outcome = await run_check(
        checked, identity=IDENTITY, open_client=no_client, namespace=namespace,
        transport=service.transport(),
    )  # fmt: skip
    assert outcome.ok, outcome.error
    assert made == [checked]
    assert tokens.asked == [expected]
    assert bearers(service) == [tokens.tokens[expected]]
    assert outcome.sent is not None
    assert outcome.sent.subject == str(expected)


class TokenRequests:
    """An API server answering TokenRequests with a service-account token of the subject asked
    for; `clients` are the clients made to reach it."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.audiences: list[list[str]] = []
        self.clients: list[lightkube.AsyncClient] = []
        self.closed = 0

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        # /api/v1/namespaces/<namespace>/serviceaccounts/<name>/token
        _, _, _, _, namespace, _, name, _ = request.url.path.split("/")
        body = json.loads(request.content)
        self.audiences.append(body["spec"]["audiences"])
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        body["status"] = {
            "token": sa_jwt(f"system:serviceaccount:{namespace}:{name}"),
            "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return httpx2.Response(201, json=body)

    def open_client(self) -> lightkube.AsyncClient:
        client = fake_client(self.handle)
        close = client.close

        async def closing() -> None:
            self.closed += 1
            await close()

        client.close = closing  # type: ignore[method-assign]
        self.clients.append(client)
        return client


async def test_a_namespace_subjects_token_is_requested_in_that_namespace(
    service: FakeTokenService, tmp_path: Path
) -> None:
    api = TokenRequests()
    answer(service, 200, {"token": registry_token()})
    outcome = await run_check(
        settings(tmp_path / "unused", token_subject="namespace", sa_audience="sts.example"),
        identity=IDENTITY, open_client=api.open_client, namespace="team-a",
        transport=service.transport(),
    )  # fmt: skip
    assert outcome.ok, outcome.error
    assert api.paths == [f"/api/v1/namespaces/team-a/serviceaccounts/{NAMESPACE_SA}/token"]
    assert api.audiences == [["sts.example"]]
    assert outcome.sent is not None
    assert outcome.sent.subject == f"system:serviceaccount:team-a:{NAMESPACE_SA}"
    assert len(bearers(service)) == 1


@pytest.mark.parametrize(
    ("extra", "namespace"),
    [({"token_subject": "namespace"}, "team-a"), ({"token_source": "tokenrequest"}, None)],
    ids=["namespace-subject", "own-tokenrequest"],
)
async def test_the_clients_made_for_token_requests_are_closed(
    service: FakeTokenService, tmp_path: Path, extra: dict[str, object], namespace: str | None
) -> None:
    api = TokenRequests()
    answer(service, 200, {"token": registry_token()})
    outcome = await run_check(
        settings(tmp_path / "unused", **extra), identity=IDENTITY,
        open_client=api.open_client, namespace=namespace, transport=service.transport(),
    )  # fmt: skip
    assert outcome.ok, outcome.error
    assert len(api.clients) == 1
    assert api.closed == 1


def test_an_expired_service_account_token_is_described_as_expired() -> None:
    outcome = CheckOutcome(
        identity=IDENTITY,
        registry="cgr.dev",
        sent=TokenFacts(issuer=ISSUER, subject=SUBJECT, audience=(), expires_at=NOW - 120),
    )
    (line,) = describe_outcome(outcome, now=NOW)
    assert line.endswith("audience (none), expired 2m ago")
