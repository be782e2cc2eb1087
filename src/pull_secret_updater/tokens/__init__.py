"""Registry tokens: the controller's own service-account token, the exchange, the cache.

Data flows one way: a `ServiceAccountTokenSource` gives the controller's Kubernetes token, a
`TokenProvider` (for now `ChainguardSTS`) exchanges it for a registry token, and a
`TokenCache` makes N Secrets sharing an identity cost one exchange per refresh window.
Everything that goes wrong is an `ExchangeError` (see `errors` for the tree).
"""

from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.errors import (
    Cause,
    ExchangeError,
    MalformedResponse,
    RejectedExchangeError,
    TokenSourceError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.provider import IssuedToken, TokenProvider
from pull_secret_updater.tokens.satoken import (
    ProjectedFileTokenSource,
    ServiceAccountTokenSource,
    TokenRequestTokenSource,
)
from pull_secret_updater.tokens.sts import ChainguardSTS

__all__ = [
    "Cause",
    "ChainguardSTS",
    "ExchangeError",
    "IssuedToken",
    "MalformedResponse",
    "ProjectedFileTokenSource",
    "RejectedExchangeError",
    "ServiceAccountTokenSource",
    "TokenCache",
    "TokenProvider",
    "TokenRequestTokenSource",
    "TokenSourceError",
    "TransientExchangeError",
]
