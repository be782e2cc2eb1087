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
log2(remaining / base) extra attempts per Secret. All the Secrets of an identity hold the same
token and close in on the same moment: the token cache shares a failed exchange for `base`
seconds (`tokens.cache`), so the token service sees one exchange per identity per `base`.

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
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        base = self.base if retryable else self.base * NON_RETRYABLE_FACTOR
        # The exponent stops growing long before 2**n could overflow a float.
        ceiling = min(self.cap, base * 2.0 ** min(attempt - 1, 64))
        half = ceiling / 2
        wait = half + rng.uniform(0, half)
        if retryable and expires_in is not None and expires_in > 0:
            wait = min(wait, max(self.base, expires_in / 2))
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait
