"""A registry credential the controller trusts, whoever issued it.

Every provider's answer is stated in the same form, so the refresh rule, the cache and the
decision are the same for a Chainguard token, an ECR password or an Azure refresh token. A
`Credential` exists only in two ways, and nothing a Secret's writer can set makes one:

- a provider *verified* it (Chainguard: its signature against the token service's published
  keys, its claims checked), so its times are the token's own;
- this process *obtained* it from the provider's exchange, so its times are the exchange's
  answer (``expiresAt``, ``expires_in``, the refresh token's ``exp``).

A password found in a Secret of a provider that cannot verify offline is trusted only while
it is byte-identical to one this process obtained (`tokens.cache.TokenCache.known`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """One registry credential. Times are epoch seconds.

    `identity` is what it was obtained for (a Chainguard identity UID, a role ARN...), in the
    provider's own spelling; `registries` the hosts it is written for; `username` and `token`
    the dockerconfig's user and password. `key_fingerprint`: for a verified token, the key it
    verified with (it stays trusted while that key is published); None for one obtained.
    """

    provider: str
    identity: str
    registries: tuple[str, ...]
    username: str
    token: str = field(repr=False)
    issued_at: float
    expires_at: float
    key_id: str | None = None
    key_fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.issued_at
