"""The token service package's public face: what ``devstack.tokenservice`` exports, and that
its admin client (all that chainctl, the stack and most tests import) loads no server."""

from __future__ import annotations

import subprocess
import sys

import devstack.tokenservice
from tests.integration.tokenservice_support import REPO


def test_the_package_exports_only_the_light_parts() -> None:
    assert sorted(devstack.tokenservice.__all__) == [
        "REGISTRY_PULL",
        "ReadyInfo",
        "TokenServiceAdmin",
        "TokenServiceError",
        "code_for_status",
        "grpc_code_for_status",
        "wait_ready",
    ]


def test_importing_the_admin_client_and_its_users_loads_no_aiohttp() -> None:
    probe = (
        "import sys, devstack.tokenservice, devstack.chainctl, devstack.stack\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )

    assert loaded.stdout.strip() == "[]"


def test_the_server_module_is_what_loads_aiohttp() -> None:
    """The probe above can see aiohttp when it is there."""
    probe = "import sys, devstack.tokenservice.server\nprint('aiohttp' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )

    assert loaded.stdout.strip() == "True"
