"""The tokens package's public API, pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import pull_secret_updater.tokens as tokens


def test_public_api_is_pinned() -> None:
    assert sorted(tokens.__all__) == [
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
    assert all(hasattr(tokens, name) for name in tokens.__all__)


def test_every_error_is_an_exchange_error() -> None:
    for name in ("KeysUnavailable", "MalformedResponse", "RejectedExchangeError",
                 "TokenSourceError", "TransientExchangeError"):  # fmt: skip
        assert issubclass(getattr(tokens, name), tokens.ExchangeError)


def test_errors_say_whether_waiting_helps() -> None:
    assert tokens.KeysUnavailable("keys down").retryable is True
    assert tokens.KeysUnavailable("keys down").cause == "keys"
    assert tokens.RejectedExchangeError("no", cause="rejected", status=403).retryable is False
    assert tokens.MalformedResponse("bad", cause="untrusted").retryable is True


def test_a_subject_reads_as_the_service_accounts_user_name() -> None:
    subject = tokens.Subject(namespace="team-a", service_account="pull-secret-updater")
    assert str(subject) == "system:serviceaccount:team-a:pull-secret-updater"
    assert subject == tokens.Subject("team-a", "pull-secret-updater")
    assert len({subject, tokens.Subject("team-a", "pull-secret-updater")}) == 1
