"""How the program names itself: one version, one User-Agent."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from pull_secret_updater import __version__, version


def test_the_user_agent_carries_the_packages_version_which_the_distribution_has_too() -> None:
    assert version.user_agent() == f"pull-secret-updater/{__version__}"
    # pyproject.toml reads it from the package (hatch's dynamic version).
    assert metadata.version("pull-secret-updater") == __version__


def test_reading_it_loads_no_importlib_metadata() -> None:
    # What the kubelet plugin pays at every start: the version without the metadata machinery.
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pull_secret_updater import version; "
         "version.user_agent(); print('importlib.metadata' in sys.modules)"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "False"
