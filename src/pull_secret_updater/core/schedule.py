"""When a token is refreshed: the one place that answers it.

A token is refreshed at a fraction of its own lifetime (from its verified `iat` and `exp`),
not at a fixed period: that keeps working whatever lifetime the token service chooses, and
leaves the rest of the lifetime to retry in if the service is down. Jitter spreads the
refreshes of tokens obtained at the same moment (a controller start).

Four bounds keep that rule safe whatever a token says about itself:

- never later than `margin` seconds before it expires, so a refresh has time to finish;
- never later than `max_interval` after it was issued, so a token with an absurd `exp` (ten
  years, say) is still re-exchanged regularly, and a deleted identity or a tightened policy is
  noticed within hours;
- never sooner than `floor` after it was issued;
- never sooner than `min_interval` after the token was last written, however its times look
  (a token service whose clock is far off ours): a bounded rate instead of a write loop. This
  bound gives way to the two above.

The jitter is drawn from a random source seeded with the token itself, so every replica and
every restart computes the same moment for the same token, and all the Secrets and the cache
holding one token come due together and share one exchange. The spread between identities
comes from their different tokens.

The per-identity cache (`tokens.cache`) asks the same `Schedule` whether a cached token may
still be handed out, so a Secret never receives a token that is already due.

A token handed to someone who keeps it without asking us again (the kubelet, which caches
what the credential-provider plugin answers) gets `cache_duration` instead: how long it may
be kept. There is no jitter and no retry window to leave (the kubelet calls the plugin again
when its entry expires), so it is kept until `margin` before its verified expiry, long enough
for a pull that starts with it to finish, and, like a Secret's token, no longer than
`max_interval` after issue.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

DEFAULT_FRACTION = 0.66
DEFAULT_JITTER = 0.1
DEFAULT_MARGIN = 60.0
DEFAULT_MAX_INTERVAL = 4 * 3600.0
DEFAULT_MIN_INTERVAL = 5.0
DEFAULT_FLOOR = 1.0
DEFAULT_CACHE_MARGIN = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """The refresh rule and its parameters (seconds, or shares of a token's lifetime).

    fraction: share of the lifetime after which a token is refreshed (default 0.66).
    jitter: +/- share of the lifetime added at random, seeded by the token (default 0.1).
    margin: refresh at the latest this long before expiry (default 60).
    max_interval: refresh at the latest this long after issue, whatever exp says (default 4h).
    min_interval: refresh no sooner than this after the last write (default 5).
    floor: refresh no sooner than this after issue (default 1).
    """

    fraction: float = DEFAULT_FRACTION
    jitter: float = DEFAULT_JITTER
    margin: float = DEFAULT_MARGIN
    max_interval: float = DEFAULT_MAX_INTERVAL
    min_interval: float = DEFAULT_MIN_INTERVAL
    floor: float = DEFAULT_FLOOR

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError("refresh fraction must be between 0 and 1 (exclusive)")
        if not 0 <= self.jitter < 1:
            raise ValueError("refresh jitter must be at least 0 and less than 1")
        low, high = self.fraction - self.jitter, self.fraction + self.jitter
        if low <= 0 or high >= 1:
            raise ValueError(
                f"refresh fraction +/- jitter ({low:g} to {high:g}) must stay between 0 and 1, "
                "or refreshes would fall outside the token's lifetime"
            )
        for name in ("min_interval", "floor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name.replace('_', ' ')} must be a number of seconds >= 0")
        _check_bounds(margin=self.margin, max_interval=self.max_interval)

    def refresh_at(
        self,
        *,
        token: str,
        issued_at: float,
        expires_at: float,
        written_at: float | None = None,
        now: float | None = None,
    ) -> float:
        """When the token `token`, valid from `issued_at` to `expires_at`, is refreshed.

        `written_at` is when it was last written (if known) and `now` the current time; a
        `written_at` later than `now` counts as `now` (it comes from an annotation anyone who
        may edit the Secret can set). All times are epoch seconds.
        """
        if not (math.isfinite(issued_at) and math.isfinite(expires_at)):
            raise ValueError("issued_at and expires_at must be finite")
        lifetime = expires_at - issued_at
        if lifetime <= 0:
            return issued_at
        latest = _latest(issued_at, expires_at, margin=self.margin, max_interval=self.max_interval)
        earliest = issued_at + self.floor
        if earliest > latest:
            # Too short-lived for both bounds (shorter than the margin): half-way through,
            # and still no later than max_interval after issue.
            return issued_at + min(lifetime / 2, self.max_interval)
        rng = random.Random(_seed(token))  # noqa: S311 - a spread, not a secret
        target = issued_at + lifetime * (self.fraction + rng.uniform(-self.jitter, self.jitter))
        when = min(max(target, earliest), latest)
        if written_at is not None:
            if now is not None:
                written_at = min(written_at, now)
            when = max(when, min(written_at + self.min_interval, latest))
        return when


def cache_duration(
    *,
    issued_at: float,
    expires_at: float,
    now: float,
    margin: float = DEFAULT_CACHE_MARGIN,
    max_interval: float = DEFAULT_MAX_INTERVAL,
) -> int:
    """Whole seconds from `now` that a token valid from `issued_at` to `expires_at` may be
    kept by whoever it is handed to: until `margin` before expiry, and no longer than
    `max_interval` after issue. 0 means "do not keep it": it is still good for the pull at
    hand, not for the next one. All times are epoch seconds.
    """
    for name, value in (("issued_at", issued_at), ("expires_at", expires_at), ("now", now)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite")
    _check_bounds(margin=margin, max_interval=max_interval)
    until = _latest(issued_at, expires_at, margin=margin, max_interval=max_interval)
    return max(0, math.floor(until - now))


def _check_bounds(*, margin: float, max_interval: float) -> None:
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError("margin must be a number of seconds >= 0")
    if not (math.isfinite(max_interval) and max_interval > 0):
        raise ValueError("max interval must be a number of seconds > 0")


def _latest(issued_at: float, expires_at: float, *, margin: float, max_interval: float) -> float:
    """The latest moment a token is refreshed (or kept): `margin` before it expires, and no
    later than `max_interval` after it was issued."""
    return min(expires_at - margin, issued_at + max_interval)


def _seed(token: str) -> int:
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big")
