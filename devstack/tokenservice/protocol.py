"""What goes over the wire, shared by the service and its admin client (so: no aiohttp here).

Every error is JSON ``{"code", "message"}`` with a real HTTP status. The code is the lowercase
gRPC code name by default (``"permission_denied"``); the STS listener can be switched at
runtime to the numeric codes grpc-gateway sends (``7``), as Chainguard's STS does, so clients
can be tested against both. ``ApiError`` is the one exception a handler raises to answer with
an error; the server turns it into a response in one place. Messages name the cause but never
contain a token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final, Literal

JSONObject = dict[str, Any]

REGISTRY_PULL: Final = "registry.pull"
REGISTRY_USERNAME: Final = "_token"
ADMIN_USERNAME: Final = "admin"

ErrorCodes = Literal["string", "numeric"]
ERROR_CODE_STYLES: Final[tuple[ErrorCodes, ...]] = ("string", "numeric")

# HTTP status -> (string code, gRPC code number), as grpc-gateway maps them back and forth.
_CODES: Final[Mapping[int, tuple[str, int]]] = {
    400: ("invalid_argument", 3),
    401: ("unauthenticated", 16),
    403: ("permission_denied", 7),
    404: ("not_found", 5),
    405: ("method_not_allowed", 12),
    409: ("already_exists", 6),
    429: ("resource_exhausted", 8),
    500: ("internal", 13),
    501: ("unimplemented", 12),
    502: ("unavailable", 14),
    503: ("unavailable", 14),
    504: ("deadline_exceeded", 4),
}
_UNKNOWN: Final = ("unknown", 2)


def code_for_status(status: int) -> str:
    return _CODES.get(status, _UNKNOWN)[0]


def grpc_code_for_status(status: int) -> int:
    return _CODES.get(status, _UNKNOWN)[1]


def error_body(status: int, message: str, *, codes: ErrorCodes = "string") -> JSONObject:
    """The one place the error shape is built."""
    code: str | int = (
        grpc_code_for_status(status) if codes == "numeric" else code_for_status(status)
    )
    return {"code": code, "message": message}


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


class ApiError(Exception):
    """A request failed in a way the client should be told about."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, message)


def unauthenticated(message: str, *, headers: Mapping[str, str] | None = None) -> ApiError:
    return ApiError(HTTPStatus.UNAUTHORIZED, message, headers=headers)


def permission_denied(message: str) -> ApiError:
    return ApiError(HTTPStatus.FORBIDDEN, message)


def not_found(message: str) -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, message)


def unavailable(message: str) -> ApiError:
    return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, message)


# -- small parsers of JSON request fields, shared by every admin body


def unknown_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}")


def optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def optional_int(body: Mapping[str, Any], key: str, *, minimum: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{key} must be an integer")
    if minimum is not None and value < minimum:
        raise bad_request(f"{key} must be at least {minimum}")
    return value


def as_str_list(value: Any) -> list[str]:
    """A JWT-style string-or-list-of-strings field as a list; other values count as empty."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, str) and item]
