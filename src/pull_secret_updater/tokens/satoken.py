"""Service-account tokens: what the controller exchanges for registry tokens.

For its own ServiceAccount there are two sources, as on a real cluster. A projected volume
(kubelet writes the file and rotates it well before expiry; `tokenfile`) is the default and
needs no API permission; it is re-read at every use, because caching it would outlive a
rotation. The
TokenRequest API is for running outside a pod (a laptop, the local stack) or where projected
volumes are not available; there the token is our own request, so it is kept until most of
its lifetime has passed.

With namespace-scoped identities the controller exchanges, for a Secret in namespace N, a
token of the ServiceAccount with a fixed name in N (`SubjectTokens`). Those come only from
TokenRequest, which RBAC limits (`resourceNames`) to that one name, and are kept per subject
like the controller's own.

The token is a credential: no message here includes it, not even a prefix of it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import httpx2

from pull_secret_updater.core.redaction import truncate
from pull_secret_updater.tokens.errors import TokenSourceError
from pull_secret_updater.tokens.provider import Subject, SubjectTokenSource
from pull_secret_updater.tokens.tokenfile import DEFAULT_TOKEN_PATH, ProjectedFileTokenSource

if TYPE_CHECKING:
    from lightkube import AsyncClient

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_TOKEN_PATH",
    "ProjectedFileTokenSource",
    "ServiceAccountTokenSource",
    "SubjectTokenSource",
    "SubjectTokens",
    "TokenRequestTokenSource",
]

DEFAULT_AUDIENCE = "issuer.enforce.dev"

#: The API server's minimum for TokenRequest.spec.expirationSeconds.
MIN_EXPIRATION_SECONDS = 600

#: Share of a requested token's lifetime after which a new one is requested.
REUSE_FRACTION = 0.8

#: How much of the API server's explanation ends up in a message.
MAX_DETAIL = 200


class ServiceAccountTokenSource(Protocol):
    """Gives the controller's current service-account token; raises TokenSourceError."""

    async def get(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Requested:
    token: str = field(repr=False)
    reuse_until: float


class TokenRequestTokenSource:
    """Asks the API server for a token (TokenRequest) and reuses it for 80% of its life.

    Needs `create` on `serviceaccounts/token` for the ServiceAccount. Concurrent callers share
    one request.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        service_account: str,
        audience: str = DEFAULT_AUDIENCE,
        expiration_seconds: int = MIN_EXPIRATION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if expiration_seconds < MIN_EXPIRATION_SECONDS:
            raise ValueError(
                f"expiration_seconds must be at least {MIN_EXPIRATION_SECONDS} "
                "(the API server's minimum)"
            )
        self._client = client
        self.namespace = namespace
        self.service_account = service_account
        self.audience = audience
        self.expiration_seconds = expiration_seconds
        self._clock = clock
        self._current: _Requested | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(namespace={self.namespace!r}, "
            f"service_account={self.service_account!r}, audience={self.audience!r})"
        )

    async def get(self) -> str:
        async with self._lock:
            current = self._current
            if current is not None and self._clock() < current.reuse_until:
                return current.token
            self._current = await self._request()
            return self._current.token

    async def _request(self) -> _Requested:
        # NB: lightkube is loaded here, at the first TokenRequest, so that the file source
        # (all the kubelet plugin needs) loads without the Kubernetes client.
        from lightkube import ApiError
        from lightkube.models.authentication_v1 import TokenRequestSpec
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import ServiceAccountToken

        what = f"TokenRequest for ServiceAccount {self.namespace}/{self.service_account}"
        requested_at = self._clock()
        # NB: lightkube reads metadata.namespace on every namespaced POST, so it must be set.
        request = ServiceAccountToken(
            metadata=ObjectMeta(namespace=self.namespace),
            spec=TokenRequestSpec(
                audiences=[self.audience], expirationSeconds=self.expiration_seconds
            ),
        )
        try:
            response = await self._client.create(
                request, name=self.service_account, namespace=self.namespace
            )
        except ApiError as e:
            code = e.status.code or e.response.status_code
            hint = ""
            if code == 404:
                hint = (
                    f"; create it: kubectl create serviceaccount {self.service_account} "
                    f"-n {self.namespace}"
                )
            detail = truncate(e.status.message or "", limit=MAX_DETAIL)
            raise TokenSourceError(
                f"{what} failed: {code} {e.status.reason or ''}: {detail}" + hint,
                retryable=_retryable(code),
                status=code,
            ) from e
        except httpx2.HTTPStatusError as e:
            code = e.response.status_code
            raise TokenSourceError(
                f"{what} failed: the API server answered {code}",
                retryable=_retryable(code),
                status=code,
            ) from e
        except httpx2.HTTPError as e:
            detail = truncate(str(e), limit=MAX_DETAIL)
            raise TokenSourceError(f"{what} failed: {type(e).__name__}: {detail}") from e
        status = response.status
        token = status.token if status is not None else None
        if not token:
            raise TokenSourceError(f"{what} returned no token")
        # Kept for 80% of what the server granted (it may grant less or more than asked).
        expires_at = requested_at + self.expiration_seconds
        if status is not None and status.expirationTimestamp is not None:
            expires_at = status.expirationTimestamp.timestamp()
        lifetime = max(0.0, expires_at - requested_at)
        if not math.isfinite(lifetime):
            lifetime = 0.0
        return _Requested(token=token, reuse_until=requested_at + REUSE_FRACTION * lifetime)


#: Subjects whose TokenRequest source is kept; the least recently used is dropped beyond it.
MAX_SUBJECTS = 4096


class SubjectTokens:
    """Service-account tokens per subject: `own` from `own_source`, any other subject from
    TokenRequest (only with namespace-scoped identities, which the RBAC must allow)."""

    def __init__(
        self,
        *,
        own: Subject,
        own_source: ServiceAccountTokenSource,
        client: Callable[[], AsyncClient] | None = None,
        audience: str = DEFAULT_AUDIENCE,
        expiration_seconds: int = MIN_EXPIRATION_SECONDS,
    ) -> None:
        self.own = own
        self.expiration_seconds = expiration_seconds
        self._own_source = own_source
        self._client = client
        self.audience = audience
        self._sources: dict[Subject, TokenRequestTokenSource] = {}

    async def get(self, subject: Subject) -> str:
        if subject == self.own:
            return await self._own_source.get()
        source = self._sources.pop(subject, None)
        if source is None:
            if self._client is None:
                raise TokenSourceError(
                    f"no token can be requested for {subject}: only the controller's own "
                    "ServiceAccount is configured",
                    retryable=False,
                )
            source = TokenRequestTokenSource(
                self._client(),
                namespace=subject.namespace,
                service_account=subject.service_account,
                audience=self.audience,
                expiration_seconds=self.expiration_seconds,
            )
        self._sources[subject] = source  # most recently used last
        while len(self._sources) > MAX_SUBJECTS:
            del self._sources[next(iter(self._sources))]
        return await source.get()


def _retryable(status: int) -> bool:
    # Other 4xx are a missing RBAC rule or ServiceAccount: mended by a human, not by time.
    return status in (408, 429) or status >= 500
