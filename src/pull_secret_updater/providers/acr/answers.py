"""What Entra ID and ACR answer, read: their JSON errors and their meaning as an
`ExchangeError` (retryable or not, with Entra's ``AADSTS`` code and a scrubbed message).

Entra's errors are OAuth 2.0's, plus its own codes::

    {"error": "invalid_client", "error_description": "AADSTS700213: No matching federated
     identity record found for presented assertion subject ...", "error_codes": [700213], ...}

ACR's are the registry API's (``{"errors": [{"code": "UNAUTHORIZED", "message": ...}]}``),
or, from its OAuth endpoints, the OAuth shape again.
"""

from __future__ import annotations

import re

from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.tokens.errors import (
    Cause,
    ExchangeError,
    RejectedExchangeError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.http import MAX_DETAIL, Answer, load_json

_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_AADSTS = re.compile(r"AADSTS[0-9]{4,8}")
#: Entra's codes for "try again": throttled, or a transient fault of its own.
_THROTTLED_CODES = frozenset({50196, 90055})
_TRANSIENT_CODES = frozenset({90033, 50088, 90006, 500011})
#: The app or the tenant does not exist (as named).
_NOT_FOUND_CODES = frozenset({90002, 700016, 90023})


def entra_error(answer: Answer, *, secrets: tuple[str, ...]) -> ExchangeError:
    """Entra ID's refusal as an ExchangeError."""
    document = load_json(answer.body)
    error: object = None
    description: object = ""
    codes: list[int] = []
    if isinstance(document, dict):
        error = document.get("error")
        description = document.get("error_description") or ""
        listed = document.get("error_codes")
        if isinstance(listed, list):
            codes = [c for c in listed if isinstance(c, int) and not isinstance(c, bool)]
    error = error if isinstance(error, str) and _SAFE_CODE.fullmatch(error) else None
    text = description if isinstance(description, str) else ""
    aadsts = _AADSTS.search(text)
    code = aadsts[0] if aadsts else (f"AADSTS{codes[0]}" if codes else None)
    if aadsts:
        # "AADSTS700213: No matching..." -> "No matching..." (the code is said once).
        text = text[aadsts.end() :].lstrip(": ")
    # Entra appends its trace and correlation IDs to every description: noise in an Event.
    text = text.split("Trace ID:", 1)[0].strip()
    detail = truncate(redact(text, known=secrets), limit=MAX_DETAIL) if text else ""
    status = answer.status
    message = (
        f"Microsoft Entra ID answered {status}"
        + (f" {error}" if error else "")
        + (f" {code}" if code else "")
        + (f": {detail}" if detail else "")
    )
    numbers = set(codes)
    if status == 429 or numbers & _THROTTLED_CODES:
        return TransientExchangeError(
            message, cause="throttled", status=status, retry_after=answer.retry_after
        )
    if status >= 500 or error == "temporarily_unavailable" or numbers & _TRANSIENT_CODES:
        return TransientExchangeError(
            message, cause="unavailable", status=status, retry_after=answer.retry_after
        )
    if status == 408:
        return TransientExchangeError(message, cause="timeout", status=status)
    cause: Cause = "rejected"
    if numbers & _NOT_FOUND_CODES:
        cause = "not_found"
    elif error in {"invalid_client", "unauthorized_client", "invalid_grant"} or status == 401:
        cause = "unauthorized"
    return RejectedExchangeError(message, cause=cause, status=status)


def acr_error(answer: Answer, *, where: str, secrets: tuple[str, ...]) -> ExchangeError:
    """The registry's refusal of the exchange as an ExchangeError."""
    document = load_json(answer.body)
    code: object = None
    detail: object = ""
    if isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code, detail = errors[0].get("code"), errors[0].get("message") or ""
        else:
            code, detail = document.get("error"), document.get("error_description") or ""
    code = code if isinstance(code, str) and _SAFE_CODE.fullmatch(code) else None
    text = detail if isinstance(detail, str) else ""
    shown = truncate(redact(text, known=secrets), limit=MAX_DETAIL) if text else ""
    status = answer.status
    message = (
        f"{where} answered {status}"
        + (f" {code}" if code else "")
        + (f": {shown}" if shown else "")
    )
    if status == 429 or code == "TOOMANYREQUESTS":
        return TransientExchangeError(
            message, cause="throttled", status=status, retry_after=answer.retry_after
        )
    if status >= 500:
        return TransientExchangeError(
            message, cause="unavailable", status=status, retry_after=answer.retry_after
        )
    if status == 408:
        return TransientExchangeError(message, cause="timeout", status=status)
    if status == 401:
        return RejectedExchangeError(message, cause="unauthorized", status=status)
    if status == 404:
        return RejectedExchangeError(message, cause="not_found", status=status)
    return RejectedExchangeError(message, cause="rejected", status=status)
