"""AWS's error answers, in each protocol's own shape.

STS speaks the Query protocol: XML ``<ErrorResponse><Error><Type>Sender</Type><Code>...
</Code><Message>...</Message></Error><RequestId>...</RequestId></ErrorResponse>``. ECR speaks
JSON 1.1: ``{"__type": "...", "message": "..."}`` with the code in ``x-amzn-ErrorType`` too.
Handlers raise ``AwsError`` with the code and status AWS documents; the front answers it in
the shape of the API that was called. Messages never hold a token or a key.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from xml.sax.saxutils import escape

from aiohttp import web

XML_CONTENT_TYPE = "text/xml"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


class AwsError(Exception):
    def __init__(self, code: str, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def sender_fault(self) -> bool:
        return self.status < 500


def request_id() -> str:
    return str(uuid.uuid4())


def sts_error(error: AwsError, rid: str) -> web.Response:
    kind = "Sender" if error.sender_fault else "Receiver"
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>{kind}</Type><Code>{escape(error.code)}</Code>"
        f"<Message>{escape(error.message)}</Message></Error>"
        f"<RequestId>{rid}</RequestId></ErrorResponse>"
    )
    return web.Response(
        status=error.status,
        text=body,
        content_type=XML_CONTENT_TYPE,
        headers={"x-amzn-RequestId": rid},
    )


def json_error(error: AwsError, rid: str) -> web.Response:
    return web.json_response(
        {"__type": error.code, "message": error.message},
        status=error.status,
        content_type=JSON_CONTENT_TYPE,
        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": rid},
    )


# -- the errors the front answers, by meaning


def validation(message: str) -> AwsError:
    return AwsError("ValidationError", message)


def invalid_identity_token(message: str) -> AwsError:
    return AwsError("InvalidIdentityToken", message)


def expired_web_identity(message: str) -> AwsError:
    return AwsError("ExpiredTokenException", message)


def idp_rejected_claim(message: str) -> AwsError:
    return AwsError("IDPRejectedClaim", message, HTTPStatus.FORBIDDEN)


def not_authorized_to_assume() -> AwsError:
    # NB: the same answer for a missing role and a trust policy that does not match, so a
    # caller cannot probe which roles exist.
    return AwsError(
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        HTTPStatus.FORBIDDEN,
    )
