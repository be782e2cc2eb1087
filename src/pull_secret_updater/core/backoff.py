"""How long to wait before retrying after a failure.

Capped exponential with "equal" jitter: between half and all of min(cap, base * 2**n). Half is
guaranteed so that a burst of failures can never turn into a hot loop; the random half
de-synchronises Secrets that failed together.

Failures that retrying will not fix (the identity does not trust us, a 400 or 403 from the
token service, a write the API server finds invalid) start `NON_RETRYABLE_FACTOR` times
slower, so a misconfigured Secret does not hammer anything. The cap stays the same: the fix
is a human one (create the identity, fix the policy), and once it is made the Secret should
be filled within the usual few minutes rather than look as if the fix did not work.

A refresh that fails while the credential in place is still valid must be retried before that
credential expires, however many attempts came before: the wait of a retryable failure is at
most half of the credential's remaining lifetime (`expires_in`), and never below `base`. The
retries thus close in on the expiry instead of jumping past it (a failure 20 s before expiry,
after four others, would otherwise wait 8-16 s, and the next one 16-32 s), at a cost of about
log2(remaining / base) extra attempts per Secret. Those attempts do not grow the exponent
(`closes_in`): should the token expire all the same, the waits go on from where the growth
stopped, not from 2**(all attempts). All the Secrets of an identity hold the same token and
close in on the same moment: the token cache shares a failed exchange for `base` seconds
(`tokens.cache`), so the token service sees about one exchange per identity per `base`.

A server that says how long to wait (`Retry-After` on a 429 or 503) is obeyed, up to
`MAX_RETRY_AFTER`: asking for longer is taken as asking for that, and it wins over the cap
above (the server knows it cannot answer sooner).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

DEFAULT_BASE = 1.0
DEFAULT_CAP = 300.0
NON_RETRYABLE_FACTOR = 8.0
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """base: the first delay (seconds); cap: the longest one."""

    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base) and self.base > 0):
            raise ValueError("backoff base must be a number of seconds > 0")
        if not (math.isfinite(self.cap) and self.cap > 0):
            raise ValueError("backoff cap must be a number of seconds > 0")
        if self.cap < self.base:
            raise ValueError(
                f"backoff cap ({self.cap:g}s) must be at least backoff base ({self.base:g}s)"
            )

    def delay(
        self,
        *,
        attempt: int,
        rng: random.Random,
        retryable: bool = True,
        retry_after: float | None = None,
        expires_in: float | None = None,
    ) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry).

        `expires_in`: seconds the credential this retry would replace stays valid, if it does.
        """
        half = self._ceiling(attempt, retryable=retryable) / 2
        wait = half + rng.uniform(0, half)
        limit = self._limit(retryable=retryable, expires_in=expires_in)
        if limit is not None:
            wait = min(wait, limit)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait

    def closes_in(self, *, attempt: int, retryable: bool = True, expires_in: float | None) -> bool:
        """Whether retry `attempt` is shortened to come before the expiry (then the next
        retry should not count as a further step of the exponential)."""
        limit = self._limit(retryable=retryable, expires_in=expires_in)
        return limit is not None and self._ceiling(attempt, retryable=retryable) > limit

    def _ceiling(self, attempt: int, *, retryable: bool) -> float:
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        base = self.base if retryable else self.base * NON_RETRYABLE_FACTOR
        # The exponent stops growing long before 2**n could overflow a float.
        return min(self.cap, base * 2.0 ** min(attempt - 1, 64))

    def _limit(self, *, retryable: bool, expires_in: float | None) -> float | None:
        if retryable and expires_in is not None and expires_in > 0:
            return max(self.base, expires_in / 2)
        return None
