"""Fixtures of the image tests: the image built by hack/build-image.sh (cached by its inputs)
and pushed to the stack's registry, pulled back into an OCI layout, and a way to run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.binaries import REPO
from devstack.stack import LocalStack
from tests.image.oci import OciImage
from tests.image.runners import Chroot, Podman, Runner

BUILD_SCRIPT = REPO / "hack" / "build-image.sh"
REPOSITORY = "pull-secret-updater"
TAG = "dev"
# First build: the two Debian bases (~1.5 min) and the image (~1 min); cached: under a second.
BUILD_TIMEOUT = 1800


@dataclass(frozen=True)
class PushedImage:
    reference: str  # in the stack's registry
    creds: str
    ca_file: Path
    build_seconds: float


def _require_build_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (buildah chroot isolation, mmdebstrap)")
    missing = [t for t in ("buildah", "mmdebstrap", "skopeo") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (hack/setup.sh installs them)")


@pytest.fixture(scope="module")
def pushed_image(stack: LocalStack) -> PushedImage:
    _require_build_tools()
    reference = f"{stack.registry.host}/{REPOSITORY}:{TAG}"
    creds = f"admin:{stack._admin_password}"
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--push", reference, "--creds", creds,
         "--ca-file", str(stack.ca_file)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"hack/build-image.sh failed:\n{result.stderr[-6000:]}"
    print(f"image built or reused and pushed in {elapsed:.1f}s:\n{result.stderr}")
    return PushedImage(reference, creds, stack.ca_file, elapsed)


@pytest.fixture(scope="module")
def pulled_image(
    pushed_image: PushedImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OciImage]:
    """The image as a client gets it from the registry, in an OCI layout."""
    work = tmp_path_factory.mktemp("pulled")
    certs = work / "certs"
    certs.mkdir()
    shutil.copy(pushed_image.ca_file, certs / "ca.crt")
    layout = work / "layout"
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"--src-creds={pushed_image.creds}",
         f"--src-cert-dir={certs}", f"docker://{pushed_image.reference}", f"oci:{layout}:{TAG}"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    yield OciImage.read(layout, TAG)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def runner(
    pushed_image: PushedImage, pulled_image: OciImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runner]:
    """podman when installed (PSU_IMAGE_RUNNER=podman|chroot chooses), else chroot."""
    choice = os.environ.get("PSU_IMAGE_RUNNER", "auto")
    if choice == "auto":
        choice = "podman" if shutil.which("podman") else "chroot"
    chosen: Runner
    if choice == "podman":
        if shutil.which("podman") is None:
            pytest.skip("PSU_IMAGE_RUNNER=podman but podman is not installed")
        chosen = Podman(tmp_path_factory.mktemp("podman"))
        chosen.pull(pushed_image.reference, creds=pushed_image.creds, ca_file=pushed_image.ca_file)
    elif choice == "chroot":
        rootfs = tmp_path_factory.mktemp("rootfs")
        pulled_image.unpack(rootfs)
        chosen = Chroot(rootfs, pulled_image)
    else:
        raise ValueError(f"PSU_IMAGE_RUNNER must be podman, chroot or auto, not {choice!r}")
    yield chosen
    chosen.close()
