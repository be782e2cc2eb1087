"""What a successful exchange sends and returns, that its token is verified first, and how the
server is trusted."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from devstack import pki
from devstack.procs import free_port
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.tokens import (
    ExchangeError,
    KeysUnavailable,
    ProjectedFileTokenSource,
    Subject,
    SubjectTokens,
    TokenVerifier,
)
from pull_secret_updater.version import user_agent
from tests.fakes import NOW, REGISTRY, FakeClock
from tests.tokens.fakes import (
    DISCOVERY_PATH,
    EXCHANGE_PATH,
    IDENTITY,
    ISSUER,
    KEY,
    KEYS_PATH,
    OWN,
    ROTATED_KEY,
    SA_TOKEN,
    FakeTokenService,
    SubjectTokenMap,
    claims,
    everything_printed,
    want_of,
)

TEAM_A = Subject(namespace="team-a", service_account="pull-secret-updater")


def sts_for(
    service: FakeTokenService,
    *,
    sa_tokens: SubjectTokenMap | SubjectTokens | None = None,
    issuer: str = ISSUER,
    audience: str = REGISTRY,
    **kwargs: object,
) -> ChainguardSTS:
    return ChainguardSTS(
        sa_tokens=sa_tokens or SubjectTokenMap(),
        issuer=issuer,
        audience=audience,
        clock=service.clock,
        transport=service.transport(),
        **kwargs,  # type: ignore[arg-type]
    )


def paced_verifier(
    service: FakeTokenService, monotonic: FakeClock, *, refetch_interval: float = 10
) -> TokenVerifier:
    """A verifier of the service's tokens whose key fetches are paced by `monotonic`."""
    return TokenVerifier(
        provider="chainguard",
        username="_token",
        issuer=ISSUER,
        audience=REGISTRY,
        http=service.client(),
        clock=service.clock,
        monotonic=monotonic,
        refetch_interval=refetch_interval,
    )


async def test_request_is_the_contracts_post_with_query_and_bearer() -> None:
    service = FakeTokenService(clock=FakeClock())
    async with sts_for(service, issuer=ISSUER + "/") as client:
        await client.issue(want=want_of(IDENTITY), subject=OWN)

    [request] = [r for r in service.requests if r.url.path == EXCHANGE_PATH]
    assert request.method == "POST"
    assert str(request.url).startswith(f"{ISSUER}{EXCHANGE_PATH}?")
    assert list(request.url.params.multi_items()) == [("aud", REGISTRY), ("identity", IDENTITY)]
    assert request.headers["Authorization"] == f"Bearer {SA_TOKEN}"
    assert request.headers["User-Agent"] == user_agent()
    assert user_agent().startswith("pull-secret-updater/")
    assert request.content == b""


async def test_the_keys_are_fetched_before_the_first_exchange_and_then_kept() -> None:
    service = FakeTokenService(clock=FakeClock())
    async with sts_for(service) as client:
        for _ in range(3):
            await client.issue(want=want_of(IDENTITY), subject=OWN)
    assert [(r.method, r.url.path) for r in service.requests] == [
        ("GET", DISCOVERY_PATH),
        ("GET", KEYS_PATH),
        ("POST", EXCHANGE_PATH),
        ("POST", EXCHANGE_PATH),
        ("POST", EXCHANGE_PATH),
    ]
    # One client, one User-Agent, and no service-account token sent for the keys.
    assert {r.headers["User-Agent"] for r in service.requests} == {user_agent()}
    assert [r for r in service.requests if "Authorization" in r.headers] == [
        r for r in service.requests if r.url.path == EXCHANGE_PATH
    ]


async def test_the_issued_token_is_verified_and_timed_by_its_own_claims() -> None:
    service = FakeTokenService(clock=FakeClock())
    token = KEY.sign(claims(iat=NOW - 100, lifetime=900))

    async def handler(request: httpx2.Request) -> httpx2.Response:
        # `expiry` says something else; the token's own verified exp is what counts.
        return httpx2.Response(200, json={"token": token, "expiry": "2099-01-01T00:00:00Z"})

    service.exchange = handler
    async with sts_for(service) as client:
        result = await client.issue(want=want_of(IDENTITY), subject=OWN)

    assert result == Credential(
        token=token,
        identity=IDENTITY,
        provider="chainguard",
        registries=(REGISTRY,),
        username="_token",
        issued_at=NOW - 100,
        expires_at=NOW + 800,
        key_id="key-1",
    )
    assert token not in repr(result)


async def test_the_subjects_own_token_is_what_is_exchanged() -> None:
    service = FakeTokenService(clock=FakeClock())
    sa_tokens = SubjectTokenMap(tokens={OWN: SA_TOKEN, TEAM_A: "team-a-sa-token"})
    async with sts_for(service, sa_tokens=sa_tokens) as client:
        await client.issue(want=want_of(IDENTITY), subject=TEAM_A)
        await client.issue(want=want_of(IDENTITY), subject=OWN)
    bearers = [r.headers["Authorization"] for r in service.requests if r.url.path == EXCHANGE_PATH]
    assert bearers == ["Bearer team-a-sa-token", f"Bearer {SA_TOKEN}"]
    assert sa_tokens.asked == [TEAM_A, OWN]


async def test_a_token_from_a_key_rotated_in_is_accepted_once_refetched() -> None:
    clock, monotonic = FakeClock(), FakeClock(now=1000.0)
    service = FakeTokenService(clock=clock)
    client = sts_for(service, verifier=paced_verifier(service, monotonic, refetch_interval=10))
    async with client:
        assert (await client.issue(want=want_of(IDENTITY), subject=OWN)).key_id == "key-1"
        service.published = [KEY, ROTATED_KEY]
        service.signer = ROTATED_KEY
        monotonic.now += 10
        assert (await client.issue(want=want_of(IDENTITY), subject=OWN)).key_id == "key-2"
    assert client.verifier.fetches == 2


async def test_verify_and_still_trusted_answer_with_the_keys_held() -> None:
    clock, monotonic = FakeClock(), FakeClock(now=1000.0)
    service = FakeTokenService(clock=clock)
    client = sts_for(service, verifier=paced_verifier(service, monotonic))
    async with client:
        issued = await client.issue(want=want_of(IDENTITY), subject=OWN)
        assert await client.verify(issued.token) == issued
        assert client.still_trusted(issued)
        service.published = [ROTATED_KEY]
        monotonic.now += client.verifier.max_age
        await client.verifier.ensure_keys()
        assert not client.still_trusted(issued)


async def test_min_lifetime_is_configurable() -> None:
    service = FakeTokenService(clock=FakeClock(), lifetime=20)
    async with sts_for(service, min_lifetime=10) as client:
        assert (await client.issue(want=want_of(IDENTITY), subject=OWN)).lifetime == 20


async def test_the_projected_token_is_read_afresh_for_every_exchange(tmp_path: Path) -> None:
    path = tmp_path / "oidc-token"
    service = FakeTokenService(clock=FakeClock())
    sa_tokens = SubjectTokens(own=OWN, own_source=ProjectedFileTokenSource(path=path))
    async with sts_for(service, sa_tokens=sa_tokens) as client:
        path.write_text("first-token\n")
        await client.issue(want=want_of(IDENTITY), subject=OWN)
        path.write_text("rotated-token")  # kubelet rotated it
        await client.issue(want=want_of(IDENTITY), subject=OWN)
    bearers = [r.headers["Authorization"] for r in service.requests if r.url.path == EXCHANGE_PATH]
    assert bearers == ["Bearer first-token", "Bearer rotated-token"]


async def test_an_empty_identity_is_refused_before_anything_is_sent() -> None:
    service = FakeTokenService(clock=FakeClock())
    async with sts_for(service) as client:
        with pytest.raises(ValueError, match="identity must not be empty"):
            await client.issue(want=want_of(""), subject=OWN)
    assert service.requests == []


def test_plain_http_is_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        ChainguardSTS(sa_tokens=SubjectTokenMap(), issuer="http://issuer.enforce.dev")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0.0}, "timeout must be a finite number of seconds > 0"),
        ({"timeout": float("inf")}, "timeout must be a finite number of seconds > 0"),
        ({"min_lifetime": -1.0}, "min_lifetime must be a finite number of seconds >= 0"),
    ],
)
def test_nonsense_timings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChainguardSTS(sa_tokens=SubjectTokenMap(), **kwargs)  # type: ignore[arg-type]


def test_an_unloadable_ca_bundle_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ChainguardSTS(sa_tokens=SubjectTokenMap(), ca_bundle=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match="CA bundle"):
        ChainguardSTS(sa_tokens=SubjectTokenMap(), ca_bundle=junk)


def test_repr_names_the_service_and_nothing_secret() -> None:
    client = ChainguardSTS(sa_tokens=SubjectTokenMap(), issuer=ISSUER, audience=REGISTRY)
    assert repr(client) == f"ChainguardSTS(issuer={ISSUER!r}, audience={REGISTRY!r})"


async def test_an_unreachable_token_service_exchanges_nothing_and_can_be_retried() -> None:
    sa_tokens = SubjectTokenMap()
    async with ChainguardSTS(
        sa_tokens=sa_tokens, issuer=f"https://127.0.0.1:{free_port()}", timeout=2
    ) as client:
        with pytest.raises(KeysUnavailable) as caught:
            await client.issue(want=want_of(IDENTITY), subject=OWN)
    assert (caught.value.cause, caught.value.retryable) == ("keys", True)
    assert "ConnectError" in str(caught.value)
    assert SA_TOKEN not in everything_printed(caught.value)


# -- TLS against a real local server ---------------------------------------------------------


@dataclass(frozen=True)
class TLSServer:
    url: str
    ca_file: Path
    other_ca_file: Path
    #: The path of every request the server read, in order.
    paths: list[str]


@pytest.fixture(scope="module")
async def tls_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TLSServer]:
    """An HTTPS token service (discovery, keys, exchange) whose certificate a private CA signs."""
    directory = tmp_path_factory.mktemp("tls")
    ca = pki.create_ca(directory, name="test CA")
    serving = pki.issue_cert(ca, directory, stem="server", common_name="sts", hosts=("127.0.0.1",))
    other_dir = directory / "other"
    other_dir.mkdir()
    other = pki.create_ca(other_dir, name="some other CA")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(serving.cert), str(serving.key))
    where: dict[str, str] = {}
    paths: list[str] = []

    def body_for(path: str) -> bytes:
        url = where["url"]
        if path == DISCOVERY_PATH:
            document: object = {"issuer": url, "jwks_uri": f"{url}{KEYS_PATH}"}
        elif path == KEYS_PATH:
            document = {"keys": [KEY.public_jwk()]}
        else:
            document = {"token": KEY.sign(claims(iss=url, iat=NOW, lifetime=3600))}
        return json.dumps(document).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
            paths.append(path)
            body = body_for(path)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # a client that refused our certificate hangs up mid-handshake
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    where["url"] = f"https://127.0.0.1:{port}"
    async with server:
        yield TLSServer(
            url=where["url"], ca_file=ca.cert_file, other_ca_file=other.cert_file, paths=paths
        )


async def test_a_ca_bundle_makes_a_private_ca_trusted_for_keys_and_exchange(
    tls_server: TLSServer,
) -> None:
    async with ChainguardSTS(
        sa_tokens=SubjectTokenMap(),
        issuer=tls_server.url,
        audience=REGISTRY,
        ca_bundle=tls_server.ca_file,
        clock=FakeClock(),
        timeout=5,
    ) as client:
        result = await client.issue(want=want_of(IDENTITY), subject=OWN)
    assert (result.identity, result.expires_at) == (IDENTITY, NOW + 3600)
    assert tls_server.paths[-3:] == [DISCOVERY_PATH, KEYS_PATH, EXCHANGE_PATH]


@pytest.mark.parametrize("configured", ["other-ca", "system-store"])
async def test_an_unverifiable_certificate_fails_closed(
    tls_server: TLSServer, configured: str
) -> None:
    ca_bundle = tls_server.other_ca_file if configured == "other-ca" else None
    seen = len(tls_server.paths)
    async with ChainguardSTS(
        sa_tokens=SubjectTokenMap(), issuer=tls_server.url, ca_bundle=ca_bundle, timeout=5
    ) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.issue(want=want_of(IDENTITY), subject=OWN)
    error = caught.value
    assert "certificate could not be verified" in str(error)
    assert EXCHANGE_PATH not in tls_server.paths[seen:]  # nothing sent to an unverified server
    assert SA_TOKEN not in everything_printed(error)


@pytest.mark.parametrize("configured", ["other-ca", "system-store"])
async def test_an_unverifiable_certificate_is_reported_as_a_tls_problem(
    tls_server: TLSServer, configured: str
) -> None:
    ca_bundle = tls_server.other_ca_file if configured == "other-ca" else None
    async with ChainguardSTS(
        sa_tokens=SubjectTokenMap(), issuer=tls_server.url, ca_bundle=ca_bundle, timeout=5
    ) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.issue(want=want_of(IDENTITY), subject=OWN)
    error = caught.value
    assert (error.cause, error.retryable, error.status) == ("tls", False, None)
    assert "CA bundle" in str(error)
