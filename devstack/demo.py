"""``make demo``: the quickstart, live, on a local cluster.

Starts the local stack, installs the controller from ``config/`` and runs it as its
ServiceAccount, then walks through the quickstart step by step, printing each command and
what it did: create the identity, create the empty Secret, annotate it, see it filled, pull
with it, see it refreshed. Then it keeps everything running until Ctrl-C, SIGTERM, a closed
terminal or a closed output pipe, and then removes all of it (``devstack.shutdown``).

With a node (the default as root; ``make demo NODE=0`` leaves it out) the stack also runs
containerd, a kubelet, the controller-manager and the scheduler: the controller runs as the
Deployment's Pod from the image ``hack/build-image.sh`` builds, and the last step creates the
Pod of the instructions, whose image the kubelet pulls with the Secret. Without one, the
controller is a local process and the pull is skopeo's.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from devstack import shutdown
from devstack.__main__ import build_binaries
from devstack.binaries import REPO, find_binaries
from devstack.controller import ControllerProcess, install_manifests
from devstack.deployment import push_controller_image, ready_pods, write_overlay
from devstack.node import Node
from devstack.registry import skopeo_inspect
from devstack.stack import LocalStack

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = DIM = GREEN = RED = RESET = ""


def step(title: str) -> None:
    print(f"\n{BOLD}==> {title}{RESET}", flush=True)


def show(command: str) -> None:
    print(f"{DIM}${RESET} {command}", flush=True)


#: The quickstart's command that creates the Pod of the original instructions.
_POD = """\
kubectl create {output}-f - <<EOF
apiVersion: v1
kind: Pod
metadata:
  generateName: pull-secret-example-
spec:
  containers:
  - name: pull-secret-example
    image: {image}
    command: ['sleep', 'Infinity']
  imagePullSecrets:
  - name: pull-secret
EOF"""


def pod_script(image: str, *, name_only: bool = False) -> str:
    """The quickstart's Pod, created with kubectl from a here-document as a user types it, with
    the image ``image``; ``name_only``: kubectl prints just ``pod/<name>``."""
    return _POD.format(image=image, output="-o name " if name_only else "")


class Demo:
    def __init__(self, stack: LocalStack, node: Node | None = None) -> None:
        self.stack = stack
        self.node = node
        self.env = {
            **os.environ,
            **stack.env(),
            "PATH": f"{stack.binaries.kubectl.parent}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
        }

    def sh(self, script: str, *, echo: bool = True) -> str:
        script = textwrap.dedent(script).strip()
        if echo:
            show(script)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=self.env, cwd=REPO, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"command failed: {result.stderr.strip()}")
        return result.stdout

    def secret(self) -> dict[str, object]:
        return dict(json.loads(self.sh("kubectl get secret pull-secret -ojson", echo=False)))

    def token(self) -> str | None:
        data = self.secret().get("data")
        if not isinstance(data, dict):
            return None
        config = json.loads(base64.b64decode(data.get(".dockerconfigjson", "")) or "{}")
        entry = (config.get("auths") or {}).get(self.stack.registry.host) or {}
        return entry.get("password") if isinstance(entry, dict) else None

    def wait_token(self, *, other_than: str | None = None, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            token = self.token()
            if token and token != other_than:
                return token
            time.sleep(0.2)
        raise RuntimeError("the Secret was not filled in time; see the controller log")

    def pull(self, tmp: Path) -> bool:
        data = self.secret()["data"]
        assert isinstance(data, dict)
        tmp.write_bytes(base64.b64decode(data[".dockerconfigjson"]))
        show(
            f"skopeo inspect --authfile <the Secret's .dockerconfigjson> docker://{self.stack.registry.image}"
        )
        result = skopeo_inspect(
            skopeo=self.stack.binaries.skopeo, image=self.stack.registry.image,
            authfile=tmp, ca_file=self.stack.ca_file,
        )  # fmt: skip
        if result.returncode == 0:
            digest = json.loads(result.stdout).get("Digest", "")
            print(f"{GREEN}pulled the manifest{RESET} {digest}")
            return True
        print(f"{RED}pull failed{RESET}: {result.stderr.strip()[:300]}")
        return False

    def run_pod(self) -> bool:
        """The Pod of the instructions; True once the kubelet pulled its image and runs it."""
        assert self.node is not None
        self.node.remove_image(self.stack.registry.image)  # so this Pod really pulls
        wait(lambda: self.sh("kubectl get serviceaccount default -oname", echo=False), 30)
        name = self.sh(pod_script(self.stack.registry.image)).split()[0].split("/")[-1]
        print(f"created pod/{name}")

        def phase() -> str:
            pod = json.loads(self.sh(f"kubectl get pod {name} -ojson", echo=False))
            statuses = pod["status"].get("containerStatuses") or [{}]
            state = statuses[0].get("state", {})
            return "Running" if "running" in state else state.get("waiting", {}).get("reason", "")

        wait(lambda: phase() in {"Running", "ErrImagePull", "ImagePullBackOff"}, 120)
        # Without cluster DNS (none here) each Pod also gets a MissingClusterDNS warning.
        events = f"kubectl get events --field-selector involvedObject.name={name}"
        show(events)
        print(self.sh(f"{events},reason!=MissingClusterDNS --sort-by=.lastTimestamp",
                      echo=False))  # fmt: skip
        show(f"kubectl get pod {name}")
        print(self.sh(f"kubectl get pod {name}", echo=False))
        if phase() == "Running":
            print(f"{GREEN}the kubelet pulled the image with the Secret; the container runs{RESET}")
            return True
        print(f"{RED}the kubelet could not pull the image{RESET}")
        return False

    def run(self, lifetime: int) -> None:
        step("1. Create an assumable identity for the controller's ServiceAccount")
        print("   (chainctl here is a stand-in that talks to the local token service)")
        uid = self.sh("""
            chainctl() { python -m devstack.chainctl "$@"; }
            chainctl iam identities create kind-pull-secrets \\
              --issuer-keys="$(kubectl get --raw /openid/v1/jwks)" \\
              --identity-issuer=https://kubernetes.default.svc.cluster.local \\
              --subject=system:serviceaccount:pull-secret-updater:controller \\
              --role=registry.pull
        """).strip()
        print(f"identity UID: {BOLD}{uid}{RESET}")

        step("2. Create an empty pull Secret and annotate it with the identity")
        self.sh("kubectl create namespace demo", echo=False)
        self.sh("kubectl config set-context --current --namespace=demo", echo=False)
        self.sh("kubectl create secret generic pull-secret --type=kubernetes.io/dockerconfigjson "
                "--from-literal=.dockerconfigjson='{}'")  # fmt: skip
        self.sh(
            f"kubectl annotate secret pull-secret pull-secret-updater.chainguard.dev/identity={uid}"
        )

        step("3. The controller fills it")
        started = time.monotonic()
        token = self.wait_token()
        print(f"filled in {time.monotonic() - started:.2f}s")
        show("kubectl get secret pull-secret -o yaml   (token shortened here)")
        data = self.secret()["data"]
        assert isinstance(data, dict)
        listing = self.sh("kubectl get secret pull-secret -oyaml", echo=False)
        print(listing.replace(data[".dockerconfigjson"], "<.dockerconfigjson with a fresh token>"))

        if self.node is not None:
            step("4. Use it: the Pod of the instructions, on the node")
            self.run_pod()
        else:
            step("4. Pull with it, as kubelet does with an imagePullSecret")
            self.pull(self.stack.workdir / "demo-auth.json")

        step(f"5. The token lives {lifetime}s; the controller refreshes it at about 2/3 of that")
        show("kubectl get events")
        started = time.monotonic()
        self.wait_token(other_than=token, timeout=lifetime + 30)
        print(f"refreshed after {time.monotonic() - started:.0f}s")
        print(self.sh("kubectl get events --sort-by=.lastTimestamp "
                      "--field-selector involvedObject.kind=Secret", echo=False))  # fmt: skip
        if self.node is not None:
            print("A new Pod pulls with the refreshed token:")
            self.run_pod()
        else:
            self.pull(self.stack.workdir / "demo-auth.json")


def wait(check: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s")
        time.sleep(0.5)


def demo_env(lifetime: int) -> dict[str, str]:
    """Controller settings for short-lived demo tokens."""
    margin = max(5, lifetime // 6)
    return {
        "PSU_REFRESH_MARGIN": str(margin),
        "PSU_EXCHANGE_TIMEOUT": str(min(10, margin)),
        "PSU_MIN_TOKEN_LIFETIME": "5",
    }


def install_as_pod(stack: LocalStack, lifetime: int) -> None:
    """The controller as the Deployment's Pod, from the image the project builds."""
    step("Building the controller's image (hack/build-image.sh; the first build takes minutes)")
    image = push_controller_image(stack)
    print(f"{image.reference} ready in {image.build_seconds:.0f}s")
    step("Installing the controller: kubectl apply -k config/")
    overlay = write_overlay(
        stack, stack.workdir / "demo-overlay", image=image.reference, env=demo_env(lifetime)
    )
    print("   (through a local overlay: the image above, host networking and the loopback")
    print("    addresses of the API server, token service and registry)")
    show(f"kubectl apply -k {overlay.directory}")
    stack.control_plane.kubectl("apply", "-k", str(overlay.directory))
    selector = "app.kubernetes.io/name=pull-secret-updater"
    wait(lambda: ready_pods(stack, "pull-secret-updater", selector), 240)
    show("kubectl -n pull-secret-updater get pods")
    print(stack.control_plane.kubectl("-n", "pull-secret-updater", "get", "pods", "-o", "wide"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=45,
        help="lifetime of the demo's registry tokens, in seconds (default 45)",
    )
    parser.add_argument(
        "--node",
        choices=("auto", "1", "0"),
        default="auto",
        help="run the controller and the quickstart's Pod on a real node: 1, 0, or auto (when "
        "running as root, the default)",
    )
    args = parser.parse_args(argv)
    args.node = args.node == "1" or (args.node == "auto" and os.geteuid() == 0)
    shutdown.install()
    controller: ControllerProcess | None = None
    try:
        build_binaries(node=args.node)
        parts = "etcd, kube-apiserver, token service, registry"
        step(f"Starting the local stack: {parts}{' and a node' if args.node else ''}")
        stack = LocalStack(token_lifetime=args.token_lifetime, binaries=find_binaries())
    except KeyboardInterrupt:
        return 0  # nothing was started yet
    try:
        stack.start()
        if args.node:
            stack.start_node()
        print(f"up in {sum(stack.timings.values()):.1f}s: {stack.timings}")
        if stack.node is not None:
            install_as_pod(stack, args.token_lifetime)
        else:
            step("Installing the controller: kubectl apply -k config/")
            install_manifests(stack)
            print("   (no node here: the controller runs as a local process, authenticated as")
            print("    its ServiceAccount pull-secret-updater/controller with the RBAC from")
            print("    config/; as root, make demo runs it as a Pod on a node)")
            controller = ControllerProcess(stack, env=demo_env(args.token_lifetime)).start()
        Demo(stack, stack.node).run(args.token_lifetime)
        step("Everything keeps running. Try:")
        for key, value in stack.env().items():
            print(f"  export {key}={value}")
        print(f"  export PATH={stack.binaries.kubectl.parent}:$PATH")
        print("  kubectl -n demo get secret pull-secret -o yaml")
        print("  uv run pull-secret-updater status -A")
        if controller is not None:
            print(f"  curl -s {controller.metrics_url}/metrics | grep pull_secret_updater")
            print(f"  controller log: {controller.process.log_path}")
        else:
            print("  kubectl -n pull-secret-updater logs deploy/pull-secret-updater")
            print("  kubectl -n demo get pods,events")
        print("\nPress Ctrl-C to stop and clean up.")
        shutdown.wait()
    except KeyboardInterrupt as stop:
        print(f"\nStopping ({stop or 'Ctrl-C'}) ...")
    except Exception as e:  # one line for the person watching, not a traceback
        print(f"\n{RED}demo failed:{RESET} {e}")
        if controller is not None:
            print(controller.process.log_tail(20))
        if stack.node is not None:
            print(stack.node.log_tails(10))
        print("Stopping ...")
        return 1
    finally:
        shutdown.exiting()  # a second Ctrl-C (or uv's copy of the signal) must not cut it short
        if controller is not None:
            controller.stop()
        stack.stop()
        print("Stopped; everything the demo started is gone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
