"""Service-account tokens: the controller's own from a projected file or the TokenRequest API,
and per subject (a ServiceAccount in the Secret's namespace) from TokenRequest."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig

from pull_secret_updater.tokens import (
    ProjectedFileTokenSource,
    Subject,
    SubjectTokens,
    TokenRequestTokenSource,
    TokenSourceError,
    satoken,
)
from tests.fakes import NOW, FakeClock
from tests.tokens.fakes import OWN, SA_TOKEN, StaticTokenSource, everything_printed

# -- projected file --------------------------------------------------------------------------


async def test_file_token_is_stripped_of_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token"
    path.write_text(SA_TOKEN + "\n")
    assert await ProjectedFileTokenSource(path=path).get() == SA_TOKEN


async def test_file_token_follows_rotation_without_caching(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token"
    source = ProjectedFileTokenSource(path=path)
    path.write_text("one")
    assert await source.get() == "one"
    path.write_text("two")
    assert await source.get() == "two"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"  \n", "is empty", id="blank"),
        pytest.param(b"two\nwords-" + SA_TOKEN.encode(), "more than one word", id="two-words"),
        pytest.param(b"\xff" + SA_TOKEN.encode(), "not ASCII", id="binary"),
    ],
)
async def test_unusable_token_file_says_why_without_its_content(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "oidc-token"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TokenSourceError) as caught:
        await ProjectedFileTokenSource(path=path).get()
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
    assert caught.value.cause == "sa_token"
    assert SA_TOKEN not in everything_printed(caught.value)


async def test_token_path_that_is_a_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TokenSourceError, match="is a directory"):
        await ProjectedFileTokenSource(path=tmp_path).get()


async def test_unreadable_token_file_is_reported() -> None:
    # A write-only sysctl: unlike a file of mode 000, the kernel refuses to read it to root too.
    path = Path("/proc/sys/vm/drop_caches")
    with pytest.raises(TokenSourceError) as caught:
        await ProjectedFileTokenSource(path=path).get()
    assert (
        str(caught.value) == f"service-account token file {path} cannot be read: permission denied"
    )


async def test_token_path_below_a_file_is_reported_with_the_systems_reason(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token" / "token"
    path.parent.write_text(SA_TOKEN)
    with pytest.raises(TokenSourceError) as caught:
        await ProjectedFileTokenSource(path=path).get()
    assert str(caught.value) == f"service-account token file {path} cannot be read: Not a directory"
    assert SA_TOKEN not in everything_printed(caught.value)


def test_default_path_is_the_originals() -> None:
    assert ProjectedFileTokenSource().path == Path("/var/run/chainguard/oidc/oidc-token")


# -- TokenRequest ----------------------------------------------------------------------------


class FakeApiServer:
    """Answers TokenRequests with numbered tokens, or with a fixed error."""

    def __init__(self, *, lifetime: int = 600, error: tuple[int, dict[str, object]] | None = None):
        self.requests: list[httpx2.Request] = []
        self.lifetime = lifetime
        self.error = error
        self.gate: asyncio.Event | None = None

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            status, body = self.error
            return httpx2.Response(status, json=body)
        body = json.loads(request.content)
        expires = dt.datetime.fromtimestamp(NOW + self.lifetime, dt.UTC)
        body["status"] = {
            "token": f"{SA_TOKEN}-{len(self.requests)}",
            "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return httpx2.Response(201, json=body)

    def client(self) -> AsyncClient:
        config = KubeConfig.from_dict(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://apiserver.test"}}],
                "users": [{"name": "u", "user": {"token": "admin-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
        return AsyncClient(config=config, transport=httpx2.MockTransport(self.handle))


def source(server: FakeApiServer, clock: FakeClock) -> TokenRequestTokenSource:
    return TokenRequestTokenSource(
        server.client(),
        namespace="pull-secret-updater",
        service_account="controller",
        audience="issuer.enforce.dev",
        clock=clock,
    )


async def test_token_request_asks_for_our_audience_and_lifetime() -> None:
    server = FakeApiServer()
    token = await source(server, FakeClock()).get()
    assert token == f"{SA_TOKEN}-1"
    [request] = server.requests
    assert request.method == "POST"
    assert request.url.path == (
        "/api/v1/namespaces/pull-secret-updater/serviceaccounts/controller/token"
    )
    body = json.loads(request.content)
    assert body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["kind"] == "TokenRequest"
    assert body["spec"] == {"audiences": ["issuer.enforce.dev"], "expirationSeconds": 600}


async def test_token_request_token_is_reused_for_80_percent_of_its_life() -> None:
    server, clock = FakeApiServer(lifetime=600), FakeClock()
    tokens = source(server, clock)
    first = await tokens.get()
    clock.now = NOW + 479
    assert await tokens.get() == first
    clock.now = NOW + 480
    assert await tokens.get() != first
    assert len(server.requests) == 2


async def test_concurrent_callers_share_one_token_request() -> None:
    server, clock = FakeApiServer(), FakeClock()
    server.gate = asyncio.Event()
    tokens = source(server, clock)
    waiting = [asyncio.create_task(tokens.get()) for _ in range(20)]
    await asyncio.sleep(0.01)
    server.gate.set()
    assert set(await asyncio.gather(*waiting)) == {f"{SA_TOKEN}-1"}
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "retryable"), [(403, False), (404, False), (429, True), (500, True)]
)
async def test_token_request_failure_is_a_token_source_error(status: int, retryable: bool) -> None:
    server = FakeApiServer(
        error=(
            status,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": 'serviceaccounts "controller" is forbidden',
                "reason": "Forbidden",
                "code": status,
            },
        )
    )
    tokens = source(server, FakeClock())
    with pytest.raises(TokenSourceError) as caught:
        await tokens.get()
    error = caught.value
    assert (error.status, error.retryable, error.cause) == (status, retryable, "sa_token")
    assert "pull-secret-updater/controller" in str(error)
    assert 'serviceaccounts "controller" is forbidden' in str(error)


async def test_token_request_source_repr_holds_no_token() -> None:
    tokens = source(FakeApiServer(), FakeClock())
    token = await tokens.get()
    assert token not in repr(tokens)


def test_token_request_below_the_apiservers_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="600"):
        TokenRequestTokenSource(
            FakeApiServer().client(), namespace="ns", service_account="sa", expiration_seconds=60
        )


# -- per subject -----------------------------------------------------------------------------

TEAM_A = Subject(namespace="team-a", service_account="pull-secret-updater")
TEAM_B = Subject(namespace="team-b", service_account="pull-secret-updater")


def token_path(subject: Subject) -> str:
    return f"/api/v1/namespaces/{subject.namespace}/serviceaccounts/{subject.service_account}/token"


class Subjects:
    """SubjectTokens whose own token is static and whose API server is a FakeApiServer."""

    def __init__(self, server: FakeApiServer | None = None, *, with_client: bool = True) -> None:
        self.server = server or FakeApiServer()
        self.own = StaticTokenSource(token="own-token")
        self.clients_made = 0

        def client() -> AsyncClient:
            self.clients_made += 1
            return self.server.client()

        self.tokens = SubjectTokens(
            own=OWN,
            own_source=self.own,
            client=client if with_client else None,
            audience="issuer.enforce.dev",
        )

    def paths(self) -> list[str]:
        return [request.url.path for request in self.server.requests]


async def test_the_own_subject_uses_the_own_source_and_no_api_call() -> None:
    subjects = Subjects()
    assert await subjects.tokens.get(OWN) == "own-token"
    assert subjects.own.calls == 1
    assert (subjects.server.requests, subjects.clients_made) == ([], 0)


async def test_another_subject_gets_a_token_request_for_its_own_namespace_and_name() -> None:
    subjects = Subjects()
    token = await subjects.tokens.get(TEAM_A)
    assert token == f"{SA_TOKEN}-1"
    [request] = subjects.server.requests
    assert request.method == "POST"
    assert request.url.path == token_path(TEAM_A)
    body = json.loads(request.content)
    assert body["spec"] == {"audiences": ["issuer.enforce.dev"], "expirationSeconds": 600}
    assert subjects.own.calls == 0


async def test_other_subjects_tokens_live_as_long_as_the_provider_asks() -> None:
    # Google's federated tokens live no longer than the Kubernetes token: it asks for an hour.
    server = FakeApiServer()
    tokens = SubjectTokens(own=OWN, own_source=StaticTokenSource(token="own"),
                           client=server.client, audience="sts.googleapis.com",
                           expiration_seconds=3600)  # fmt: skip
    await tokens.get(TEAM_A)
    [request] = server.requests
    body = json.loads(request.content)
    assert body["spec"] == {"audiences": ["sts.googleapis.com"], "expirationSeconds": 3600}


async def test_each_subjects_token_is_kept_and_never_given_to_another() -> None:
    subjects = Subjects()
    a = await subjects.tokens.get(TEAM_A)
    b = await subjects.tokens.get(TEAM_B)
    assert a != b
    assert await subjects.tokens.get(TEAM_A) == a
    assert await subjects.tokens.get(TEAM_B) == b
    assert subjects.paths() == [token_path(TEAM_A), token_path(TEAM_B)]


async def test_another_subject_without_token_request_is_refused_for_good() -> None:
    subjects = Subjects(with_client=False)
    with pytest.raises(TokenSourceError) as caught:
        await subjects.tokens.get(TEAM_A)
    error = caught.value
    assert (error.cause, error.retryable) == ("sa_token", False)
    assert str(error) == (
        "no token can be requested for "
        "system:serviceaccount:team-a:pull-secret-updater: only the controller's own "
        "ServiceAccount is configured"
    )
    assert await subjects.tokens.get(OWN) == "own-token"


async def test_a_missing_service_account_says_how_to_create_it() -> None:
    server = FakeApiServer(
        error=(
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": 'serviceaccounts "pull-secret-updater" not found',
                "reason": "NotFound",
                "code": 404,
            },
        )
    )
    subjects = Subjects(server)
    with pytest.raises(TokenSourceError) as caught:
        await subjects.tokens.get(TEAM_A)
    error = caught.value
    assert (error.status, error.retryable) == (404, False)
    assert "ServiceAccount team-a/pull-secret-updater" in str(error)
    assert str(error).endswith(
        "; create it: kubectl create serviceaccount pull-secret-updater -n team-a"
    )


async def test_a_forbidden_token_request_names_the_subject_and_is_not_retried_soon() -> None:
    server = FakeApiServer(
        error=(
            403,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": "cannot create resource serviceaccounts/token",
                "reason": "Forbidden",
                "code": 403,
            },
        )
    )
    with pytest.raises(TokenSourceError) as caught:
        await Subjects(server).tokens.get(TEAM_B)
    assert (caught.value.status, caught.value.retryable) == (403, False)
    assert "team-b/pull-secret-updater" in str(caught.value)
    assert "kubectl create" not in str(caught.value)


def test_the_subjects_kept_are_bounded() -> None:
    assert satoken.MAX_SUBJECTS == 4096


async def test_the_least_recently_used_subject_is_dropped_beyond_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small bound, so the test does not make four thousand API clients.
    monkeypatch.setattr(satoken, "MAX_SUBJECTS", 3)
    subjects = Subjects()
    first, second, third = (Subject(namespace=f"ns-{n}", service_account="sa") for n in range(3))
    for subject in (first, second, third):
        await subjects.tokens.get(subject)
    await subjects.tokens.get(first)  # used again: now the most recent
    await subjects.tokens.get(OWN)  # the own subject takes no place
    assert len(subjects.server.requests) == 3

    await subjects.tokens.get(TEAM_A)  # one more than the bound: `second` goes
    await subjects.tokens.get(first)
    await subjects.tokens.get(third)
    assert len(subjects.server.requests) == 4
    await subjects.tokens.get(second)
    assert len(subjects.server.requests) == 5
    assert subjects.server.requests[-1].url.path == token_path(second)
