"""AWS STS and ECR in-process, for the ECR provider's unit and contract tests.

Each request is checked as AWS checks it, with botocore's own SigV4 signer as the reference:
the STS call must be the Query API's form with the role's web identity token, and the ECR
call must be signed, with the session's keys, over the headers it says it signed. The real
AWS SDK against the local stack's moto-based stand-in is tested in `tests/stack`.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes import FakeClock
from tests.providers.cloud import Failure, FakeCloud

ACCOUNT = "111122223333"
REGION = "eu-west-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/puller"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
STS_URL = f"https://sts.{REGION}.amazonaws.com"
ECR_URL = f"https://api.ecr.{REGION}.amazonaws.com"
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"


def botocore_authorization(
    request: AWSRequest,
    *,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    service: str,
    stamp: str,
) -> str:
    """The Authorization header botocore's SigV4 signer gives `request` at `stamp`."""
    signer = SigV4Auth(Credentials(access_key, secret_key, token), service, region)
    request.context["timestamp"] = stamp
    canonical = signer.canonical_request(request)
    to_sign = signer.string_to_sign(request, canonical)
    signature = signer.signature(to_sign, request)
    scope = signer.scope(request)
    signed = signer.signed_headers(signer.headers_to_sign(request))
    return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, Signature={signature}"


@dataclass
class Session:
    secret_key: str
    session_token: str
    role: str
    expires_at: float


@dataclass
class FakeAws(FakeCloud):
    """STS and ECR for `roles` (role ARN -> the web identity token it trusts)."""

    clock: FakeClock
    roles: dict[str, str]
    lifetime: float = 12 * 3600
    sessions: dict[str, Session] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: {"sts": 0, "ecr": 0})
    #: Answer the next requests to this service ("sts" or "ecr") with (status, body, headers).
    failing: dict[str, Failure] = field(default_factory=dict)
    #: Replace ECR's answer document (a lying or broken service).
    ecr_answer: object | None = None

    def service_of(self, request: httpx2.Request) -> str:
        return "ecr" if request.headers.get("x-amz-target") else "sts"

    def answer(self, service: str, request: httpx2.Request, body: bytes) -> httpx2.Response:
        if service == "sts":
            return self._sts(request, body)
        return self._ecr(request, body)

    def _sts(self, request: httpx2.Request, body: bytes) -> httpx2.Response:
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        assert request.method == "POST"
        assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert "authorization" not in request.headers, "AssumeRoleWithWebIdentity is unsigned"
        assert form["Action"] == "AssumeRoleWithWebIdentity"
        assert form["Version"] == "2011-06-15"
        assert 2 <= len(form["RoleSessionName"]) <= 64
        role = form["RoleArn"]
        if self.roles.get(role) != form["WebIdentityToken"]:
            return sts_error(
                403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"
            )
        access_key = "ASIA" + secrets.token_hex(8).upper()
        expires_at = self.clock.now + int(form.get("DurationSeconds", "3600"))
        self.sessions[access_key] = Session(
            secret_key=secrets.token_urlsafe(30),
            session_token=secrets.token_urlsafe(60),
            role=role,
            expires_at=expires_at,
        )
        session = self.sessions[access_key]
        xml = (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><Credentials>"
            f"<AccessKeyId>{access_key}</AccessKeyId>"
            f"<SecretAccessKey>{session.secret_key}</SecretAccessKey>"
            f"<SessionToken>{session.session_token}</SessionToken>"
            "<Expiration>2027-01-15T08:00:00.123456Z</Expiration>"
            "</Credentials></AssumeRoleWithWebIdentityResult>"
            "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        )
        return httpx2.Response(200, content=xml.encode(), headers={"content-type": "text/xml"})

    def _ecr(self, request: httpx2.Request, body: bytes) -> httpx2.Response:
        assert request.headers["x-amz-target"] == ECR_TARGET
        assert request.headers["content-type"] == "application/x-amz-json-1.1"
        header = request.headers.get("authorization", "")
        fields = dict(
            part.strip().split("=", 1)
            for part in header.removeprefix("AWS4-HMAC-SHA256 ").split(",")
        )
        access_key, _date, region, service, _ = fields["Credential"].split("/")
        session = self.sessions.get(access_key)
        if session is None:
            return ecr_error(
                400,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        signed = fields["SignedHeaders"].split(";")
        reference = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=body,
            headers={name: request.headers[name] for name in signed},
        )
        expected = botocore_authorization(
            reference,
            access_key=access_key,
            secret_key=session.secret_key,
            token=session.session_token,
            region=region,
            service=service,
            stamp=request.headers["x-amz-date"],
        )
        if (
            expected != header
            or service != "ecr"
            or request.headers.get("x-amz-security-token") != session.session_token
            or not {"host", "x-amz-date", "x-amz-security-token"} <= set(signed)
        ):
            return ecr_error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match.",
            )
        if self.clock.now >= session.expires_at:
            return ecr_error(
                400,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            )
        password = "ecr." + secrets.token_urlsafe(48)
        self.issued.append(password)
        document = (
            self.ecr_answer
            if self.ecr_answer is not None
            else {
                "authorizationData": [
                    {
                        "authorizationToken": base64.b64encode(f"AWS:{password}".encode()).decode(),
                        "expiresAt": self.clock.now + self.lifetime,
                        "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com",
                    }
                ]
            }
        )
        return httpx2.Response(
            200,
            content=json.dumps(document).encode(),
            headers={"content-type": "application/x-amz-json-1.1"},
        )


def sts_error(status: int, code: str, message: str) -> httpx2.Response:
    xml = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
    )
    return httpx2.Response(status, content=xml.encode(), headers={"content-type": "text/xml"})


def ecr_error(status: int, code: str, message: str) -> httpx2.Response:
    return httpx2.Response(
        status,
        content=json.dumps({"__type": code, "message": message}).encode(),
        headers={
            "content-type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/",
        },
    )
