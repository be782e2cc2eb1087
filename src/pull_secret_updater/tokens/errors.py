"""Why getting a registry token failed, one class per meaning.

The rest of the controller only asks two questions of a failure: is it worth retrying soon
(`retryable`), and what short word names it for a metric label or an Event reason (`cause`).
So every transport error, HTTP status and unusable answer is translated here, once, into::

    ExchangeError                  cause, retryable, status; cause "tls": not retryable
    ├── TransientExchangeError     refused/reset connection, timeout, 408, 429, 5xx: retryable
    ├── RejectedExchangeError      400, 401, 403, 404, other 4xx: not retryable
    ├── MalformedResponse          a 200 whose token we cannot use or cannot verify: retryable
    ├── KeysUnavailable            the token service's keys cannot be fetched: retryable
    └── TokenSourceError           the service-account token to exchange could not be had

"Not retryable" means "retried slower" (see `core.backoff`): the fix is a human one,
such as creating the identity, but once it is made the Secret should still be filled.

A plain `ExchangeError` with cause "tls" is a certificate the controller cannot verify: a
wrong CA bundle or an interception proxy, either way not something waiting will mend.

Messages carry the HTTP status and the server's own short explanation, never a token: the
server's words are scrubbed of anything shaped like a JWT and truncated before they get here.
"""

from __future__ import annotations

from typing import Literal

Cause = Literal[
    "unavailable",  # 5xx
    "throttled",  # 429
    "timeout",  # connect/read timeout, 408, or the whole exchange took too long
    "connection",  # refused, reset, DNS, TLS handshake cut short
    "tls",  # the server's certificate failed verification
    "rejected",  # 400, 403 and other 4xx
    "unauthorized",  # 401: the service-account token was not accepted
    "not_found",  # 404: no such identity
    "malformed",  # a 200 that is not JSON or has no token
    "no_exp",  # the token has no exp claim, so we cannot know when to refresh it
    "expired",  # the token is already expired
    "short_lived",  # the token expires sooner than the minimum usable lifetime
    "sa_token",  # the service-account token to exchange is unavailable
    "untrusted",  # the token does not verify with the token service's keys, or is not ours
    "keys",  # the token service's keys cannot be fetched, so no token can be verified
    "rate_limited",  # the Secret's namespace started too many exchanges: its budget is spent
]


class ExchangeError(Exception):
    """Getting a registry token failed; the message never contains a token."""

    def __init__(
        self,
        message: str,
        /,
        *,
        cause: Cause,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.cause: Cause = cause
        self.retryable = retryable
        self.status = status
        #: Seconds the server asked us to wait (Retry-After on 429/503), when it said so.
        self.retry_after = retry_after


class TransientExchangeError(ExchangeError):
    """The token service could not answer now; the same request may well succeed later."""

    def __init__(
        self,
        message: str,
        /,
        *,
        cause: Cause,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, cause=cause, retryable=True, status=status, retry_after=retry_after
        )


class RejectedExchangeError(ExchangeError):
    """The token service refused the request; repeating it unchanged will not help soon."""

    def __init__(self, message: str, /, *, cause: Cause, status: int) -> None:
        super().__init__(message, cause=cause, retryable=False, status=status)


class MalformedResponse(ExchangeError):
    """The token service said yes but gave us nothing usable.

    Retryable: a misbehaving server (a bad deploy, a clock off by an hour) may recover.
    """

    def __init__(self, message: str, /, *, cause: Cause, status: int | None = 200) -> None:
        super().__init__(message, cause=cause, retryable=True, status=status)


class KeysUnavailable(ExchangeError):
    """The token service's published keys cannot be fetched, so no token can be verified.

    Nothing is exchanged meanwhile (a token we cannot verify is no use), and tokens already
    in Secrets are left as they are until the keys can be had.
    """

    def __init__(self, message: str, /, *, cause: Cause = "keys", retryable: bool = True) -> None:
        # cause "tls": the service's certificate failed verification, not worth a fast retry.
        super().__init__(message, cause=cause, retryable=retryable)


class TokenSourceError(ExchangeError):
    """The controller's own service-account token, which it exchanges, is unavailable.

    A missing projected file is usually a pod still starting (retryable); a TokenRequest the
    API server forbids is a missing RBAC rule (not retryable). `status` is the API server's.
    """

    def __init__(
        self, message: str, /, *, retryable: bool = True, status: int | None = None
    ) -> None:
        super().__init__(message, cause="sa_token", retryable=retryable, status=status)
