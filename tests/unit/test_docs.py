"""The README's configuration reference is the one the settings describe."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "hack/update-readme.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "README.md").read_text()
    assert module.render(text) == text, "run: uv run python hack/update-readme.py"
