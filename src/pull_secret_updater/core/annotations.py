"""The annotations on a managed Secret: the user's one input and the controller's status.

The user writes only what each registry provider asks for (Chainguard's `identity`, an ECR
role...; see `core.providers`). Everything here is written by the controller so that
`kubectl get secret -o yaml` answers "is it working, and until when?". None of it is trusted
when deciding: whoever may edit the Secret may edit its annotations too. Whether the token in
a Secret is one the controller can keep is decided by verifying the token itself against the
token service's keys, or comparing it with what this process obtained (see `decision`).
`expires-at` is written from the credentials the controller trusts and corrected when
someone edits it; it is never read back as a fact. `last-refresh` only bounds how soon a Secret is
written again, and a value in the future counts as now.

NB: `from __future__ import annotations` binds the name `annotations` too; a module using it
must import this one under another name, or import the names it needs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pull_secret_updater.core.errors import BadInput
from pull_secret_updater.core.reasons import Reason
from pull_secret_updater.core.redaction import truncate

PREFIX = "pull-secret-updater.chainguard.dev/"

#: When the token in the Secret expires (RFC3339, UTC).
EXPIRES_AT = PREFIX + "expires-at"
#: When the controller last wrote a token (RFC3339, UTC).
LAST_REFRESH = PREFIX + "last-refresh"
#: Why the last attempt failed; present only while failing. Never a token.
LAST_ERROR = PREFIX + "last-error"
#: An unkeyed fingerprint written by earlier versions; anyone could compute it, so it proves
#: nothing. Removed at the next write.
TOKEN_HASH = PREFIX + "token-hash"
#: Every annotation the controller writes (and may remove), beside each provider's
#: `<prefix>filled-identity` (`core.providers`).
STATUS = (EXPIRES_AT, LAST_REFRESH, LAST_ERROR, TOKEN_HASH)

MAX_VALUE_LENGTH = 256
MAX_ERROR_LENGTH = 512

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def validate_value(
    key: str,
    value: str | None,
    *,
    allowed: re.Pattern[str],
    what: str,
    max_length: int = MAX_VALUE_LENGTH,
) -> str:
    """The value of the annotation `key` if each character matches `allowed`; raises BadInput.

    `what` says in words which characters are allowed. Surrounding whitespace is rejected
    rather than stripped: the value the user sees in `kubectl get` must be the one that is
    used. The message names the problem, never the whole value (it may be something pasted by
    mistake, such as a token).
    """
    if value is None:
        raise _bad(f"annotation {key} is missing")
    if not value:
        raise _bad(f"annotation {key} is empty")
    if not value.strip():
        raise _bad(f"annotation {key} is only whitespace")
    if value != value.strip():
        raise _bad(f"annotation {key} has leading or trailing whitespace; remove it")
    if len(value) > max_length:
        raise _bad(f"annotation {key} is {len(value)} characters long, more than {max_length}")
    for position, character in enumerate(value):
        if not allowed.fullmatch(character):
            shown = repr(character) if character.isprintable() else f"U+{ord(character):04X}"
            raise _bad(f"annotation {key} contains {shown} at position {position + 1}; {what}")
    return value


def format_time(epoch: float) -> str:
    """Epoch seconds as RFC3339 UTC to the second, e.g. 2025-01-02T03:04:05Z."""
    # Arithmetic rather than fromtimestamp(): no platform limits, no local time zone.
    moment = _EPOCH + timedelta(seconds=int(epoch))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    """An RFC3339 time with an offset or Z as epoch seconds; None if absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH).total_seconds()


def truncate_error(message: str) -> str:
    """A message short enough for the `last-error` annotation, on one line."""
    return truncate(message, limit=MAX_ERROR_LENGTH)


def _bad(message: str) -> BadInput:
    return BadInput(Reason.BAD_ANNOTATION, message)
