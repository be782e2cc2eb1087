"""What a Secret asks of the fake provider: `fake.pull-secret-updater.chainguard.dev/identity`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pull_secret_updater.core.providers import FILLED_IDENTITY as FILLED_IDENTITY_SUFFIX
from pull_secret_updater.core.providers import IdentitySpec
from pull_secret_updater.providers.fake import DEFAULT_REGISTRY, NAME, PREFIX, USERNAME

IDENTITY = PREFIX + "identity"
#: What the controller last filled the entry for (its status annotation).
FILLED_IDENTITY = PREFIX + FILLED_IDENTITY_SUFFIX

_CHARACTER = re.compile(r"[A-Za-z0-9/_.:@-]")


@dataclass(frozen=True, kw_only=True)
class FakeSpec(IdentitySpec):
    """The pure half of the fake provider."""

    name: str = NAME
    username: str = USERNAME
    annotation_prefix: str = PREFIX
    verifiable: bool = False
    registry: str = DEFAULT_REGISTRY
    allowed: re.Pattern[str] = _CHARACTER
    what: str = "a fake identity has only letters, digits and / _ . : @ -"
