"""The controller's image, built by hack/build-image.sh and pushed to the stack's registry, for
the tests that run the controller as a Pod."""

from __future__ import annotations

import pytest

from devstack.deployment import (
    ControllerImage,
    ImageBuildError,
    image_build_prerequisites,
    push_controller_image,
)
from devstack.node import Node
from devstack.stack import LocalStack


@pytest.fixture(scope="session")
def controller_image(stack: LocalStack, node: Node) -> ControllerImage:
    missing = image_build_prerequisites()
    if missing:
        pytest.fail(
            f"cannot build the controller's image: missing {', '.join(missing)} "
            "(hack/setup.sh installs buildah, mmdebstrap and skopeo; the build needs root)",
            pytrace=False,
        )
    try:
        image = push_controller_image(stack)
    except ImageBuildError as e:
        pytest.fail(str(e), pytrace=False)
    print(f"controller image built or reused and pushed in {image.build_seconds}s")
    return image
