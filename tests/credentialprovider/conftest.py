"""The plugin's one-directory bundle (its executable), built (or taken from the cache) by
hack/build-credential-provider.sh, for the tests that run it as the kubelet would."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "hack" / "build-credential-provider.sh"


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The executable; building it the first time takes about a minute."""
    try:
        built = subprocess.run(
            [str(BUILD)], capture_output=True, text=True, timeout=1200, check=False, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"cannot build the plugin's bundle: {e}", pytrace=False)
    if built.returncode != 0:
        pytest.fail(
            f"hack/build-credential-provider.sh failed:\n{built.stderr[-3000:]}", pytrace=False
        )
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    return path
