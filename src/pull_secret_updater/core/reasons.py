"""Every reason the controller gives, in Events, `last-error` and logs: one closed set.

A reason is a word a person can search for and an alerting rule can match, so the set is
fixed here rather than spelled at each call site. Bad input the user must fix comes first,
then what the controller did, then what failed on its side.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """An Event reason (and the prefix of a log line's `reason`)."""

    # Bad input, fixed by whoever wrote the Secret or the policy.
    WRONG_TYPE = "WrongType"
    MALFORMED_DOCKER_CONFIG = "MalformedDockerConfig"
    BAD_ANNOTATION = "BadAnnotation"
    POLICY_DENIED = "PolicyDenied"
    BAD_POLICY = "BadPolicy"
    # What the controller did.
    FILLED = "Filled"
    REFRESHED = "Refreshed"
    # What failed on the controller's side, or the token service's.
    EXCHANGE_FAILED = "ExchangeFailed"
    VERIFICATION_UNAVAILABLE = "VerificationUnavailable"
    POLICY_UNAVAILABLE = "PolicyUnavailable"
    WRITE_FAILED = "WriteFailed"
    TOKEN_TOO_SHORT_LIVED = "TokenTooShortLived"
    RATE_LIMITED = "RateLimited"
    UNEXPECTED = "UnexpectedError"
