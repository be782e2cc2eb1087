"""The Google stand-in as Google's SDK sees it: google-auth's external-account (identity
pool) credentials with ``token_url`` and ``service_account_impersonation_url`` pointed at
``stack.gcp.endpoint``, reading a real Kubernetes token from a file (``credential_source``),
over a requests session that trusts the stack's CA. Nothing of the SDK is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import google.auth.transport.requests
import requests
from google.auth import identity_pool

from devstack.stack import LocalStack
from tests.helpers import unique

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class Workload:
    """A ServiceAccount, a pool provider whose condition allows it, maybe a Google service
    account it may impersonate."""

    namespace: str
    service_account: str
    provider: str
    email: str

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def new_workload(stack: LocalStack, prefix: str = "gcp") -> Workload:
    namespace = unique(prefix)
    stack.control_plane.kubectl("create", "namespace", namespace)
    stack.control_plane.kubectl("create", "serviceaccount", "app", "-n", namespace)
    subject = f"system:serviceaccount:{namespace}:app"
    provider = stack.gcp.create_pool_provider(unique("kube")[:32], allowed_subjects=[subject])
    email = stack.gcp.create_service_account(unique("puller")[:30])
    stack.gcp.bind(email, stack.gcp.principal(subject))
    return Workload(namespace, "app", provider, email)


def token_for(
    stack: LocalStack, workload: Workload, *, audience: str | None = None, seconds: int = 3600
) -> str:
    """A real TokenRequest token of the workload's ServiceAccount, for the provider's default
    audience (its full name) unless told otherwise."""
    return stack.control_plane.service_account_token(
        workload.namespace,
        workload.service_account,
        audience=audience or stack.gcp.provider_audience(workload.provider),
        seconds=seconds,
    )


def sdk_credentials(
    stack: LocalStack,
    workload: Workload,
    token_file: Path,
    *,
    impersonate: bool = True,
    provider: str | None = None,
) -> identity_pool.Credentials:
    info = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/" + (provider or workload.provider),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{stack.gcp.endpoint}/v1/token",
        "credential_source": {"file": str(token_file)},
    }
    if impersonate:
        info["service_account_impersonation_url"] = (
            f"{stack.gcp.endpoint}/v1/projects/-/serviceAccounts/"
            f"{workload.email}:generateAccessToken"
        )
    credentials: identity_pool.Credentials = identity_pool.Credentials.from_info(  # type: ignore[no-untyped-call]
        info, scopes=[SCOPE]
    )
    return credentials


def sdk_request(stack: LocalStack) -> google.auth.transport.requests.Request:
    session = requests.Session()
    # NB: requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override a session's verify.
    session.trust_env = False
    session.verify = str(stack.ca_file)
    return google.auth.transport.requests.Request(session)


def refresh(stack: LocalStack, credentials: identity_pool.Credentials) -> str:
    """The SDK's token, refreshed now (google-auth's ``refresh`` is untyped)."""
    credentials.refresh(sdk_request(stack))  # type: ignore[no-untyped-call]
    token = credentials.token
    assert isinstance(token, str)
    return token
