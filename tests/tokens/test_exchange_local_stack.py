"""The token layer against the real local stack: apiserver tokens, the token service and its
published keys, a pull with the result."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from lightkube import AsyncClient, KubeConfig

from devstack import pki
from devstack.registry import skopeo_inspect
from devstack.stack import SA_AUDIENCE, LocalStack
from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.dockerconfig import parse_docker_config, with_token
from pull_secret_updater.core.schedule import Schedule
from pull_secret_updater.providers.chainguard.exchange import ChainguardSTS
from pull_secret_updater.tokens import (
    ExchangeError,
    KeysUnavailable,
    MalformedResponse,
    ProjectedFileTokenSource,
    RejectedExchangeError,
    Subject,
    SubjectTokens,
    SubjectTokenSource,
    TokenCache,
    TokenRequestTokenSource,
    TokenVerifier,
    TransientExchangeError,
)
from pull_secret_updater.tokens.http import make_client
from pull_secret_updater.version import user_agent
from tests.helpers import unique
from tests.tokens.fakes import everything_printed, want_of

pytestmark = pytest.mark.stack

NAMESPACE = "pull-secret-updater"
SERVICE_ACCOUNT = "controller"
OWN = Subject(NAMESPACE, SERVICE_ACCOUNT)
#: The ServiceAccount exchanged in a Secret's namespace with namespace-scoped identities.
NAMESPACE_SERVICE_ACCOUNT = "pull-secret-updater"


def _ensure(stack: LocalStack, manifest: dict[str, object]) -> None:
    # apply, not create: other test modules share the stack and may have made it already.
    stack.control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _service_account(stack: LocalStack, namespace: str, name: str) -> None:
    _ensure(stack, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    _ensure(
        stack,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
    )


@pytest.fixture(scope="module")
def identity(stack: LocalStack) -> str:
    """An identity trusting the controller's ServiceAccount, as the original's KinD steps make."""
    _service_account(stack, NAMESPACE, SERVICE_ACCOUNT)
    return stack.create_kind_identity(namespace=NAMESPACE, service_account=SERVICE_ACCOUNT)


@dataclass(frozen=True)
class Projected:
    path: Path
    token: str = field(repr=False)


@pytest.fixture
def projected(stack: LocalStack, identity: str, tmp_path: Path) -> Projected:
    """What kubelet would project: a TokenRequest token for the controller, in a file."""
    token = stack.control_plane.service_account_token(
        NAMESPACE, SERVICE_ACCOUNT, audience=SA_AUDIENCE
    )
    path = tmp_path / "oidc-token"
    path.write_text(token)
    return Projected(path=path, token=token)


def _own(projected: Projected) -> SubjectTokens:
    return SubjectTokens(own=OWN, own_source=ProjectedFileTokenSource(path=projected.path))


def _sts(
    stack: LocalStack,
    sa_tokens: SubjectTokenSource,
    *,
    ca_bundle: Path | None = None,
    timeout: float = 10.0,
    verifier: TokenVerifier | None = None,
) -> ChainguardSTS:
    return ChainguardSTS(
        sa_tokens=sa_tokens,
        issuer=stack.token_service.url,
        audience=stack.registry.host,
        ca_bundle=ca_bundle or stack.ca_file,
        timeout=timeout,
        verifier=verifier,
    )


@pytest.fixture
async def sts(stack: LocalStack, projected: Projected) -> AsyncIterator[ChainguardSTS]:
    async with _sts(stack, _own(projected)) as client:
        yield client


@pytest.fixture
def faults(stack: LocalStack) -> Iterator[Callable[..., None]]:
    """Set a token service fault; cleared (with the error-code style) at the end."""
    admin = stack.token_admin()
    yield admin.set_fault
    admin.clear_faults()
    admin.set_error_codes("string")


def _ok_exchanges(stack: LocalStack, identity: str) -> int:
    return int(stack.token_admin().stats()["exchanges"].get(identity, {}).get("ok", 0))


async def test_exchange_with_a_projected_token_file_pulls_from_the_registry(
    stack: LocalStack, identity: str, sts: ChainguardSTS, tmp_path: Path
) -> None:
    issued = await sts.issue(want=want_of(identity), subject=OWN)

    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["aud"] == stack.registry.host
    assert claims["sub"] == issued.identity == identity
    assert (issued.issued_at, issued.expires_at) == (claims["iat"], claims["exp"])
    assert issued.key_id == jwt.get_unverified_header(issued.token)["kid"]
    assert issued.lifetime == stack.token_lifetime
    assert issued.registries == (stack.registry.host,)

    authfile = tmp_path / "config.json"
    authfile.write_bytes(
        with_token(
            parse_docker_config(b"{}"),
            registry=issued.registries[0],
            token=issued.token,
            username=issued.username,
        )
    )
    pulled = skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=stack.registry.image,
        authfile=authfile,
        ca_file=stack.ca_file,
    )
    assert pulled.returncode == 0, pulled.stderr


async def test_a_token_from_the_service_verifies_and_a_minted_impostor_does_not(
    stack: LocalStack, identity: str, sts: ChainguardSTS
) -> None:
    issued = await sts.issue(want=want_of(identity), subject=OWN)
    assert await sts.verify(issued.token) == issued
    assert sts.still_trusted(issued)

    admin = stack.token_admin()
    for_another_registry = admin.mint_token(sub=identity, aud="registry.example")
    with pytest.raises(InvalidToken, match="not for the registry"):
        await sts.verify(for_another_registry)
    without_iat = admin.mint_token(sub=identity, omit=["iat"])
    with pytest.raises(InvalidToken, match="no iat claim"):
        await sts.verify(without_iat)


async def test_exchange_with_a_token_request_token_from_the_apiserver(
    stack: LocalStack, identity: str
) -> None:
    client = AsyncClient(config=KubeConfig.from_file(stack.kubeconfig))
    own_source = TokenRequestTokenSource(
        client, namespace=NAMESPACE, service_account=SERVICE_ACCOUNT, audience=SA_AUDIENCE
    )
    try:
        sa_token = await own_source.get()
        assert await own_source.get() == sa_token  # reused, not requested again
        claims = jwt.decode(sa_token, options={"verify_signature": False})
        assert claims["sub"] == f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
        assert claims["aud"] == [SA_AUDIENCE]
        assert 590 <= claims["exp"] - claims["iat"] <= 3600

        sa_tokens = SubjectTokens(own=OWN, own_source=own_source)
        async with _sts(stack, sa_tokens) as sts:
            issued = await sts.issue(want=want_of(identity), subject=OWN)
        assert issued.lifetime == stack.token_lifetime
    finally:
        await client.close()


async def test_a_namespace_scoped_identity_is_obtained_only_as_its_namespace(
    stack: LocalStack, projected: Projected
) -> None:
    namespace = unique("scoped")
    _service_account(stack, namespace, NAMESPACE_SERVICE_ACCOUNT)
    scoped = stack.create_kind_identity(
        name=unique("scoped"), namespace=namespace, service_account=NAMESPACE_SERVICE_ACCOUNT
    )
    client = AsyncClient(config=KubeConfig.from_file(stack.kubeconfig))
    sa_tokens = SubjectTokens(
        own=OWN,
        own_source=ProjectedFileTokenSource(path=projected.path),
        client=lambda: client,
        audience=SA_AUDIENCE,
    )
    try:
        async with _sts(stack, sa_tokens) as sts:
            issued = await sts.issue(
                want=want_of(scoped), subject=Subject(namespace, NAMESPACE_SERVICE_ACCOUNT)
            )
            assert issued.identity == scoped
            with pytest.raises(RejectedExchangeError) as caught:
                await sts.issue(want=want_of(scoped), subject=OWN)
    finally:
        await client.close()
    assert (caught.value.status, caught.value.cause) == (403, "rejected")
    assert projected.token not in everything_printed(caught.value)


async def test_fifty_concurrent_secrets_cost_one_real_exchange(
    stack: LocalStack, identity: str, sts: ChainguardSTS
) -> None:
    before = _ok_exchanges(stack, identity)
    cache = TokenCache(sts, schedule=Schedule())
    tokens = await asyncio.gather(
        *(cache.get(want=want_of(identity), subject=OWN) for _ in range(50))
    )
    distinct = len({token.token for token in tokens})  # a count: a failure prints no token
    assert distinct == 1
    assert _ok_exchanges(stack, identity) == before + 1


async def test_a_rotated_signing_key_is_found_and_a_dropped_one_stops_vouching(
    stack: LocalStack, identity: str, projected: Projected
) -> None:
    # refetch_interval 0: the test need not wait out the pacing of key fetches.
    http = make_client(timeout=10, user_agent=user_agent(), ca_bundle=stack.ca_file)
    verifier = TokenVerifier(
        provider="chainguard",
        username="_token",
        issuer=stack.token_service.url,
        audience=stack.registry.host,
        http=http,
        refetch_interval=0,
    )
    admin = stack.token_admin()
    try:
        async with _sts(stack, _own(projected), verifier=verifier) as sts:
            before = await sts.issue(want=want_of(identity), subject=OWN)
            kid = admin.rotate_signing_key(keep_previous=True)
            after = await sts.issue(want=want_of(identity), subject=OWN)
            assert (after.key_id, before.key_id != kid) == (kid, True)
            assert sts.still_trusted(before)

            admin.rotate_signing_key(keep_previous=False)
            latest = await sts.issue(want=want_of(identity), subject=OWN)
            assert not sts.still_trusted(before)
            assert not sts.still_trusted(after)
            assert sts.still_trusted(latest)
            with pytest.raises(InvalidToken, match="does not publish"):
                await sts.verify(before.token)
    finally:
        await http.aclose()


async def test_nothing_is_exchanged_while_the_keys_cannot_be_fetched(
    stack: LocalStack, identity: str, projected: Projected, faults: Callable[..., None]
) -> None:
    before = _ok_exchanges(stack, identity)
    faults("status", status=503, target="keys")
    async with _sts(stack, _own(projected)) as sts:
        with pytest.raises(KeysUnavailable) as caught:
            await sts.issue(want=want_of(identity), subject=OWN)
    assert (caught.value.cause, caught.value.retryable) == ("keys", True)
    assert "answered 503" in str(caught.value)
    assert _ok_exchanges(stack, identity) == before
    assert projected.token not in everything_printed(caught.value)


@pytest.mark.parametrize("trust", ["another-ca", "system-store"])
async def test_an_sts_certificate_we_cannot_verify_fails_closed(
    stack: LocalStack, identity: str, projected: Projected, tmp_path: Path, trust: str
) -> None:
    before = _ok_exchanges(stack, identity)
    ca_bundle = pki.create_ca(tmp_path, name="not the stack's CA").cert_file
    if trust == "another-ca":
        client = _sts(stack, _own(projected), ca_bundle=ca_bundle)
    else:
        client = ChainguardSTS(
            sa_tokens=_own(projected),
            issuer=stack.token_service.url,
            audience=stack.registry.host,
        )
    async with client:
        with pytest.raises(ExchangeError) as caught:
            await client.issue(want=want_of(identity), subject=OWN)
    error = caught.value
    assert "could not be verified" in str(error)
    assert projected.token not in everything_printed(error)
    assert _ok_exchanges(stack, identity) == before


async def test_an_sts_certificate_we_cannot_verify_is_reported_as_tls(
    stack: LocalStack, identity: str, projected: Projected, tmp_path: Path
) -> None:
    ca_bundle = pki.create_ca(tmp_path, name="not the stack's CA").cert_file
    async with _sts(stack, _own(projected), ca_bundle=ca_bundle) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.issue(want=want_of(identity), subject=OWN)
    error = caught.value
    assert isinstance(error, ExchangeError)
    assert (error.cause, error.retryable) == ("tls", False)
    assert "CA bundle" in str(error)


@pytest.mark.parametrize("codes", ["string", "numeric"])
async def test_an_untrusting_identity_is_rejected_with_the_servers_reason(
    stack: LocalStack,
    sts: ChainguardSTS,
    projected: Projected,
    faults: Callable[..., None],
    codes: str,
) -> None:
    other = stack.create_kind_identity(
        name=unique("other"), namespace="elsewhere", service_account="someone"
    )
    stack.token_admin().set_error_codes(codes)  # type: ignore[arg-type]
    with pytest.raises(RejectedExchangeError) as caught:
        await sts.issue(want=want_of(other), subject=OWN)
    error = caught.value
    assert (error.status, error.cause, error.retryable) == (403, "rejected", False)
    code = "permission_denied (7)" if codes == "numeric" else "permission_denied"
    assert str(error).startswith(f"token service answered 403 {code}: ")
    assert projected.token not in everything_printed(error)


async def test_an_unknown_identity_is_not_found(stack: LocalStack, sts: ChainguardSTS) -> None:
    with pytest.raises(RejectedExchangeError) as caught:
        await sts.issue(want=want_of(f"{unique('org')}/{unique('id')}"), subject=OWN)
    assert (caught.value.status, caught.value.cause) == (404, "not_found")


@pytest.mark.parametrize(
    ("mode", "options", "kind", "cause", "status"),
    [
        ("status", {"status": 503}, TransientExchangeError, "unavailable", 503),
        ("status", {"status": 502}, TransientExchangeError, "unavailable", 502),
        ("status", {"status": 429}, TransientExchangeError, "throttled", 429),
        ("status", {"status": 400}, RejectedExchangeError, "rejected", 400),
        ("malformed", {}, MalformedResponse, "malformed", 200),
        ("expired", {}, MalformedResponse, "expired", 200),
        ("no_exp", {}, MalformedResponse, "no_exp", 200),
        ("garbage_token", {}, MalformedResponse, "untrusted", 200),
        ("refuse", {}, TransientExchangeError, "connection", None),
        ("slow", {"delay": 3.0}, TransientExchangeError, "timeout", None),
    ],
)
async def test_injected_faults_map_to_their_class(
    stack: LocalStack,
    identity: str,
    projected: Projected,
    faults: Callable[..., None],
    mode: str,
    options: dict[str, float],
    kind: type[ExchangeError],
    cause: str,
    status: int | None,
) -> None:
    async with _sts(stack, _own(projected), timeout=0.5) as client:
        # The keys first, as a running controller holds them: the fault is the exchange's.
        await client.verifier.ensure_keys()
        faults(mode, **options)
        with pytest.raises(ExchangeError) as caught:
            await client.issue(want=want_of(identity), subject=OWN)
    stack.token_admin().clear_faults()
    error = caught.value
    assert type(error) is kind
    assert (error.cause, error.status) == (cause, status)
    assert projected.token not in everything_printed(error)
    assert "eyJ" not in everything_printed(error)

    # And once the fault is cleared, the same client setup works again.
    async with _sts(stack, _own(projected)) as client:
        assert (await client.issue(want=want_of(identity), subject=OWN)).registries == (
            stack.registry.host,
        )
