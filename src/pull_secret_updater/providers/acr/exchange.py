"""The ACR exchange: a Kubernetes token in, an ACR refresh token out, in two form POSTs.

1. Entra ID's token endpoint, ``<authority>/<tenant>/oauth2/v2.0/token``, with the client
   credentials grant and the Kubernetes token as a federated client assertion, for the scope
   ``https://containerregistry.azure.net/.default``: an access token (about an hour).
2. The registry's ``/oauth2/exchange`` with ``grant_type=access_token``, the registry's
   ``service`` and the tenant: a refresh token for that registry, the registry password.

The access token is used once and dropped. The refresh token is trusted because this process
obtained it over verified TLS from the configured endpoints; its lifetime is its own ``exp``
claim, read without verifying the signature (the registry's key is not published, so it
cannot be verified offline) and never more than `MAX_LIFETIME` (ACR's 3 hours).

Every failure becomes an `ExchangeError`: Entra's ``AADSTS`` code and description are kept
(they say why, e.g. AADSTS700213: no federated credential matches the subject), scrubbed of
the tokens the request carried, and cut short. Throttling and 5xx are retryable (a
Retry-After is honoured); a refused assertion, an unknown app or tenant, and a registry's
refusal are not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx2

from pull_secret_updater.core.claims import InvalidToken, read_claims
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.providers import Want
from pull_secret_updater.providers.acr import (
    DEFAULT_AUTHORITY_HOST,
    MAX_LIFETIME,
    SCOPE,
    USERNAME,
)
from pull_secret_updater.providers.acr.answers import acr_error, entra_error
from pull_secret_updater.providers.acr.spec import AcrSpec, service_of, split_identity
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

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class AcrExchange(Unverifiable):
    """Obtains ACR refresh tokens for an app (`Want.identity`, ``<tenant>/<client>``) and a
    registry (`Want.scope`).

    `authority_host` is Entra ID's (sovereign clouds: ``https://login.chinacloudapi.cn``,
    ``https://login.microsoftonline.us``); `acr_endpoint` replaces ``https://<registry>``
    for every registry's ``/oauth2/exchange`` (a proxy, a stand-in). A refresh token expiring
    within `min_lifetime` seconds is refused as unusable.
    """

    unverifiable = "ACR refresh tokens"

    def __init__(
        self,
        *,
        sa_tokens: SubjectTokenSource,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        acr_endpoint: str | None = None,
        ca_bundle: Path | None = None,
        timeout: float = 10.0,
        min_lifetime: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = checked_client(
            endpoints={"authority_host": authority_host, "acr_endpoint": acr_endpoint},
            timeout=timeout,
            user_agent=user_agent(),
            ca_bundle=ca_bundle,
            transport=transport,
        )
        self.authority_host = authority_host.rstrip("/")
        self.acr_endpoint = acr_endpoint.rstrip("/") if acr_endpoint else None
        self.timeout = timeout
        self.min_lifetime = min_lifetime
        self.spec = AcrSpec()
        self._sa_tokens = sa_tokens
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(authority_host={self.authority_host!r}, "
            f"acr_endpoint={self.acr_endpoint!r})"
        )

    def token_url(self, tenant: str) -> str:
        return f"{self.authority_host}/{tenant}/oauth2/v2.0/token"

    def exchange_url(self, registry: str) -> str:
        return f"{self.acr_endpoint or 'https://' + registry}/oauth2/exchange"

    async def issue(self, *, want: Want, subject: Subject) -> Credential:
        """A refresh token for registry `want.scope`, as app `want.identity`, obtained with the
        token of `subject`."""
        registry = want.scope
        if not registry:
            raise ValueError("an ACR want names its registry")
        tenant, client = split_identity(want.identity)
        sa_token = await self._sa_tokens.get(subject)
        access_token = await self._access_token(tenant=tenant, client=client, sa_token=sa_token)
        issued_at = self._clock()
        refresh_token, expires_at = await self._refresh_token(
            registry=registry, tenant=tenant, access_token=access_token
        )
        return Credential(
            provider=self.spec.name,
            identity=want.identity,
            registries=want.registries,
            username=USERNAME,
            token=refresh_token,
            issued_at=issued_at,
            expires_at=expires_at,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- Entra ID ----------------------------------------------------------------------------

    async def _access_token(self, *, tenant: str, client: str, sa_token: str) -> str:
        url = self.token_url(tenant)
        form = {
            "grant_type": "client_credentials",
            "client_id": client,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": sa_token,
            "scope": SCOPE,
        }
        answer = await self._post(
            url, form, where=f"Microsoft Entra ID at {url}", secrets=(sa_token,)
        )
        if not 200 <= answer.status < 300:
            raise entra_error(answer, secrets=(sa_token,))
        document = self._document(answer, where="Microsoft Entra ID")
        token = document.get("access_token")
        if not isinstance(token, str) or not token or not token.isprintable():
            raise _malformed(answer, "Microsoft Entra ID", "without an access_token")
        return token

    # -- the registry ------------------------------------------------------------------------

    async def _refresh_token(
        self, *, registry: str, tenant: str, access_token: str
    ) -> tuple[str, float]:
        url = self.exchange_url(registry)
        where = f"the registry {registry} at {url}"
        form = {
            "grant_type": "access_token",
            "service": service_of(registry),
            "tenant": tenant,
            "access_token": access_token,
        }
        secrets = (access_token,)
        answer = await self._post(url, form, where=where, secrets=secrets)
        if not 200 <= answer.status < 300:
            raise acr_error(answer, where=f"the registry {registry}", secrets=secrets)
        document = self._document(answer, where=f"the registry {registry}")
        token = document.get("refresh_token")
        if (
            not isinstance(token, str)
            or not token
            or not token.isascii()
            or not token.isprintable()
        ):
            raise _malformed(answer, f"the registry {registry}", "without a refresh_token")
        return token, self._expiry(token, answer, registry=registry)

    def _expiry(self, token: str, answer: Answer, *, registry: str) -> float:
        where = f"the registry {registry}"
        try:
            claims = read_claims(token)
        except InvalidToken as e:
            # NB: the message names the cause only; the token is not in it.
            raise _malformed(
                answer, where, f"with a refresh token whose expiry cannot be read ({e})", "no_exp"
            ) from None
        if claims.aud and service_of(registry) not in claims.aud:
            raise _malformed(answer, where, "with a refresh token for another registry")
        now = self._clock()
        remaining = min(claims.exp - now, MAX_LIFETIME)
        if remaining <= 0:
            raise _malformed(
                answer, where, "with a refresh token that has already expired (is a clock wrong?)",
                "expired",
            )  # fmt: skip
        if remaining < self.min_lifetime:
            raise _malformed(
                answer,
                where,
                f"with a refresh token that expires in less than the minimum of "
                f"{self.min_lifetime:g}s",
                "short_lived",
            )
        return now + remaining

    # -- both --------------------------------------------------------------------------------

    async def _post(
        self, url: str, form: dict[str, str], *, where: str, secrets: tuple[str, ...]
    ) -> Answer:
        request = self._client.build_request(
            "POST", url, content=urlencode(form).encode(), headers=_FORM
        )
        return await send(
            self._client, request, where=where, deadline=2 * self.timeout, secrets=secrets
        )

    def _document(self, answer: Answer, *, where: str) -> dict[str, object]:
        document = load_json(answer.body)
        if not isinstance(document, dict):
            raise _malformed(
                answer,
                where,
                "but the body is " + ("not JSON" if document is NOT_JSON else "not a JSON object"),
            )
        return document


def _malformed(
    answer: Answer, where: str, what: str, cause: Cause = "malformed"
) -> MalformedResponse:
    return MalformedResponse(f"{where} answered {answer.status} {what}", cause=cause,
                             status=answer.status)  # fmt: skip
