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

from devstack import clouds, shutdown
from devstack.__main__ import build_binaries
from devstack.binaries import REPO, find_binaries
from devstack.controller import ControllerProcess, install_manifests
from devstack.deployment import (
    CA_DIR,
    push_controller_image,
    ready_pods,
    write_overlay,
)
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
{containers}
  imagePullSecrets:
  - name: pull-secret
EOF"""
_CONTAINER = """\
  - name: {name}
    image: {image}
    command: ['sleep', 'Infinity']"""


def pod_script(image: str, *images: str, name_only: bool = False) -> str:
    """The quickstart's Pod, created with kubectl from a here-document as a user types it, with
    the image ``image`` (and a container for each of ``images``); ``name_only``: kubectl prints
    just ``pod/<name>``."""
    names = ["pull-secret-example", *(f"pull-secret-example-{i}" for i in range(2, 9))]
    containers = "\n".join(
        _CONTAINER.format(name=name, image=each)
        for name, each in zip(names, (image, *images), strict=False)
    )
    return _POD.format(containers=containers, output="-o name " if name_only else "")


#: The cloud identities the demo creates, each trusting the controller's ServiceAccount.
CLOUD_IDENTITY = "demo-puller"
CONTROLLER_SUBJECT = "system:serviceaccount:pull-secret-updater:controller"


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

    def token(self, host: str | None = None) -> str | None:
        """The password of the entry for `host` (the Chainguard registry's by default)."""
        data = self.secret().get("data")
        if not isinstance(data, dict):
            return None
        config = json.loads(base64.b64decode(data.get(".dockerconfigjson", "")) or "{}")
        entry = (config.get("auths") or {}).get(host or self.stack.registry.host) or {}
        return entry.get("password") if isinstance(entry, dict) else None

    def wait_token(
        self, *, other_than: str | None = None, timeout: float = 120, host: str | None = None
    ) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            token = self.token(host)
            if token and token != other_than:
                return token
            time.sleep(0.2)
        raise RuntimeError("the Secret was not filled in time; see the controller log")

    def create_cloud_identities(self) -> clouds.Clouds:
        """An identity in each cloud's stand-in trusting the controller's ServiceAccount: what
        `identity-command --provider ecr|gar|acr` prints the commands of, for a cluster."""
        made = clouds.trusting(self.stack, CONTROLLER_SUBJECT, name=CLOUD_IDENTITY)
        show(
            "aws iam create-role --role-name demo-puller --assume-role-policy-document "
            "file://trust.json   # trusting the cluster's OIDC provider for that subject"
        )
        print(f"   role ARN: {BOLD}{made.role_arn}{RESET}")
        show(
            "gcloud iam workload-identity-pools providers create-oidc ... "
            f"--attribute-condition=\"assertion.sub == '{CONTROLLER_SUBJECT}'\""
        )
        print(f"   provider: {BOLD}{made.pool_provider}{RESET}")
        print(
            f"   service account (workloadIdentityUser bound): {BOLD}{made.service_account}{RESET}"
        )
        show(
            "az identity federated-credential create ... "
            f"--subject {CONTROLLER_SUBJECT} --audience api://AzureADTokenExchange"
            "; az role assignment create --role AcrPull ..."
        )
        print(f"   client ID: {BOLD}{made.client_id}{RESET}")
        return made

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every registry the demo's Secret has an entry for."""
        return tuple(registry.host for registry in self.stack.registries)

    def pull(self, tmp: Path) -> bool:
        """skopeo pulls the test image of each registry with the Secret, as kubelet would."""
        data = self.secret()["data"]
        assert isinstance(data, dict)
        config = json.loads(base64.b64decode(data[".dockerconfigjson"]))
        # NB: the clouds' registry names resolve only while a node runs; skopeo is pointed at
        # their addresses with the entries of their names.
        auths = dict(config["auths"])
        for registry in self.stack.registries:
            auths[registry.address] = auths.get(registry.host, {})
        tmp.write_text(json.dumps({"auths": auths}))
        ok = True
        for image in (registry.local_image for registry in self.stack.registries):
            show(f"skopeo inspect --authfile <the Secret's .dockerconfigjson> docker://{image}")
            result = skopeo_inspect(
                skopeo=self.stack.binaries.skopeo, image=image,
                authfile=tmp, ca_file=self.stack.ca_file,
            )  # fmt: skip
            if result.returncode == 0:
                digest = json.loads(result.stdout).get("Digest", "")
                print(f"{GREEN}pulled the manifest{RESET} {digest}")
            else:
                print(f"{RED}pull failed{RESET}: {result.stderr.strip()[:300]}")
                ok = False
        return ok

    def run_pod(self) -> bool:
        """The Pod of the instructions; True once the kubelet pulled its image and runs it."""
        assert self.node is not None
        images = tuple(registry.image for registry in self.stack.registries)
        for image in images:
            self.node.remove_image(image)  # so this Pod really pulls
        wait(lambda: self.sh("kubectl get serviceaccount default -oname", echo=False), 30)
        name = self.sh(pod_script(*images)).split()[0].split("/")[-1]
        print(f"created pod/{name}")

        def phase() -> str:
            pod = json.loads(self.sh(f"kubectl get pod {name} -ojson", echo=False))
            statuses = pod["status"].get("containerStatuses") or [{}]
            states = [status.get("state", {}) for status in statuses]
            if len(states) == len(images) and all("running" in state for state in states):
                return "Running"
            for state in states:
                reason = state.get("waiting", {}).get("reason", "")
                if reason in {"ErrImagePull", "ImagePullBackOff"}:
                    return str(reason)
            return ""

        wait(lambda: phase() in {"Running", "ErrImagePull", "ImagePullBackOff"}, 120)
        # Without cluster DNS (none here) each Pod also gets a MissingClusterDNS warning.
        events = f"kubectl get events --field-selector involvedObject.name={name}"
        show(events)
        print(self.sh(f"{events},reason!=MissingClusterDNS --sort-by=.lastTimestamp",
                      echo=False))  # fmt: skip
        show(f"kubectl get pod {name}")
        print(self.sh(f"kubectl get pod {name}", echo=False))
        if phase() == "Running":
            print(
                f"{GREEN}the kubelet pulled all {len(images)} images with the Secret; all "
                f"{len(images)} containers run{RESET}"
            )
            return True
        print(f"{RED}the kubelet could not pull every image{RESET}")
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
        print("   And in each cloud (here their local stand-ins), an identity that trusts the same")
        print("   ServiceAccount; identity-command --provider ecr|gar|acr prints the commands:")
        made = self.create_cloud_identities()

        step("2. Create an empty pull Secret and annotate it: the identity, and each cloud's")
        self.sh("kubectl create namespace demo", echo=False)
        self.sh("kubectl config set-context --current --namespace=demo", echo=False)
        self.sh("kubectl create secret generic pull-secret --type=kubernetes.io/dockerconfigjson "
                "--from-literal=.dockerconfigjson='{}'")  # fmt: skip
        self.sh(
            f"kubectl annotate secret pull-secret pull-secret-updater.chainguard.dev/identity={uid}"
        )
        self.sh(
            "kubectl annotate secret pull-secret \\\n"
            + " \\\n".join(f"  {key}={value}" for key, value in made.annotations.items())
        )

        step("3. The controller fills it: cgr.dev-like, ECR, Artifact Registry and ACR entries")
        started = time.monotonic()
        before = {host: self.wait_token(host=host) for host in self.hosts}
        print(f"filled in {time.monotonic() - started:.2f}s")
        show("kubectl get secret pull-secret -o yaml   (token shortened here)")
        data = self.secret()["data"]
        assert isinstance(data, dict)
        listing = self.sh("kubectl get secret pull-secret -oyaml", echo=False)
        print(
            listing.replace(
                data[".dockerconfigjson"], "<.dockerconfigjson: four fresh credentials>"
            )
        )

        if self.node is not None:
            step("4. Use it: the Pod of the instructions, on the node")
            self.run_pod()
        else:
            step("4. Pull with it, as kubelet does with an imagePullSecret")
            self.pull(self.stack.workdir / "demo-auth.json")

        step(
            f"5. The credentials live {lifetime}s; the controller refreshes them at about 2/3 "
            "of that"
        )
        show("kubectl get events")
        started = time.monotonic()
        for host, credential in before.items():
            self.wait_token(other_than=credential, timeout=lifetime + 30, host=host)
        print(f"refreshed after {time.monotonic() - started:.0f}s")
        print(self.sh("kubectl get events --sort-by=.lastTimestamp "
                      "--field-selector involvedObject.kind=Secret", echo=False))  # fmt: skip
        if self.node is not None:
            print("A new Pod pulls with the refreshed credentials:")
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
    # The three providers' components, each turning its provider on and projecting its token;
    # the overlay points each at its stand-in by the component's own variable.
    env = {**demo_env(lifetime), **clouds.variables(stack, ca_bundle=f"{CA_DIR}/ca.crt")}
    overlay = write_overlay(
        stack, stack.workdir / "demo-overlay", image=image.reference, env=env,
        components=tuple(REPO / "config" / "components" / k for k in ("ecr", "gar", "acr")),
    )  # fmt: skip
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
        parts = "etcd, kube-apiserver, token service, AWS (moto), Google and Azure, registries"
        step(f"Starting the local stack: {parts}{' and a node' if args.node else ''}")
        stack = LocalStack(token_lifetime=args.token_lifetime, binaries=find_binaries())
    except KeyboardInterrupt:
        return 0  # nothing was started yet
    try:
        stack.start()
        stack.aws.set_ecr_token_lifetime(args.token_lifetime)
        stack.gcp.set_lifetimes(federated=args.token_lifetime, access_token=args.token_lifetime)
        stack.azure.set_lifetimes(refresh_token=args.token_lifetime)
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
            providers = clouds.sections(
                stack,
                ca_bundle=str(stack.ca_file),
                token_path=clouds.controller_token_path(stack.workdir, "controller"),
            )
            env = {**demo_env(args.token_lifetime), "PSU_PROVIDERS": providers}
            controller = ControllerProcess(stack, env=env, audiences=clouds.AUDIENCES).start()
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
