"""The ECR exchange: a Kubernetes token in, an ECR password out, in two AWS calls.

1. STS ``AssumeRoleWithWebIdentity`` (the Query API, unsigned: the web identity token is the
   credential), form-encoded POST to the region's STS endpoint; the XML answer holds
   temporary credentials of the role.
2. ECR ``GetAuthorizationToken`` (JSON 1.1), signed with SigV4 (`sigv4`) by those
   credentials, to the region's ECR API endpoint; the answer's ``authorizationToken`` is
   base64 ``AWS:<password>`` and ``expiresAt`` (epoch seconds) says when it expires.

The temporary credentials sign that one request and are dropped. The password is trusted
because this process obtained it over verified TLS from the configured endpoints; its
lifetime is the answer's ``expiresAt``, never more than ECR's 12 hours.

Every failure becomes an `ExchangeError`: AWS's error code and message are kept (they say
why, e.g. the trust policy's ``AccessDenied``), scrubbed of the tokens and keys the request
carried, and cut short. Throttling and 5xx are retryable (a Retry-After is honoured);
``AccessDenied``, ``InvalidIdentityToken``, ``ExpiredTokenException`` and other refusals are
not.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx2

from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.ecr import (
    DEFAULT_SESSION_DURATION,
    MAX_LIFETIME,
    USERNAME,
)
from pull_secret_updater.providers.ecr.answers import (
    SessionKeys,
    aws_error,
    json_error,
    session_keys,
    xml_error,
)
from pull_secret_updater.providers.ecr.sigv4 import amz_date, authorization
from pull_secret_updater.providers.ecr.spec import EcrSpec, domain_of
from pull_secret_updater.tokens.errors import (
    Cause,
    MalformedResponse,
)
from pull_secret_updater.tokens.http import (
    NOT_JSON,
    Answer,
    checked_client,
    load_json,
    send,
)
from pull_secret_updater.tokens.provider import Subject, SubjectTokenSource, Unverifiable
from pull_secret_updater.version import user_agent

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
STS_VERSION = "2011-06-15"

_SESSION_CHARACTER = re.compile(r"[^A-Za-z0-9_=,.@-]")


class EcrExchange(Unverifiable):
    """Obtains ECR passwords for a role (`Want.identity`) in a region (`Want.scope`).

    `sts_endpoint` / `ecr_endpoint` replace the region's own (``https://sts.<region>.<domain>``,
    ``https://api.ecr.<region>.<domain>``) for every region, for VPC endpoints, proxies or a
    stand-in. A password expiring within `min_lifetime` seconds is refused as unusable.
    """

    unverifiable = "ECR passwords"

    def __init__(
        self,
        *,
        sa_tokens: SubjectTokenSource,
        sts_endpoint: str | None = None,
        ecr_endpoint: str | None = None,
        ca_bundle: Path | None = None,
        session_duration: int = DEFAULT_SESSION_DURATION,
        timeout: float = 10.0,
        min_lifetime: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = checked_client(
            endpoints={"sts_endpoint": sts_endpoint, "ecr_endpoint": ecr_endpoint},
            timeout=timeout,
            user_agent=user_agent(),
            ca_bundle=ca_bundle,
            transport=transport,
        )
        self.sts_endpoint = sts_endpoint.rstrip("/") if sts_endpoint else None
        self.ecr_endpoint = ecr_endpoint.rstrip("/") if ecr_endpoint else None
        self.session_duration = session_duration
        self.timeout = timeout
        self.min_lifetime = min_lifetime
        self.spec = EcrSpec()
        self._sa_tokens = sa_tokens
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sts_endpoint={self.sts_endpoint!r}, "
            f"ecr_endpoint={self.ecr_endpoint!r})"
        )

    def sts_url(self, region: str) -> str:
        return self.sts_endpoint or f"https://sts.{region}.{domain_of(region)}"

    def ecr_url(self, region: str) -> str:
        return self.ecr_endpoint or f"https://api.ecr.{region}.{domain_of(region)}"

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        """An ECR password for the role `want.identity` in region `want.scope`, assumed with
        the token of `subject`."""
        region = want.scope
        if not region:
            raise ValueError("an ECR want names its region")
        sa_token = await self._sa_tokens.get(subject)
        keys = await self._assume_role(
            role_arn=want.identity, region=region, subject=subject, sa_token=sa_token
        )
        issued_at = self._clock()
        password, expires_at = await self._authorization_token(region=region, keys=keys)
        return Credential(
            provider=self.spec.name,
            identity=want.identity,
            registries=want.registries,
            username=USERNAME,
            token=password,
            issued_at=issued_at,
            expires_at=expires_at,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- STS ---------------------------------------------------------------------------------

    async def _assume_role(
        self, *, role_arn: str, region: str, subject: Subject, sa_token: str
    ) -> SessionKeys:
        url = self.sts_url(region)
        where = f"AWS STS at {url}"
        form = {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": STS_VERSION,
            "RoleArn": role_arn,
            "RoleSessionName": session_name(subject),
            "WebIdentityToken": sa_token,
            "DurationSeconds": str(self.session_duration),
        }
        request = self._client.build_request(
            "POST",
            url + "/",
            content=urlencode(form).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "Accept": "text/xml",
            },
        )
        answer = await send(
            self._client, request, where=where, deadline=2 * self.timeout, secrets=(sa_token,)
        )
        if not 200 <= answer.status < 300:
            code, message = xml_error(answer.body)
            raise aws_error("AWS STS", answer, code=code, message=message, secrets=(sa_token,))
        return session_keys(answer, where=where)

    # -- ECR ---------------------------------------------------------------------------------

    async def _authorization_token(self, *, region: str, keys: SessionKeys) -> tuple[str, float]:
        url = self.ecr_url(region)
        where = f"Amazon ECR at {url}"
        body = b"{}"
        request = self._client.build_request(
            "POST",
            url + "/",
            content=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": ECR_TARGET,
                "X-Amz-Date": amz_date(self._clock()),
                "X-Amz-Security-Token": keys.session_token,
            },
        )
        signed = {
            name: request.headers[name]
            for name in (
                "content-type",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-amz-target",
            )
        }
        request.headers["Authorization"] = authorization(
            method="POST",
            path=request.url.raw_path.decode("ascii").split("?", 1)[0],
            headers=signed,
            body=body,
            access_key=keys.access_key,
            secret_key=keys.secret_key,
            region=region,
            service="ecr",
        )
        secrets = (keys.secret_key, keys.session_token)
        answer = await send(
            self._client, request, where=where, deadline=2 * self.timeout, secrets=secrets
        )
        if not 200 <= answer.status < 300:
            code, message = json_error(answer)
            raise aws_error("Amazon ECR", answer, code=code, message=message, secrets=secrets)
        return self._accept(answer, where=where)

    def _accept(self, answer: Answer, *, where: str) -> tuple[str, float]:
        def malformed(what: str, cause: Cause = "malformed") -> MalformedResponse:
            return MalformedResponse(
                f"{where} answered {answer.status} {what}", cause=cause, status=answer.status
            )

        document = load_json(answer.body)
        if not isinstance(document, dict):
            raise malformed(
                "but the body is " + ("not JSON" if document is NOT_JSON else "not a JSON object")
            )
        data = document.get("authorizationData")
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise malformed("without authorizationData")
        token, expires_at = data[0].get("authorizationToken"), data[0].get("expiresAt")
        if not isinstance(token, str) or not token:
            raise malformed("without an authorizationToken")
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            # NB: not chained: the exception's text may hold part of the token.
            decoded = ""
        username, _, password = decoded.partition(":")
        if username != USERNAME or not password or not password.isprintable():
            raise malformed(
                f"with an authorizationToken that is not base64 of {USERNAME}:<password>"
            )
        if (
            isinstance(expires_at, bool)
            or not isinstance(expires_at, int | float)
            or not math.isfinite(expires_at)
        ):
            raise malformed("without a numeric expiresAt", cause="no_exp")
        now = self._clock()
        remaining = min(float(expires_at) - now, MAX_LIFETIME)
        if remaining <= 0:
            raise malformed(
                "with a password that has already expired (is a clock wrong?)", cause="expired"
            )
        if remaining < self.min_lifetime:
            raise malformed(
                f"with a password that expires in less than the minimum of {self.min_lifetime:g}s",
                cause="short_lived",
            )
        return password, now + remaining


def session_name(subject: Subject) -> str:
    """The role session's name (it shows in CloudTrail): who asked, within AWS's 2-64
    characters of ``[\\w+=,.@-]``."""
    name = f"pull-secret-updater@{subject.namespace}.{subject.service_account}"
    return _SESSION_CHARACTER.sub("-", name)[:64]
