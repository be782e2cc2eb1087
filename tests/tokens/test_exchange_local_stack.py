"""The token layer against the real local stack: apiserver tokens, the token service, a pull."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from lightkube import AsyncClient, KubeConfig

from devstack import pki
from devstack.registry import skopeo_inspect
from devstack.stack import SA_AUDIENCE, LocalStack
from pull_secret_updater.core.dockerconfig import parse_docker_config, with_token
from pull_secret_updater.tokens import (
    ChainguardSTS,
    ExchangeError,
    MalformedResponse,
    ProjectedFileTokenSource,
    RejectedExchangeError,
    ServiceAccountTokenSource,
    TokenCache,
    TokenRequestTokenSource,
    TransientExchangeError,
)
from tests.tokens.fakes import everything_printed

pytestmark = pytest.mark.stack

NAMESPACE = "pull-secret-updater"
SERVICE_ACCOUNT = "controller"


def _ensure(stack: LocalStack, manifest: dict[str, object]) -> None:
    # apply, not create: other test modules share the stack and may have made it already.
    stack.control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))


@pytest.fixture(scope="module")
def identity(stack: LocalStack) -> str:
    """An identity trusting the controller's ServiceAccount, as the original's KinD steps make."""
    _ensure(stack, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    _ensure(
        stack,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
        },
    )
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


def _sts(
    stack: LocalStack,
    sa_tokens: ServiceAccountTokenSource,
    *,
    ca_bundle: Path | None = None,
    timeout: float = 10.0,
) -> ChainguardSTS:
    return ChainguardSTS(
        sa_tokens=sa_tokens,
        issuer=stack.token_service.url,
        audience=stack.registry.host,
        ca_bundle=ca_bundle or stack.ca_file,
        timeout=timeout,
    )


@pytest.fixture
async def sts(stack: LocalStack, projected: Projected) -> AsyncIterator[ChainguardSTS]:
    async with _sts(stack, ProjectedFileTokenSource(path=projected.path)) as client:
        yield client


async def test_exchange_with_a_projected_token_file_pulls_from_the_registry(
    stack: LocalStack, identity: str, sts: ChainguardSTS, tmp_path: Path
) -> None:
    issued = await sts.issue(identity=identity)

    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["aud"] == stack.registry.host
    assert (issued.issued_at, issued.expires_at) == (claims["iat"], claims["exp"])
    assert issued.lifetime == stack.token_lifetime
    assert issued.registry == stack.registry.host

    authfile = tmp_path / "config.json"
    authfile.write_bytes(
        with_token(parse_docker_config(b"{}"), registry=issued.registry, token=issued.token)
    )
    pulled = skopeo_inspect(
        skopeo=stack.binaries.skopeo,
        image=stack.registry.image,
        authfile=authfile,
        ca_file=stack.ca_file,
    )
    assert pulled.returncode == 0, pulled.stderr


async def test_exchange_with_a_token_request_token_from_the_apiserver(
    stack: LocalStack, identity: str
) -> None:
    client = AsyncClient(config=KubeConfig.from_file(stack.kubeconfig))
    sa_tokens = TokenRequestTokenSource(
        client, namespace=NAMESPACE, service_account=SERVICE_ACCOUNT, audience=SA_AUDIENCE
    )
    try:
        sa_token = await sa_tokens.get()
        assert await sa_tokens.get() == sa_token  # reused, not requested again
        claims = jwt.decode(sa_token, options={"verify_signature": False})
        assert claims["sub"] == f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
        assert claims["aud"] == [SA_AUDIENCE]
        assert 590 <= claims["exp"] - claims["iat"] <= 3600

        async with _sts(stack, sa_tokens) as sts:
            issued = await sts.issue(identity=identity)
        assert issued.lifetime == stack.token_lifetime
    finally:
        await client.close()


async def test_fifty_concurrent_secrets_cost_one_real_exchange(
    stack: LocalStack, identity: str, sts: ChainguardSTS
) -> None:
    admin = stack.token_admin()
    before = admin.stats()["exchanges"].get(identity, {}).get("ok", 0)
    cache = TokenCache(sts)
    tokens = await asyncio.gather(*(cache.get(identity=identity) for _ in range(50)))
    assert len({token.token for token in tokens}) == 1
    assert admin.stats()["exchanges"][identity]["ok"] == before + 1


@pytest.mark.parametrize("trust", ["another-ca", "system-store"])
async def test_an_sts_certificate_we_cannot_verify_fails_closed(
    stack: LocalStack, identity: str, projected: Projected, tmp_path: Path, trust: str
) -> None:
    if trust == "another-ca":
        ca_bundle = pki.create_ca(tmp_path, name="not the stack's CA").cert_file
        client = _sts(stack, ProjectedFileTokenSource(path=projected.path), ca_bundle=ca_bundle)
    else:
        client = ChainguardSTS(
            sa_tokens=ProjectedFileTokenSource(path=projected.path),
            issuer=stack.token_service.url,
            audience=stack.registry.host,
        )
    async with client:
        with pytest.raises(ExchangeError) as caught:
            await client.issue(identity=identity)
    error = caught.value
    assert (type(error), error.cause, error.retryable) == (ExchangeError, "tls", False)
    assert "could not be verified" in str(error)
    assert "CA bundle" in str(error)
    assert projected.token not in everything_printed(error)


async def test_an_untrusting_identity_is_rejected_with_the_servers_reason(
    stack: LocalStack, sts: ChainguardSTS, projected: Projected
) -> None:
    other = stack.create_kind_identity(
        name=f"other-{uuid.uuid4().hex[:8]}", namespace="elsewhere", service_account="someone"
    )
    with pytest.raises(RejectedExchangeError) as caught:
        await sts.issue(identity=other)
    error = caught.value
    assert (error.status, error.cause, error.retryable) == (403, "rejected", False)
    assert str(error).startswith("token service answered 403 permission_denied: ")
    assert projected.token not in everything_printed(error)


async def test_an_unknown_identity_is_not_found(stack: LocalStack, sts: ChainguardSTS) -> None:
    with pytest.raises(RejectedExchangeError) as caught:
        await sts.issue(identity=f"{uuid.uuid4().hex}/{uuid.uuid4().hex[:16]}")
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
        ("garbage_token", {}, MalformedResponse, "malformed", 200),
        ("refuse", {}, TransientExchangeError, "connection", None),
        ("slow", {"delay": 3.0}, TransientExchangeError, "timeout", None),
    ],
)
async def test_injected_faults_map_to_their_class(
    stack: LocalStack,
    identity: str,
    projected: Projected,
    mode: str,
    options: dict[str, float],
    kind: type[ExchangeError],
    cause: str,
    status: int | None,
) -> None:
    admin = stack.token_admin()
    admin.set_fault(mode, **options)  # type: ignore[arg-type]
    try:
        async with _sts(
            stack, ProjectedFileTokenSource(path=projected.path), timeout=0.5
        ) as client:
            with pytest.raises(ExchangeError) as caught:
                await client.issue(identity=identity)
    finally:
        admin.clear_faults()
    error = caught.value
    assert type(error) is kind
    assert (error.cause, error.status) == (cause, status)
    assert projected.token not in everything_printed(error)
    assert "eyJ" not in everything_printed(error)

    # And once the fault is cleared, the same client setup works again.
    async with _sts(stack, ProjectedFileTokenSource(path=projected.path)) as client:
        assert (await client.issue(identity=identity)).registry == stack.registry.host
