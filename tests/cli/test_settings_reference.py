"""The settings' reference: every field documented, and the README's table rendered from it."""

from __future__ import annotations

import re

from pull_secret_updater.cli.reference import settings_reference_markdown
from pull_secret_updater.settings import Settings


def test_every_description_states_its_default() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert "Default: " in field.description, name


def test_reference_table_has_a_row_per_setting() -> None:
    table = settings_reference_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `(\w+)`", row)[1] for row in rows] == list(Settings.model_fields)  # type: ignore[index]
    assert "| `secret_names` | `--secret-names` | `PSU_SECRET_NAMES` | `pull-secret` |" in table
    assert "`PSU_NAMESPACE`, `POD_NAMESPACE`" in table
    assert "`--leader-election, --no-leader-election`" in table
    assert "| `ca_bundle` | `--ca-bundle` | `PSU_CA_BUNDLE` | `(none)` |" in table
    assert all(row.count(" | ") == 4 for row in rows)
