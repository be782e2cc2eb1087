"""The Google exchange: a Kubernetes token in, an access token out, in one or two calls.

1. STS ``POST /v1/token`` (RFC 8693 token exchange, form-encoded, as google-auth sends it):
   the Kubernetes token for a federated access token of the principal
   ``principal://iam.googleapis.com/projects/<n>/locations/global/workloadIdentityPools/<pool>/subject/<sub>``,
   which lives ``expires_in`` seconds, never longer than the Kubernetes token it came from.
2. When the Secret names a service account, IAM Credentials ``generateAccessToken`` with the
   federated token as bearer: an access token of the service account, until ``expireTime``.

The token is trusted because this process obtained it over verified TLS from the configured
endpoints; its lifetime is the answer's, never more than an hour (and, for a federated token,
never beyond the Kubernetes token's own ``exp``, which Google caps it by).

Every failure becomes an `ExchangeError`: Google's code (``invalid_grant``,
``PERMISSION_DENIED``...) and message are kept, scrubbed of every token the requests carried
or the answers held, and cut short. Throttling and 5xx are retryable (a Retry-After is
honoured); refusals are not.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx2

from pull_secret_updater.core.claims import InvalidToken, read_claims
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.gar import (
    DEFAULT_IAMCREDENTIALS_ENDPOINT,
    DEFAULT_STS_ENDPOINT,
    IMPERSONATION_LIFETIME,
    MAX_LIFETIME,
    SCOPE,
    USERNAME,
)
from pull_secret_updater.providers.gar.answers import (
    api_error,
    google_error,
    oauth_error,
    parse_rfc3339,
)
from pull_secret_updater.providers.gar.spec import IAM_PREFIXES, GarSpec, provider_resource
from pull_secret_updater.tokens.errors import Cause, MalformedResponse
from pull_secret_updater.tokens.http import (
    NOT_JSON,
    Answer,
    checked_client,
    load_json,
    send,
)
from pull_secret_updater.tokens.provider import Subject, SubjectTokenSource, Unverifiable
from pull_secret_updater.version import user_agent

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class GarExchange(Unverifiable):
    """Obtains Google access tokens for a pool provider, or a service account through it.

    `sts_endpoint` / `iamcredentials_endpoint` replace Google's (Private Service Connect, a
    proxy, a stand-in). `audience` is the Kubernetes tokens' (see `GarSpec`). A token expiring
    within `min_lifetime` seconds is refused as unusable.
    """

    unverifiable = "Google access tokens"

    def __init__(
        self,
        *,
        sa_tokens: SubjectTokenSource,
        audience: str | None = None,
        sts_endpoint: str = DEFAULT_STS_ENDPOINT,
        iamcredentials_endpoint: str = DEFAULT_IAMCREDENTIALS_ENDPOINT,
        ca_bundle: Path | None = None,
        timeout: float = 10.0,
        min_lifetime: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = checked_client(
            endpoints={
                "sts_endpoint": sts_endpoint,
                "iamcredentials_endpoint": iamcredentials_endpoint,
            },
            timeout=timeout,
            user_agent=user_agent(),
            ca_bundle=ca_bundle,
            transport=transport,
        )
        self.sts_endpoint = sts_endpoint.rstrip("/")
        self.iamcredentials_endpoint = iamcredentials_endpoint.rstrip("/")
        self.timeout = timeout
        self.min_lifetime = min_lifetime
        self.spec = GarSpec(audience=audience)
        self._sa_tokens = sa_tokens
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sts_endpoint={self.sts_endpoint!r}, "
            f"iamcredentials_endpoint={self.iamcredentials_endpoint!r})"
        )

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        """An access token for `want.identity`: the pool provider's principal itself, or the
        service account it impersonates (then `want.scope` is the provider)."""
        impersonating = bool(want.scope)
        resource = provider_resource(want.scope if impersonating else want.identity)
        if resource is None:
            raise ValueError("a Google want names its workload identity pool provider")
        sa_token = await self._sa_tokens.get(subject)
        issued_at = self._clock()
        federated, expires_at = await self._exchange(resource=resource, sa_token=sa_token)
        token = federated
        if impersonating:
            token, expires_at = await self._impersonate(
                email=want.identity, federated=federated, sa_token=sa_token
            )
        return Credential(
            provider=self.spec.name,
            identity=want.identity,
            registries=want.registries,
            username=USERNAME,
            token=token,
            issued_at=issued_at,
            expires_at=expires_at,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- STS ---------------------------------------------------------------------------------

    async def _exchange(self, *, resource: str, sa_token: str) -> tuple[str, float]:
        url = f"{self.sts_endpoint}/v1/token"
        where = f"Google STS at {url}"
        form = {
            "grant_type": GRANT_TYPE,
            "audience": IAM_PREFIXES[0] + resource,
            "scope": SCOPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
            "subject_token": sa_token,
            "subject_token_type": JWT_TOKEN_TYPE,
        }
        request = self._client.build_request(
            "POST",
            url,
            content=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = await send(
            self._client, request, where=where, deadline=2 * self.timeout, secrets=(sa_token,)
        )
        if not 200 <= answer.status < 300:
            code, message = oauth_error(answer)
            raise google_error("Google STS", answer, code=code, message=message,
                               secrets=(sa_token,))  # fmt: skip
        document = self._document(answer, where=where)
        token = document.get("access_token")
        self._check_token(token, answer, where=where, field="access_token")
        assert isinstance(token, str)
        expires_in = document.get("expires_in")
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or not math.isfinite(expires_in)
        ):
            raise _malformed(answer, where, "without a numeric expires_in", cause="no_exp")
        now = self._clock()
        expires_at = now + min(float(expires_in), MAX_LIFETIME)
        # NB: Google never lets a federated token outlive the Kubernetes token; an answer
        # saying otherwise is not believed. The claim is only read to shorten, never to trust.
        with contextlib.suppress(InvalidToken):
            expires_at = min(expires_at, read_claims(sa_token).exp)
        return token, self._usable(expires_at, now, answer, where=where)

    # -- IAM Credentials -----------------------------------------------------------------------

    async def _impersonate(self, *, email: str, federated: str, sa_token: str) -> tuple[str, float]:
        url = (
            f"{self.iamcredentials_endpoint}/v1/projects/-/serviceAccounts/"
            f"{quote(email, safe='@')}:generateAccessToken"
        )
        where = f"Google IAM Credentials at {self.iamcredentials_endpoint}"
        body = {"scope": [SCOPE], "lifetime": f"{IMPERSONATION_LIFETIME}s"}
        request = self._client.build_request(
            "POST",
            url,
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {federated}"},
        )
        secrets = (federated, sa_token)
        answer = await send(
            self._client, request, where=where, deadline=2 * self.timeout, secrets=secrets
        )
        if not 200 <= answer.status < 300:
            code, message = api_error(answer)
            raise google_error("Google IAM Credentials", answer, code=code, message=message,
                               secrets=secrets)  # fmt: skip
        document = self._document(answer, where=where)
        token = document.get("accessToken")
        self._check_token(token, answer, where=where, field="accessToken")
        assert isinstance(token, str)
        expire_time = document.get("expireTime")
        expires_at = parse_rfc3339(expire_time) if isinstance(expire_time, str) else None
        if expires_at is None:
            raise _malformed(answer, where, "without an RFC 3339 expireTime", cause="no_exp")
        now = self._clock()
        expires_at = min(expires_at, now + MAX_LIFETIME)
        return token, self._usable(expires_at, now, answer, where=where)

    # -- answers -------------------------------------------------------------------------------

    @staticmethod
    def _document(answer: Answer, *, where: str) -> dict[str, object]:
        document = load_json(answer.body)
        if not isinstance(document, dict):
            raise _malformed(
                answer,
                where,
                "but the body is " + ("not JSON" if document is NOT_JSON else "not a JSON object"),
            )
        return document

    @staticmethod
    def _check_token(token: object, answer: Answer, *, where: str, field: str) -> None:
        if not isinstance(token, str) or not token:
            raise _malformed(answer, where, f"without an {field}")
        if not (token.isascii() and token.isprintable()) or " " in token:
            raise _malformed(answer, where, f"with an {field} that is not a printable token")

    def _usable(self, expires_at: float, now: float, answer: Answer, *, where: str) -> float:
        remaining = expires_at - now
        if remaining <= 0:
            raise _malformed(
                answer, where, "with a token that has already expired (is a clock wrong?)",
                cause="expired",
            )  # fmt: skip
        if remaining < self.min_lifetime:
            raise _malformed(
                answer,
                where,
                f"with a token that expires in less than the minimum of {self.min_lifetime:g}s",
                cause="short_lived",
            )
        return expires_at


def _malformed(
    answer: Answer, where: str, what: str, *, cause: Cause = "malformed"
) -> MalformedResponse:
    return MalformedResponse(f"{where} answered {answer.status} {what}", cause=cause,
                             status=answer.status)  # fmt: skip
