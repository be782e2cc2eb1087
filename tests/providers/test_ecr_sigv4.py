"""The ECR provider's SigV4 signer gives the Authorization header botocore's gives, on the same
requests: any keys, times, regions, hosts, ports, endpoint paths and bodies."""

from __future__ import annotations

import string

from botocore.awsrequest import AWSRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from pull_secret_updater.providers.ecr.sigv4 import amz_date, authorization
from tests.providers.aws import botocore_authorization

_KEY = st.text(alphabet=string.ascii_letters + string.digits + "/+=", min_size=1, max_size=60)
_REGION = st.sampled_from(["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1", "me-central-1"])
_HOST = st.sampled_from(
    ["api.ecr.us-east-1.amazonaws.com", "127.0.0.1:8443", "ecr.example.internal:443", "localhost"]
)
_PATH = st.sampled_from(["/", "/aws/", "/a.b_c~d-e/"])


@settings(max_examples=300, deadline=None)
@given(
    access_key=_KEY,
    secret_key=_KEY,
    token=_KEY,
    region=_REGION,
    host=_HOST,
    path=_PATH,
    body=st.binary(max_size=200),
    epoch=st.integers(min_value=0, max_value=4_102_444_800),
    target=st.sampled_from(["AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken", "X.Y"]),
)
def test_it_signs_as_botocore_does(
    access_key: str,
    secret_key: str,
    token: str,
    region: str,
    host: str,
    path: str,
    body: bytes,
    epoch: int,
    target: str,
) -> None:
    stamp = amz_date(epoch)
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "Host": host,
        "X-Amz-Date": stamp,
        "X-Amz-Security-Token": token,
        "X-Amz-Target": target,
    }
    ours = authorization(
        method="POST",
        path=path,
        headers=headers,
        body=body,
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        service="ecr",
    )
    reference = botocore_authorization(
        AWSRequest(method="POST", url=f"https://{host}{path}", data=body, headers=headers),
        access_key=access_key,
        secret_key=secret_key,
        token=token,
        region=region,
        service="ecr",
        stamp=stamp,
    )
    assert ours == reference


def test_the_timestamp_is_sigv4s_basic_utc_format() -> None:
    assert amz_date(0) == "19700101T000000Z"
    assert amz_date(1_800_000_000.9) == "20270115T080000Z"


def test_a_known_answer_from_botocore_is_reproduced() -> None:
    # Fixed inputs, so that a change in either signer shows as a changed string here too.
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": "api.ecr.eu-west-1.amazonaws.com",
        "x-amz-date": "20270115T080000Z",
        "x-amz-security-token": "session-token",
        "x-amz-target": "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
    }
    ours = authorization(
        method="POST",
        path="/",
        headers=headers,
        body=b"{}",
        access_key="ASIAEXAMPLE",
        secret_key="secret",
        region="eu-west-1",
        service="ecr",
    )
    reference = botocore_authorization(
        AWSRequest(
            method="POST",
            url="https://api.ecr.eu-west-1.amazonaws.com/",
            data=b"{}",
            headers=headers,
        ),
        access_key="ASIAEXAMPLE",
        secret_key="secret",
        token="session-token",
        region="eu-west-1",
        service="ecr",
        stamp="20270115T080000Z",
    )
    assert ours == reference
    assert ours.startswith(
        "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20270115/eu-west-1/ecr/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, "
        "Signature="
    )
