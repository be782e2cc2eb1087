"""Whether a credential found in a Secret is trusted: the one rule, for every provider.

Whatever sits in a Secret was written by someone who may edit that Secret. A credential there
is trusted only if its provider verifies it (a signature against published keys, claims
checked), or, for a provider that cannot verify offline, if it is byte-identical to one this
process obtained (`TokenCache.known`). Anything else, however valid it looks, is `Untrusted`:
it is replaced, and never shared with other Secrets.
"""

from __future__ import annotations

from pull_secret_updater.core.claims import InvalidToken
from pull_secret_updater.core.credential import Credential
from pull_secret_updater.core.decision import Untrusted
from pull_secret_updater.core.providers import Want
from pull_secret_updater.tokens.cache import TokenCache
from pull_secret_updater.tokens.provider import Subject, TokenProvider


async def look_at(
    token: str,
    *,
    want: Want,
    subject: Subject,
    provider: TokenProvider,
    cache: TokenCache,
) -> Credential | Untrusted:
    """The verdict on `token`, found in the entry of `want` in a Secret whose exchanges are
    made as `subject`. Raises `KeysUnavailable` when the provider cannot verify just now."""
    if not provider.spec.verifiable:
        known = cache.known(subject=subject, want=want, token=token)
        if known is not None:
            return known
        return Untrusted(
            why="it cannot be verified and is not one this controller obtained (written by "
            "someone else, or before the controller restarted)"
        )
    try:
        return await provider.verify(token)
    except InvalidToken as e:
        # NB: InvalidToken's message never holds the token (core.claims promises it).
        return Untrusted(why=str(e))
