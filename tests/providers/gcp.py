"""Google STS and IAM Credentials in-process, for the Google provider's unit and contract tests.

Each request is checked as Google checks it: STS wants the RFC 8693 token exchange with the
fields and types it documents, the audience naming a provider it knows, and the Kubernetes
token that provider trusts; IAM Credentials wants a federated token it issued, not expired,
whose principal holds ``roles/iam.workloadIdentityUser`` on the service account, and a body
with a scope list and a ``lifetime`` of at most an hour. The real SDK (google-auth) against
the local stack's stand-in is tested in `tests/stack`.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote

import httpx2

from tests.fakes import FakeClock
from tests.providers.cloud import Failure, FakeCloud

PROJECT_NUMBER = "123456789012"
POOL = "cluster-pool"
PROVIDER = f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{POOL}/providers/kube"
SERVICE_ACCOUNT = "puller@my-project.iam.gserviceaccount.com"
HOST = "europe-west4-docker.pkg.dev"
STS_URL = "https://sts.googleapis.com/v1/token"
IAM_URL = "https://iamcredentials.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_GENERATE = re.compile(r"/v1/projects/-/serviceAccounts/(?P<email>[^/:]+):generateAccessToken")


@dataclass
class Federated:
    principal: str
    expires_at: float


@dataclass
class FakeGoogle(FakeCloud):
    """STS for `providers` (resource name -> the Kubernetes token it trusts) and IAM
    Credentials for `bindings` (service account email -> pool providers whose principals hold
    roles/iam.workloadIdentityUser on it)."""

    clock: FakeClock
    providers: dict[str, str]
    bindings: dict[str, set[str]] = field(default_factory=dict)
    lifetime: float = 3600
    federated: dict[str, Federated] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: {"sts": 0, "iam": 0})
    #: Answer the next requests to this service ("sts" or "iam") with (status, body, headers).
    failing: dict[str, Failure] = field(default_factory=dict)
    #: Replace an answer document (a lying or broken service), per service.
    answers: dict[str, object] = field(default_factory=dict)

    def service_of(self, request: httpx2.Request) -> str:
        return "iam" if request.url.host.startswith("iamcredentials") else "sts"

    def answer(self, service: str, request: httpx2.Request, body: bytes) -> httpx2.Response:
        if service == "sts":
            return self._sts(request, body)
        return self._iam(request, body)

    def _sts(self, request: httpx2.Request, body: bytes) -> httpx2.Response:
        assert request.method == "POST"
        assert request.url.path == "/v1/token"
        assert "authorization" not in request.headers, "the subject token is the credential"
        assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return oauth_error(400, "unsupported_grant_type", "grant_type is not supported")
        if form.get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token":
            return oauth_error(400, "invalid_request", "Invalid requested_token_type")
        if form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt":
            return oauth_error(400, "invalid_request", "Invalid subject_token_type")
        assert form.get("scope") == SCOPE
        audience = form.get("audience", "")
        resource = audience.removeprefix("//iam.googleapis.com/")
        if not audience.startswith("//iam.googleapis.com/") or resource not in self.providers:
            return oauth_error(400, "invalid_target", "The target service indicated by the "
                               '"audience" parameters is invalid.')  # fmt: skip
        if self.providers[resource] != form.get("subject_token"):
            return oauth_error(400, "invalid_grant", "The audience in ID Token does not match "
                               "the expected audience.")  # fmt: skip
        token = "ya29.d." + secrets.token_urlsafe(64)
        pool = resource.rsplit("/providers/", 1)[0]
        self.federated[token] = Federated(
            principal=f"principal://iam.googleapis.com/{pool}/subject/sub",
            expires_at=self.clock.now + self.lifetime,
        )
        self.issued.append(token)
        document = self.answers.get("sts") or {
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": int(self.lifetime),
        }
        return httpx2.Response(200, content=json.dumps(document).encode(),
                               headers={"content-type": "application/json"})  # fmt: skip

    def _iam(self, request: httpx2.Request, body: bytes) -> httpx2.Response:
        assert request.method == "POST"
        match = _GENERATE.fullmatch(request.url.raw_path.decode())
        assert match is not None, request.url
        email = unquote(match["email"])
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        federated = self.federated.get(bearer)
        if federated is None or federated.expires_at <= self.clock.now:
            return api_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                             "credentials.")  # fmt: skip
        assert request.headers["content-type"] == "application/json"
        document = json.loads(body)
        assert document["scope"] == [SCOPE]
        lifetime = re.fullmatch(r"([0-9]+)s", document.get("lifetime", "3600s"))
        if lifetime is None or not 1 <= int(lifetime[1]) <= 3600:
            return api_error(400, "INVALID_ARGUMENT", "lifetime must be 1s to 3600s")
        pools = self.bindings.get(email)
        if pools is None:
            return api_error(404, "NOT_FOUND", f"Service account {email} not found.")
        if not any(federated.principal.startswith(f"principal://iam.googleapis.com/{p}/")
                   for p in pools):  # fmt: skip
            return api_error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                "(or it may not exist).",
            )
        token = "ya29.c." + secrets.token_urlsafe(64)
        self.issued.append(token)
        expires = datetime.fromtimestamp(self.clock.now + int(lifetime[1]), tz=UTC)
        answer = self.answers.get("iam") or {
            "accessToken": token,
            "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%S.123456789Z"),
        }
        return httpx2.Response(200, content=json.dumps(answer).encode(),
                               headers={"content-type": "application/json"})  # fmt: skip


def oauth_error(status: int, code: str, description: str) -> httpx2.Response:
    return httpx2.Response(
        status,
        content=json.dumps({"error": code, "error_description": description}).encode(),
        headers={"content-type": "application/json"},
    )


def api_error(status: int, code: str, message: str) -> httpx2.Response:
    return httpx2.Response(
        status,
        content=json.dumps(
            {"error": {"code": status, "message": message, "status": code}}
        ).encode(),
        headers={"content-type": "application/json"},
    )
