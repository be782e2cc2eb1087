"""Errors from the Kubernetes API, translated once at this boundary.

The layers above should decide what to do from what a failure *means* (the object is gone,
someone else wrote first, our resourceVersion is too old, we are not allowed, retrying will
help) and not from which library raised it or how. lightkube reports the same meaning in
several shapes: `lightkube.ApiError` for a JSON `Status` reply, a bare
`httpx2.HTTPStatusError` for a non-JSON reply or a failed watch request, a `Status` inside a
watch stream, `httpx2.TransportError` for a dead connection, and even a `KeyError` when a
reply has no Content-Type. Every call into lightkube therefore runs inside `translated()`,
which turns all of these into one tree::

    KubeError
    +-- NotFound       404
    +-- Conflict       409 (a stale resourceVersion, or AlreadyExists on create)
    +-- Gone           410 (a resourceVersion too old to watch from: relist)
    +-- Forbidden      401, 403
    +-- Unprocessable  400, 422 (the request itself is refused: retrying will not help)
    +-- Transient      429, 5xx, connection errors, timeouts

The original exception stays reachable as `__cause__`. Messages carry the HTTP status, the
API's reason and its message cut to a bounded length: the API server redacts Secret data from
its messages, but nothing here relies on that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from lightkube import ApiError

from pull_secret_updater.core.redaction import truncate

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "KubeError",
    "NotFound",
    "Transient",
    "Unprocessable",
    "from_status",
    "translate",
    "translated",
]

MAX_MESSAGE = 200


class KubeError(Exception):
    """A failed Kubernetes API call; `status` is the HTTP code when there was a reply."""

    def __init__(
        self,
        message: str,
        /,
        *,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    """The object (or its namespace) does not exist."""


class Conflict(KubeError):
    """Someone else wrote first (stale resourceVersion) or the object already exists."""


class Gone(KubeError):
    """The resourceVersion is too old (compacted); list again to get a fresh one."""


class Forbidden(KubeError):
    """Not authenticated (401) or not authorised (403)."""


class Unprocessable(KubeError):
    """The API server refused the request itself (400, 422); retrying the same will not help.

    Not `Invalid`: that name is the core's decision about a Secret's content, a different thing.
    """


class Transient(KubeError):
    """Throttled, overloaded, restarting or unreachable; retrying later should help."""


def from_status(
    code: int | None, reason: str | None, message: str | None, *, what: str = ""
) -> KubeError:
    """The error for an API `Status` (from a reply or from a watch ERROR event)."""
    cls = _class_for(code)
    parts = [f"{what}: " if what else "", str(code) if code is not None else "no status"]
    if reason:
        parts.append(f" {reason}")
    if message:
        parts.append(f": {truncate(message, limit=MAX_MESSAGE)}")
    return cls("".join(parts), status=code, reason=reason or None)


def translate(exc: BaseException, *, what: str = "") -> KubeError:
    """The `KubeError` that `exc` (raised by lightkube or httpx2) means; not yet chained."""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiError):
        # NB: an ApiError built from a watch ERROR event has a Status but no HTTP response.
        status = exc.status
        code = status.code
        if code is None and getattr(exc, "response", None) is not None:
            code = exc.response.status_code
        return from_status(code, status.reason, status.message, what=what)
    if isinstance(exc, httpx2.HTTPStatusError):
        response = exc.response
        reason, message = _status_from_body(response)
        return from_status(
            response.status_code, reason or response.reason_phrase, message, what=what
        )
    if isinstance(exc, KeyError) and isinstance(exc.__context__, httpx2.HTTPStatusError):
        # NB: lightkube reads `headers["Content-Type"]` of an error reply unguarded, so a reply
        # without that header (a proxy's 502, say) surfaces as KeyError with the real error as
        # its context.
        return translate(exc.__context__, what=what)
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return Transient(_prefixed(what, f"timed out ({type(exc).__name__})"))
    if isinstance(exc, httpx2.RequestError | ConnectionError):
        return Transient(_prefixed(what, f"connection failed ({type(exc).__name__})"))
    return KubeError(_prefixed(what, f"unexpected {type(exc).__name__}"))


@contextmanager
def translated(what: str = "") -> Iterator[None]:
    """Run a lightkube call, re-raising its failures as `KubeError` (chained with `from`).

    A plain (synchronous) context manager: it awaits nothing itself, so it wraps awaits in
    coroutines just as well, and cancellation passes through untouched. Exceptions that do
    not come from talking to the API server (bugs) are not translated.
    """
    try:
        yield
    except KubeError:
        raise
    except (httpx2.HTTPError, TimeoutError, ConnectionError) as e:
        raise translate(e, what=what) from e
    except KeyError as e:
        if isinstance(e.__context__, httpx2.HTTPStatusError):
            raise translate(e, what=what) from e.__context__
        raise


def _class_for(code: int | None) -> type[KubeError]:
    if code == 404:
        return NotFound
    if code == 409:
        return Conflict
    if code == 410:
        return Gone
    if code in (401, 403):
        return Forbidden
    if code in (400, 422):
        return Unprocessable
    if code is not None and (code in (408, 429) or code >= 500):
        return Transient
    return KubeError


def _status_from_body(response: httpx2.Response) -> tuple[str | None, str | None]:
    # NB: a streamed reply (a watch request) has no body to read here; the status code is all
    # there is, and that is enough to classify it.
    try:
        body = response.content
    except httpx2.ResponseNotRead:
        return None, None
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    reason, message = document.get("reason"), document.get("message")
    return (
        reason if isinstance(reason, str) else None,
        message if isinstance(message, str) else None,
    )


def _prefixed(what: str, text: str) -> str:
    return f"{what}: {text}" if what else text
