"""When to refresh a token, and how long to wait after a failure.

Refreshing at a fraction of the token's own lifetime (not at a fixed period) keeps working
whatever lifetime the token service chooses, and leaves the rest of the lifetime to retry in
if the service is down. Jitter spreads the refreshes of many Secrets filled at the same moment
(a controller start) so they do not all hit the token service and the API server together.

Both functions take the random source as a parameter: the reconcile decision seeds it from
the token, so a restarted controller computes the same refresh time for the same token.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

DEFAULT_FRACTION = 2 / 3
DEFAULT_JITTER = 0.1
DEFAULT_MARGIN = 300.0
DEFAULT_FLOOR = 1.0

#: Failures that retrying will not fix (the identity does not trust us, a 400 or 403 from the
#: token service) start this many times slower, so a misconfigured Secret does not hammer the
#: service. The cap stays the same: the fix is a human one (create the identity, fix the
#: policy), and once it is made the Secret should be filled within the usual few minutes
#: rather than look as if the fix did not work.
NON_RETRYABLE_FACTOR = 8.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """The refresh parameters, bundled for the reconcile decision.

    fraction: share of the token's lifetime after which to refresh (default 2/3).
    jitter: +/- share of the lifetime added uniformly at random (default 0.1).
    margin: never refresh later than this many seconds before expiry (default 300).
    """

    fraction: float = DEFAULT_FRACTION
    jitter: float = DEFAULT_JITTER
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        _check_parameters(fraction=self.fraction, jitter=self.jitter, margin=self.margin)


def refresh_at(
    *,
    issued_at: float,
    expires_at: float,
    margin: float,
    rng: random.Random,
    fraction: float = DEFAULT_FRACTION,
    jitter: float = DEFAULT_JITTER,
    floor: float = DEFAULT_FLOOR,
) -> float:
    """The time to refresh a token valid from `issued_at` to `expires_at` (epoch seconds).

    Normally issued_at + lifetime * (fraction +/- jitter), but never later than
    `expires_at - margin` nor earlier than `issued_at + floor`. When the lifetime is too
    short for both bounds (shorter than the margin), half-way through the lifetime.
    """
    _check_parameters(fraction=fraction, jitter=jitter, margin=margin)
    if not (math.isfinite(issued_at) and math.isfinite(expires_at)):
        raise ValueError("issued_at and expires_at must be finite")
    if not (math.isfinite(floor) and floor >= 0):
        raise ValueError("floor must be a finite number >= 0")
    lifetime = expires_at - issued_at
    if lifetime <= 0:
        return issued_at
    earliest = issued_at + floor
    latest = expires_at - margin
    if earliest > latest:
        return issued_at + lifetime / 2
    target = issued_at + lifetime * (fraction + rng.uniform(-jitter, jitter))
    return min(max(target, earliest), latest)


def backoff(
    *,
    attempt: int,
    retryable: bool,
    rng: random.Random,
    base: float = 1.0,
    cap: float = 300.0,
) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry).

    Capped exponential with "equal" jitter: between half and all of min(cap, base * 2**n).
    Half is guaranteed so that a burst of failures can never turn into a hot loop; the random
    half de-synchronises Secrets that failed together. Non-retryable failures use a base
    NON_RETRYABLE_FACTOR times larger and the same cap.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not (math.isfinite(base) and base > 0 and math.isfinite(cap) and cap > 0):
        raise ValueError("base and cap must be finite numbers > 0")
    if not retryable:
        base *= NON_RETRYABLE_FACTOR
    # The exponent stops growing long before 2**n could overflow a float.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    half = ceiling / 2
    return half + rng.uniform(0, half)


def _check_parameters(*, fraction: float, jitter: float, margin: float) -> None:
    if not 0 < fraction < 1:
        raise ValueError("fraction must be between 0 and 1")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be at least 0 and less than 1")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError("margin must be a finite number >= 0")
