"""The tokens package's public API, pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import pull_secret_updater.tokens as tokens


def test_public_api_is_pinned() -> None:
    assert sorted(tokens.__all__) == [
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


def test_every_error_is_an_exchange_error() -> None:
    for name in ("MalformedResponse", "RejectedExchangeError", "TokenSourceError",
                 "TransientExchangeError"):  # fmt: skip
        assert issubclass(getattr(tokens, name), tokens.ExchangeError)
