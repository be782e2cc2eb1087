"""Regenerate the configuration reference in README.md from the settings' own descriptions."""

from __future__ import annotations

import re
from pathlib import Path

from pull_secret_updater.cli.reference import settings_reference_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"


def render(text: str) -> str:
    table = settings_reference_markdown().strip()
    return re.sub(
        f"{re.escape(START)}.*?{re.escape(END)}", f"{START}\n{table}\n{END}", text, flags=re.S
    )


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
