"""Fixtures for the token service tests: one service process per test module, its clients,
a cluster-like service-account token signer and an identity that trusts it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx2
import pytest

from devstack import pki
from devstack.tokenservice import ReadyInfo, TokenServiceAdmin, TokenServiceError
from tests.integration.tokenservice_support import (
    ADMIN_PASSWORD,
    KUBE_ISSUER,
    LIFETIME,
    REGISTRY_AUDIENCE,
    REGISTRY_SERVICE,
    SUBJECT,
    OidcIssuer,
    SaSigner,
    Tls,
    client_for,
    running_service,
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.create_ca(directory)
    serving = pki.issue_cert(
        ca, directory, stem="tokenservice", common_name="tokenservice", hosts=("127.0.0.1",)
    )
    return Tls(ca.cert_file, serving)


@pytest.fixture(scope="module")
def kube() -> SaSigner:
    return SaSigner(KUBE_ISSUER, "kube-key-1")


@pytest.fixture(scope="module")
def forger() -> SaSigner:
    """Claims to be the cluster, with the cluster's kid, but holds another key."""
    return SaSigner(KUBE_ISSUER, "kube-key-1")


@pytest.fixture(scope="module")
def oidc_issuer(tls: Tls) -> Iterator[OidcIssuer]:
    issuer = OidcIssuer(tls.serving)
    yield issuer
    issuer.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[ReadyInfo]:
    workdir = tmp_path_factory.mktemp("tokenservice")
    extra = [
        f"--registry-service={REGISTRY_SERVICE}",
        f"--registry-audience={REGISTRY_AUDIENCE}",
        f"--admin-password={ADMIN_PASSWORD}",
    ]
    with running_service(workdir, tls, state_dir=workdir / "state", extra=extra) as ready:
        yield ready


@pytest.fixture(scope="module")
def admin(service: ReadyInfo, tls: Tls) -> Iterator[TokenServiceAdmin]:
    with TokenServiceAdmin.from_ready(service, tls.ca_file) as client:
        yield client


@pytest.fixture
def sts(service: ReadyInfo, tls: Tls) -> Iterator[httpx2.Client]:
    with client_for(service.sts_url, tls) as client:
        yield client


@pytest.fixture
def registry(service: ReadyInfo, tls: Tls) -> Iterator[httpx2.Client]:
    realm = httpx2.URL(service.registry_realm)
    with client_for(f"{realm.scheme}://{realm.host}:{realm.port}", tls) as client:
        yield client


@pytest.fixture
def fresh_service_state(admin: TokenServiceAdmin) -> Iterator[None]:
    """What a test may change at runtime is put back after it (a token service test module
    uses it for every test, with ``pytestmark``)."""
    yield
    admin.clear_faults()
    admin.reset_stats()
    admin.set_lifetime(LIFETIME)
    admin.set_error_codes("string")


@pytest.fixture
def identity(admin: TokenServiceAdmin, kube: SaSigner) -> Iterator[str]:
    uid = admin.create_identity(
        name="kind-pull-secrets", issuer=KUBE_ISSUER, subject=SUBJECT, issuer_keys=kube.jwks()
    )
    yield uid
    with contextlib.suppress(TokenServiceError):
        admin.delete_identity(uid)
