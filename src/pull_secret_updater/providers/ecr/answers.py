"""What AWS answers, read: the STS XML, ECR's JSON errors, and their meaning as an
`ExchangeError` (retryable or not, with AWS's code and scrubbed message)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

from pull_secret_updater.core.redaction import redact, truncate
from pull_secret_updater.tokens.errors import (
    ExchangeError,
    MalformedResponse,
    RejectedExchangeError,
    TransientExchangeError,
)
from pull_secret_updater.tokens.http import MAX_DETAIL, Answer, load_json

_SAFE_CODE = re.compile(r"[A-Za-z0-9_.:#-]{1,128}")
#: AWS error codes worth retrying soon, besides any 5xx.
_TRANSIENT = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "IDPCommunicationError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "ServerException",
    }
)
_THROTTLED = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
)


class SessionKeys:
    """A role session's temporary credentials; never printed."""

    __slots__ = ("access_key", "secret_key", "session_token")

    def __init__(self, access_key: str, secret_key: str, session_token: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token

    def __repr__(self) -> str:
        return "SessionKeys(...)"


def session_keys(answer: Answer, *, where: str) -> SessionKeys:
    def malformed(what: str) -> MalformedResponse:
        return MalformedResponse(
            f"{where} answered {answer.status} {what}", cause="malformed", status=answer.status
        )

    root = _parse_xml(answer.body)
    if root is None:
        raise malformed("but the body is not XML")
    found = {
        name: _find_text(root, name) for name in ("AccessKeyId", "SecretAccessKey", "SessionToken")
    }
    if not all(found.values()):
        raise malformed("without the role's temporary credentials")
    return SessionKeys(
        found["AccessKeyId"] or "", found["SecretAccessKey"] or "", found["SessionToken"] or ""
    )


def _parse_xml(body: bytes) -> ElementTree.Element | None:
    # NB: what defusedxml does, in two lines: no document with a DTD reaches the parser, so
    # no entity can be declared (no expansion bomb, no external entity); `send` bounds the size.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None
    try:
        return ElementTree.fromstring(body)  # noqa: S314 (no DTD, see above)
    except ElementTree.ParseError:
        return None


def _find_text(root: ElementTree.Element, name: str) -> str | None:
    """The text of the first element called `name` in any namespace."""
    for element in root.iter():
        if element.tag == name or element.tag.endswith("}" + name):
            return (element.text or "").strip() or None
    return None


def xml_error(body: bytes) -> tuple[str | None, str]:
    """(Code, Message) of an AWS Query API ``ErrorResponse``."""
    root = _parse_xml(body)
    if root is None:
        return None, ""
    return _find_text(root, "Code"), _find_text(root, "Message") or ""


def json_error(answer: Answer) -> tuple[str | None, str]:
    """(code, message) of an AWS JSON API error: ``__type`` or the x-amzn-ErrorType header."""
    document = load_json(answer.body)
    code: object = answer.headers.get("x-amzn-ErrorType")
    message: object = ""
    if isinstance(document, dict):
        code = document.get("__type") or code
        message = document.get("message") or document.get("Message") or ""
    if isinstance(code, str):
        # "com.amazonaws.ecr#ThrottlingException" or "ThrottlingException:http://..."
        code = code.rsplit("#", 1)[-1].split(":", 1)[0]
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else "")


def aws_error(
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
    if status >= 500 or code in _TRANSIENT:
        return TransientExchangeError(
            text, cause="unavailable", status=status, retry_after=answer.retry_after
        )
    if status == 408:
        return TransientExchangeError(text, cause="timeout", status=status)
    if code in {"InvalidIdentityToken", "ExpiredTokenException", "ExpiredToken"} or status == 401:
        return RejectedExchangeError(text, cause="unauthorized", status=status)
    if code in {"RepositoryNotFoundException", "RegistryNotFoundException"} or status == 404:
        return RejectedExchangeError(text, cause="not_found", status=status)
    return RejectedExchangeError(text, cause="rejected", status=status)
