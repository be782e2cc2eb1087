"""Every setting of the controller, in one place, grouped in sections.

Each field is read from the environment (`PSU_<NAME>`, e.g. `PSU_SECRET_NAMES`) and from a
command-line flag (`--<name>` with dashes, e.g. `--secret-names`); a flag wins over the
environment, which wins over the default. The field descriptions are the documentation:
`--help` prints them and the README's table is rendered from them (both in `cli`), so a
description says what the setting does and what its default is.

The sections, one module each, are one `Settings` to whoever reads them (flat names, as
they always were): `registries` (the providers and their endpoints), `refreshing` (when and
how often), `identities` (whose token, which namespace may use which identity), `running`
(names watched, leadership, serving, logs). Turning flags into settings
(`cli.flags.load_settings`) and settings into Markdown (`cli.reference`) is the command
line's business.

Values are checked as a whole when loaded, and a bad one stops the controller at start with a
one-line `SettingsError` naming the flag and the variable, rather than failing at the first
refresh an hour later.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from pull_secret_updater.settings.identities import IdentitySettings
from pull_secret_updater.settings.refreshing import RefreshSettings
from pull_secret_updater.settings.registries import RegistrySettings
from pull_secret_updater.settings.running import RunSettings

__all__ = ["ENV_PREFIX", "Settings", "SettingsError"]

ENV_PREFIX = "PSU_"


class SettingsError(Exception):
    """A setting has a value the controller cannot run with; the message is one line."""


# NB: pydantic gathers the fields of the bases last to first: this order is the reference's.
# Validator names are unique across the sections, and checks they share are in their common
# base (`checks.Section`): one name used twice would shadow the other here, and its check
# would silently not run.
class Settings(RunSettings, IdentitySettings, RefreshSettings, RegistrySettings, BaseSettings):
    """The controller's configuration. Immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )
