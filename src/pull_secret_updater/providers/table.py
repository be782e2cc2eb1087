"""The providers table: every registry provider's settings section, one line each.

Adding a provider is a package beside `chainguard`, `ecr` and `fake` and one line in `PROVIDERS`;
nothing in the core, the controller, the Kubernetes adapters or the plugin names a provider.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from pull_secret_updater.core.errors import kind_of
from pull_secret_updater.providers.acr.section import AcrSection
from pull_secret_updater.providers.base import ProviderSection
from pull_secret_updater.providers.chainguard import NAME as DEFAULT
from pull_secret_updater.providers.chainguard.section import ChainguardSection
from pull_secret_updater.providers.ecr.section import EcrSection
from pull_secret_updater.providers.fake.section import FakeSection
from pull_secret_updater.providers.gar.section import GarSection

__all__ = ["DEFAULT", "PROVIDERS", "SECTIONS", "ChainguardSection", "parse_section"]

PROVIDERS: tuple[type[ProviderSection], ...] = (
    ChainguardSection,
    EcrSection,
    AcrSection,
    FakeSection,
    GarSection,
)

#: Each section class by the provider's name (its `kind`).
SECTIONS: Mapping[str, type[ProviderSection]] = {
    str(section.model_fields["kind"].default): section for section in PROVIDERS
}


def parse_section(obj: object) -> ProviderSection:
    """The section an entry of the `providers` setting describes, by its `kind`; raises
    ValueError naming the problem."""
    if isinstance(obj, ProviderSection):
        return obj
    if not isinstance(obj, dict):
        raise ValueError(f"a provider entry is {kind_of(obj)}, expected an object with a kind")
    kind = obj.get("kind")
    section = SECTIONS.get(kind) if isinstance(kind, str) else None
    if section is None:
        raise ValueError(f"a provider entry's kind must be one of {', '.join(sorted(SECTIONS))}")
    try:
        return section.model_validate(obj)
    except ValidationError as e:
        problems = "; ".join(
            ".".join(str(part) for part in error["loc"])
            + ": "
            + error["msg"].removeprefix("Value error, ")
            for error in e.errors()
        )
        raise ValueError(f"provider {kind}: {problems}") from None
