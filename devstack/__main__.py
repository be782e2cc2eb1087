"""``python -m devstack`` (``make devstack``): start the local stack and keep it up until Ctrl-C,
SIGTERM, a closed terminal or a closed output pipe; then tear it all down (``devstack.shutdown``).

With ``--node`` (``make devstack NODE=1``) it adds a node: containerd, a kubelet, and the
controller-manager and scheduler, so Pods (``hostNetwork: true``) really run. Needs root.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

from devstack import shutdown
from devstack.binaries import REPO, find_binaries
from devstack.stack import LocalStack


def build_binaries(*, node: bool = False) -> None:
    """Build (or find in the cache) the Go binaries, showing progress when it takes a while."""
    started = time.monotonic()
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(15):
            print(f"  ... still building ({time.monotonic() - started:.0f}s)", flush=True)

    print("Checking test binaries (the first build takes 10-20 minutes; later runs are instant)")
    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        for target in ("all", "node") if node else ("all",):
            subprocess.run(
                ["bash", str(REPO / "hack" / "build-testbins.sh"), target],
                check=True,
                stdout=subprocess.DEVNULL,
            )
    finally:
        done.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument(
        "--workdir", type=Path, help="directory for the stack (default: a temp dir)"
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=3600,
        help="lifetime in seconds of the tokens the token service issues",
    )
    parser.add_argument(
        "--node",
        action="store_true",
        help="also start a node (containerd, kubelet, controller-manager, scheduler); needs root",
    )
    args = parser.parse_args(argv)
    shutdown.install()
    try:
        build_binaries(node=args.node)
        started = time.monotonic()
        stack = LocalStack(
            args.workdir, token_lifetime=args.token_lifetime, binaries=find_binaries()
        )
    except KeyboardInterrupt:
        return 0  # nothing was started yet
    try:
        stack.start()
        if args.node:
            stack.start_node()
        version = stack.control_plane.version
        took = time.monotonic() - started
        print(f"\nLocal stack (Kubernetes {version}) up in {took:.1f}s ({stack.workdir})")
        print(f"  {stack.timings}\n")
        for key, value in stack.env().items():
            print(f"  export {key}={value}")
        print(f"\n  kubectl:   kubectl --kubeconfig {stack.kubeconfig} get --raw /openid/v1/jwks")
        print("  identity:  python -m devstack.chainctl iam identities create NAME ... (env above)")
        print(f"  summary:   {stack.workdir / 'stack.json'}")
        if stack.node is not None:
            print(f"  node:      kubectl get node {stack.node.name}; Pods need hostNetwork: true")
            print(f"             crictl --config {stack.node.workdir / 'crictl.yaml'} ps -a")
        print("\nPress Ctrl-C to stop; everything started here is torn down.")
        shutdown.wait()
    except KeyboardInterrupt as stop:
        print(f"\nStopping the local stack ({stop or 'Ctrl-C'}) ...")
    finally:
        shutdown.exiting()  # a second Ctrl-C (or uv's copy of the signal) must not cut it short
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
