"""What a Secret asks of Chainguard: the identity annotation, read and validated.

The annotation is the original flow's, unchanged: `pull-secret-updater.chainguard.dev/identity:
<identity UID>`. Chainguard UIDs are hex groups joined by '/'; anything else is refused with a
message naming the problem, never quoting the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pull_secret_updater.core.annotations import PREFIX, validate_value
from pull_secret_updater.core.providers import FILLED_IDENTITY as FILLED_IDENTITY_SUFFIX
from pull_secret_updater.core.providers import IdentitySpec
from pull_secret_updater.providers.chainguard import DEFAULT_REGISTRY, NAME, USERNAME

#: The identity UID whose tokens fill the Secret (written by the user).
IDENTITY = PREFIX + "identity"

_IDENTITY_CHARACTER = re.compile(r"[A-Za-z0-9/_.-]")
_IDENTITY_WHAT = "an identity UID has only letters, digits and / _ . -"


def validate_identity(value: str | None, *, key: str = IDENTITY) -> str:
    """The identity annotation's value if it is a plausible UID; raises BadInput otherwise."""
    return validate_value(
        key,
        value,
        allowed=_IDENTITY_CHARACTER,
        what=_IDENTITY_WHAT,
    )


@dataclass(frozen=True, kw_only=True)
class ChainguardSpec(IdentitySpec):
    """The pure half of the Chainguard provider, for tokens of the registry `registry`."""

    name: str = NAME
    username: str = USERNAME
    annotation_prefix: str = PREFIX
    verifiable: bool = True
    registry: str = DEFAULT_REGISTRY
    allowed: re.Pattern[str] = _IDENTITY_CHARACTER
    what: str = _IDENTITY_WHAT


#: What the controller last filled the cgr.dev entry for (its status annotation).
FILLED_IDENTITY = PREFIX + FILLED_IDENTITY_SUFFIX
