"""The one error the helper commands raise on purpose.

A helper either does its job or tells the user, in one line, why it cannot; `exit_code` says
whether the command was called wrongly or configured badly (`USAGE`, 2) or the thing it
checked is not working (`FAILURE`, 1). Library errors (Kubernetes, the token service) are
turned into lines by the CLI itself; this class is for what the helpers find out on their own.
"""

from __future__ import annotations

__all__ = ["FAILURE", "USAGE", "ToolError"]

FAILURE = 1
USAGE = 2


class ToolError(Exception):
    """A helper cannot do its job; the message is one line and never holds a token."""

    def __init__(self, message: str, /, *, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
