"""``helm install --post-renderer``: rewrite the chart's manifests for the local node.

    helm install ... --post-renderer python3 --post-renderer-args -m \\
        --post-renderer-args devstack.postrender

Reads the rendered manifests on stdin and writes them back with host networking on every
Deployment (see ``devstack.deployment.post_render`` for why).
"""

from __future__ import annotations

import sys

from devstack.deployment import post_render


def main() -> int:
    sys.stdout.write(post_render(sys.stdin.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
