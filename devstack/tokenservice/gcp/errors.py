"""Google's error answers, in each API's own shape.

STS answers as OAuth 2.0 does (RFC 6749 5.2, RFC 8693 2.2.2): ``{"error": "invalid_grant",
"error_description": "..."}``. IAM Credentials answers as every Google API does:
``{"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED"}}``. Handlers raise
``GoogleError``; the front answers it in the shape of the API that was called. Messages never
hold a token.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

#: Google API status names by HTTP status, as google.rpc.Code maps them.
API_STATUS: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class GoogleError(Exception):
    """``code``: OAuth's ``error`` (STS) or the API status name (IAM Credentials)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def oauth_response(error: GoogleError) -> web.Response:
    return web.json_response(
        {"error": error.code, "error_description": error.message}, status=error.status
    )


def api_response(error: GoogleError) -> web.Response:
    body = {"error": {"code": error.status, "message": error.message, "status": error.code}}
    return web.json_response(body, status=error.status)


# -- STS's errors, by meaning


def invalid_request(message: str) -> GoogleError:
    return GoogleError(400, "invalid_request", message)


def invalid_grant(message: str) -> GoogleError:
    return GoogleError(400, "invalid_grant", message)


def invalid_target() -> GoogleError:
    return GoogleError(
        400,
        "invalid_target",
        'The target service indicated by the "audience" parameters is invalid. This might '
        "either be because the pool or provider is disabled or deleted or because it doesn't "
        "exist.",
    )


def rejected_by_condition() -> GoogleError:
    return GoogleError(
        400, "unauthorized_client", "The given credential is rejected by the attribute condition."
    )


# -- IAM Credentials' errors


def api_error(status: int, message: str) -> GoogleError:
    return GoogleError(status, API_STATUS[status], message)
