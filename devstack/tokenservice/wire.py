"""The aiohttp side of the protocol: reading request bodies and bearer tokens, writing errors.

Errors become responses here and nowhere else: a handler raises ``ApiError`` (or lets an
aiohttp HTTP exception or a bug escape), and ``errors_as_json`` answers the JSON error shape in
the code style its listener uses at that moment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from devstack.tokenservice.protocol import (
    ApiError,
    ErrorCodes,
    JSONObject,
    bad_request,
    error_body,
)

log = logging.getLogger("devstack.tokenservice")

CodeStyle = Callable[[], ErrorCodes]


def string_codes() -> ErrorCodes:
    return "string"


def error_response(
    status: int,
    message: str,
    *,
    codes: ErrorCodes = "string",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        error_body(status, message, codes=codes), status=status, headers=headers
    )


def api_error_response(error: ApiError, *, codes: ErrorCodes = "string") -> web.Response:
    return error_response(error.status, error.message, codes=codes, headers=error.headers)


def errors_as_json(codes: CodeStyle = string_codes) -> Middleware:
    """Middleware answering every error of an app as JSON, in the style ``codes()`` names."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return api_error_response(e, codes=codes())
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return error_response(e.status, e.reason, codes=codes())
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", codes=codes())

    return middleware


async def json_object(request: web.Request) -> JSONObject:
    try:
        body = await request.json()
    except ValueError as e:
        raise bad_request("request body is not JSON") from e
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(aiohttp.hdrs.AUTHORIZATION, "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
