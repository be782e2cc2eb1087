"""Errors raised by the pure core.

The core only ever complains about one thing: input it cannot accept (a Secret of the wrong
type, a malformed `.dockerconfigjson`, a bad annotation, a policy that does not parse). All of
that is one class, `BadInput`, carrying a short machine `reason` (used for Event reasons and
metric labels, so the set is closed: `reasons.Reason`) and a human `message` that says
what is wrong without quoting the data: the data may be a credential.

Tokens that do not parse are a different matter (the fault lies with the token service, not
the user) and have their own class, `claims.InvalidToken`.
"""

from __future__ import annotations

from pull_secret_updater.core.reasons import Reason

__all__ = ["BadInput", "Reason", "kind_of"]


class BadInput(Exception):
    """Input the controller cannot act on; fixing it is up to whoever wrote it."""

    def __init__(self, reason: Reason, message: str, /) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


def kind_of(value: object) -> str:
    """The JSON type of `value` with its article ("a list"), for messages that must not quote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
