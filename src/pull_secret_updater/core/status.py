"""What the controller writes about a Secret besides its credentials: the status annotations.

Written from what the controller did and trusts, never read back as a fact (see
`annotations`): after a write, `expires-at` states the earliest expiry of the credentials the
controller trusts in the Secret; after a failure, `last-error` says why; when the Secret is no
longer ours, every status annotation goes.
"""

# NB: no `from __future__ import annotations`: it would shadow the module of that name.

from collections.abc import Mapping, Sequence

from pull_secret_updater.core import annotations
from pull_secret_updater.core.decision import Problem
from pull_secret_updater.core.providers import ProviderSpec, filled_identity_key


def status_annotations(
    *,
    filled: Mapping[str, str],
    expires_at: float | None,
    refreshed_at: float,
    clear_error: bool = True,
) -> dict[str, str | None]:
    """The annotation patch after a successful write (None removes an annotation).

    `filled` maps each written provider's filled-identity annotation to the identity;
    `expires_at` is the earliest trusted expiry of the Secret's managed entries.
    """
    patch: dict[str, str | None] = {
        annotations.EXPIRES_AT: None if expires_at is None else annotations.format_time(expires_at),
        annotations.LAST_REFRESH: annotations.format_time(refreshed_at),
        annotations.TOKEN_HASH: None,  # written by earlier versions; proves nothing
        **filled,
    }
    if clear_error:
        patch[annotations.LAST_ERROR] = None
    return patch


def expiry_drift(present: Mapping[str, str], *, expires_at: float | None) -> dict[str, str | None]:
    """The patch correcting an `expires-at` that does not state `expires_at`, the earliest
    trusted expiry (someone edited it, or an entry changed); empty when it does."""
    wanted = None if expires_at is None else annotations.format_time(expires_at)
    if present.get(annotations.EXPIRES_AT) == wanted:
        return {}
    return {annotations.EXPIRES_AT: wanted}


def error_annotation(message: str) -> dict[str, str | None]:
    """The annotation patch after a failure; the credential annotations are left as they are."""
    return {annotations.LAST_ERROR: annotations.truncate_error(message)}


def cleared_status(
    present: Mapping[str, str], *, providers: Sequence[ProviderSpec]
) -> dict[str, str | None]:
    """The patch removing the controller's status annotations that `present` has."""
    keys = {*annotations.STATUS, *(filled_identity_key(spec) for spec in providers)}
    return {key: None for key in sorted(keys) if key in present}


def problems_message(problems: Sequence[Problem]) -> str:
    """One message for several providers' problems, each named by its provider."""
    if len(problems) == 1:
        return problems[0].message
    return "; ".join(f"{p.provider}: {p.message}" for p in problems)
