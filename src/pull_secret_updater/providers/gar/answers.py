"""What Google answers, read: STS's OAuth errors, IAM Credentials' Google API errors, its
RFC 3339 times, and their meaning as an `ExchangeError` (retryable or not, with Google's
code and scrubbed message).

STS answers an error as OAuth does (RFC 6749 5.2): ``{"error": "invalid_grant",
"error_description": "..."}``. IAM Credentials answers as every Google API does:
``{"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED"}}``.
"""

from __future__ import annotations

import re
from datetime import datetime

from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.tokens.errors import (
    ExchangeError,
    RejectedExchangeError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.http import MAX_DETAIL, Answer, load_json

_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Google API statuses worth retrying soon, besides any 5xx.
_TRANSIENT = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})
_THROTTLED = frozenset({"RESOURCE_EXHAUSTED", "rate_limit_exceeded"})
_UNAUTHORIZED = frozenset({"invalid_grant", "unauthorized_client", "UNAUTHENTICATED"})
_NOT_FOUND = frozenset({"invalid_target", "NOT_FOUND"})
_RFC3339 = re.compile(
    r"(?P<seconds>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.[0-9]{1,9})?"
    r"(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})"
)


def oauth_error(answer: Answer) -> tuple[str | None, str]:
    """(error, error_description) of an OAuth error answer."""
    document = load_json(answer.body)
    if not isinstance(document, dict):
        return None, ""
    code, message = document.get("error"), document.get("error_description")
    if isinstance(code, dict):  # the Google API shape, should STS answer with it
        return api_error(answer)
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else "")


def api_error(answer: Answer) -> tuple[str | None, str]:
    """(status, message) of a Google API error answer."""
    document = load_json(answer.body)
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, ""
    status, message = error.get("status"), error.get("message")
    return (
        (status if isinstance(status, str) else None),
        (message if isinstance(message, str) else ""),
    )


def google_error(
    service: str, answer: Answer, *, code: str | None, message: str, secrets: tuple[str, ...]
) -> ExchangeError:
    code = code if code and _SAFE_CODE.fullmatch(code) else None
    detail = truncate(redact(message, known=secrets), limit=MAX_DETAIL) if message else ""
    status = answer.status
    text = (
        f"{service} answered {status}"
        + (f" {code}" if code else "")
        + (f": {detail}" if detail else "")
    )
    if code in _THROTTLED or status == 429:
        return TransientExchangeError(
            text, cause="throttled", status=status, retry_after=answer.retry_after
        )
    if status >= 500 or code in _TRANSIENT or code == "temporarily_unavailable":
        return TransientExchangeError(
            text, cause="unavailable", status=status, retry_after=answer.retry_after
        )
    if status == 408:
        return TransientExchangeError(text, cause="timeout", status=status)
    if code in _UNAUTHORIZED or status == 401:
        return RejectedExchangeError(text, cause="unauthorized", status=status)
    if code in _NOT_FOUND or status == 404:
        return RejectedExchangeError(text, cause="not_found", status=status)
    return RejectedExchangeError(text, cause="rejected", status=status)


def parse_rfc3339(value: str) -> float | None:
    """Epoch seconds of an RFC 3339 time as Google writes them (fractions dropped), or None."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    try:
        return datetime.fromisoformat(match["seconds"] + zone).timestamp()
    except ValueError:
        return None
