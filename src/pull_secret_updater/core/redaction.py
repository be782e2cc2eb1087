"""Making foreign text fit for a message: credentials taken out, then one bounded line.

Our own messages are built never to hold a token. Text we do not write is another matter: a
token service's explanation, a library's exception, an API server's message, an annotation
someone edited. Before such text reaches an exception, a log line, an Event or a terminal, it
goes through `redact` (anything that looks like a credential is replaced) and `truncate` (one
line, of a bounded length). These are the only copies of both rules; keep them that way.

What counts as a credential:

- anything shaped like a JWT: `eyJ` (base64url of `{"`) followed by base64url characters and
  up to two more dot-separated parts, so a token cut short is caught as well as a whole one;
- whatever follows `Bearer` (any case), which also catches opaque tokens in echoed headers;
- the exact secrets the caller knows it handled (`known`), whatever their shape.

NB: redact before truncating: a cut can leave too little of a token for the pattern to see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "redact", "truncate"]

#: What stands in a message where a credential was.
REDACTED = "[redacted]"

_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){0,2}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")


def redact(text: str, *, known: Iterable[str] = ()) -> str:
    """`text` with every credential in it (see the module docstring) replaced by REDACTED."""
    for secret in known:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(f"Bearer {REDACTED}", text)
    return _JWT_LIKE.sub(REDACTED, text)


def truncate(text: str, *, limit: int) -> str:
    """`text` on one line (each run of whitespace one space), at most `limit` characters.

    A longer line is cut and ends with `...`, so the reader sees that something is missing.
    """
    if limit < 3:
        raise ValueError("limit must leave room for the '...'")
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
