"""Registry tokens: the controller's own service-account token, the exchange, the cache.

Data flows one way: `SubjectTokens` gives the Kubernetes token of the subject that exchanges
(the controller's own ServiceAccount, or one in the Secret's namespace), a `TokenProvider`
(each registry provider's, in `pull_secret_updater.providers`) exchanges it for a registry token
and verifies that token against the token service's published keys (`TokenVerifier`), and a
`TokenCache` makes N Secrets sharing an identity cost one exchange per refresh window.
Everything that goes wrong is an `ExchangeError` (see `errors` for the tree).
"""

from typing import TYPE_CHECKING

from pull_secret_updater.core.lazy import exports

if TYPE_CHECKING:
    from pull_secret_updater.tokens.cache import TokenCache
    from pull_secret_updater.tokens.errors import (
        Cause,
        ExchangeError,
        KeysUnavailable,
        MalformedResponse,
        RejectedExchangeError,
        TokenSourceError,
        TransientExchangeError,
    )
    from pull_secret_updater.tokens.provider import Subject, TokenProvider
    from pull_secret_updater.tokens.satoken import (
        ProjectedFileTokenSource,
        ServiceAccountTokenSource,
        SubjectTokens,
        SubjectTokenSource,
        TokenRequestTokenSource,
    )
    from pull_secret_updater.tokens.verification import TokenVerifier

__all__ = [
    "Cause",
    "ExchangeError",
    "KeysUnavailable",
    "MalformedResponse",
    "ProjectedFileTokenSource",
    "RejectedExchangeError",
    "ServiceAccountTokenSource",
    "Subject",
    "SubjectTokenSource",
    "SubjectTokens",
    "TokenCache",
    "TokenProvider",
    "TokenRequestTokenSource",
    "TokenSourceError",
    "TokenVerifier",
    "TransientExchangeError",
]

_HOMES = {
    "TokenCache": "pull_secret_updater.tokens.cache",
    "Cause": "pull_secret_updater.tokens.errors",
    "ExchangeError": "pull_secret_updater.tokens.errors",
    "KeysUnavailable": "pull_secret_updater.tokens.errors",
    "MalformedResponse": "pull_secret_updater.tokens.errors",
    "RejectedExchangeError": "pull_secret_updater.tokens.errors",
    "TokenSourceError": "pull_secret_updater.tokens.errors",
    "TransientExchangeError": "pull_secret_updater.tokens.errors",
    "Subject": "pull_secret_updater.tokens.provider",
    "TokenProvider": "pull_secret_updater.tokens.provider",
    "ProjectedFileTokenSource": "pull_secret_updater.tokens.satoken",
    "ServiceAccountTokenSource": "pull_secret_updater.tokens.satoken",
    "SubjectTokens": "pull_secret_updater.tokens.satoken",
    "SubjectTokenSource": "pull_secret_updater.tokens.satoken",
    "TokenRequestTokenSource": "pull_secret_updater.tokens.satoken",
    "TokenVerifier": "pull_secret_updater.tokens.verification",
}


__getattr__ = exports(__name__, _HOMES)
