"""AWS Signature Version 4 for the one request the ECR provider signs.

The request is always the same shape: ``POST`` of a small JSON body, no query string, five
headers (content-type, host, x-amz-date, x-amz-security-token, x-amz-target). botocore's
signer (`botocore.auth.SigV4Auth`) is the reference and the tests check this one against it on
the same requests (`tests/providers/test_ecr_sigv4.py`); it is not used here because importing
it costs 150-190 ms (it pulls in urllib3, dateutil and botocore's data loaders), most of the
kubelet plugin's budget for a cold call, and its 31 MB would double the image.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

ALGORITHM = "AWS4-HMAC-SHA256"


def amz_date(epoch: float) -> str:
    """`epoch` as SigV4's basic-format UTC timestamp, e.g. 20261207T135000Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(epoch)))


def authorization(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
) -> str:
    """The Authorization header for a request with no query string, signing every header in
    `headers` (which must hold `host` and `x-amz-date`)."""
    lowered = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    stamp = lowered["x-amz-date"]
    signed = ";".join(sorted(lowered))
    canonical = "\n".join(
        (
            method.upper(),
            path or "/",
            "",
            "".join(f"{name}:{lowered[name]}\n" for name in sorted(lowered)),
            signed,
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join((ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()))
    key = ("AWS4" + secret_key).encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
