"""The settings as a Markdown table, for the README (`hack/update-readme.py` writes it there).

Rendered from the same field descriptions as `--help`, so the documentation cannot drift from
the code; a test fails when the README's copy is stale.
"""

from __future__ import annotations

import socket

from pydantic.fields import FieldInfo

from pull_secret_updater.cli.flags import env_vars, flag
from pull_secret_updater.settings import Settings

__all__ = ["settings_reference_markdown"]


def settings_reference_markdown() -> str:
    """A Markdown table of every setting (flag, variable, default, description), for docs."""
    rows = [
        "| setting | flag | environment | default | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        flags = flag(name)
        if field.annotation is bool:
            flags = f"{flag(name)}, --no-{name.replace('_', '-')}"
        cells = [
            f"`{name}`",
            f"`{flags}`",
            ", ".join(f"`{var}`" for var in env_vars(name)),
            f"`{_render_default(field)}`",
            field.description or "",
        ]
        rows.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _render_default(field: FieldInfo) -> str:
    if field.default_factory is socket.gethostname:
        return "(host name)"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
