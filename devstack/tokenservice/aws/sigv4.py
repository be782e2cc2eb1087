"""Checking a request's Signature Version 4 the way an AWS service does: recompute it.

The signature is recomputed with botocore's own signer (``SigV4Auth``) from the request as it
arrived: its method, path and query, the headers the client says it signed, its body, its
``X-Amz-Date``, and the secret key of the temporary credentials STS issued for the access key
in the credential scope. The scope also names the region (which the ECR password is then for)
and the service, which must be the one called.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from devstack.tokenservice.aws.errors import AwsError
from devstack.tokenservice.aws.ledger import Ledger, Session

ALGORITHM: Final = "AWS4-HMAC-SHA256"
#: How far X-Amz-Date may be from now (AWS: 15 minutes).
MAX_SKEW: Final = 15 * 60
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]+)\s*$"
)


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path_and_query: str
    headers: Mapping[str, str]  # as received; names case-insensitive
    body: bytes


@dataclass(frozen=True)
class Caller:
    """Who signed a request, and for which region."""

    session: Session
    region: str


def _forbidden(code: str, message: str) -> AwsError:
    return AwsError(code, message, HTTPStatus.FORBIDDEN)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def verify(
    request: SignedRequest, *, service: str, ledger: Ledger, now: float | None = None
) -> Caller:
    """The caller of a correctly signed request with live credentials; ``AwsError`` otherwise."""
    now = time.time() if now is None else now
    authorization = _header(request.headers, "Authorization")
    if authorization is None:
        raise _forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        raise AwsError("IncompleteSignatureException", f"Authorization header requires {ALGORITHM}")
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise AwsError("IncompleteSignatureException", "Credential is malformed")
    access_key, date, region, scope_service, _ = parts
    if scope_service != service:
        raise _forbidden(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    session = ledger.sessions.get(access_key)
    token = _header(request.headers, "X-Amz-Security-Token")
    if session is None or token is None or not hmac.compare_digest(token, session.session_token):
        raise _forbidden(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if session.expires_at <= now:
        raise AwsError(
            "ExpiredTokenException", "The security token included in the request is expired"
        )
    amz_date = _header(request.headers, "X-Amz-Date") or ""
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AwsError(
            "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
        ) from None
    if not amz_date.startswith(date) or abs(signed_at.timestamp() - now) > MAX_SKEW:
        raise _forbidden("InvalidSignatureException", "Signature expired or not yet current")
    signed = match["headers"].split(";")
    if "host" not in signed:
        raise _forbidden("InvalidSignatureException", "'Host' must be a signed header")
    expected = _signature(request, session, signed, amz_date, region, service)
    if not hmac.compare_digest(expected, match["signature"]):
        raise _forbidden(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return Caller(session=session, region=region)


def _signature(
    request: SignedRequest,
    session: Session,
    signed: list[str],
    amz_date: str,
    region: str,
    service: str,
) -> str:
    # NB: imported here, so the token service starts without botocore (boto3 warms up later).
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {name: _header(request.headers, name) or "" for name in signed}
    host = headers["host"]
    aws_request = AWSRequest(
        method=request.method,
        url=f"https://{host}{request.path_and_query}",
        data=request.body,
        headers=headers,
    )
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(session.access_key_id, session.secret_access_key, session.session_token),
        service,
        region,
    )
    canonical = signer.canonical_request(aws_request)
    string_to_sign = signer.string_to_sign(aws_request, canonical)
    return str(signer.signature(string_to_sign, aws_request))
