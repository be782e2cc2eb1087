"""The container image: built from the Dockerfile without a Docker engine (hack/build-image.sh,
cached by its inputs), pushed to the local registry, pulled back and inspected, then run
against the local stack as the Deployment runs it (uid 65532, read-only root filesystem,
the projected token mounted at its default path) until it fills a pull Secret."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.binaries import REPO
from devstack.controller import NAMESPACE, ControllerProcess
from devstack.procs import Process
from devstack.stack import LocalStack
from pull_secret_updater import __version__
from tests.conftest import FAST
from tests.helpers import ClusterHelper, unique
from tests.image.oci import OciImage
from tests.image.runners import Runner

pytestmark = pytest.mark.stack

VERSION = __version__
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "busybox", "toybox"}
CONFIG_DIR = "/etc/pull-secret-updater"
# The Deployment's projected token volume, where PSU_TOKEN_PATH points by default.
TOKEN_DIR = "/var/run/chainguard/oidc"


def test_image_config_runs_the_cli_as_65532(pulled_image: OciImage) -> None:
    config = pulled_image.run_config
    assert pulled_image.config["os"] == "linux"
    assert config["Entrypoint"] == ["pull-secret-updater"]
    assert config["Cmd"] == ["run"]
    assert config["User"] == "65532:65532"
    assert pulled_image.env["PATH"].split(":")[0] == "/venv/bin"
    assert pulled_image.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    # A plain `docker build` labels it with the Dockerfile's default, which must follow too.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(rf"^ARG VERSION={re.escape(VERSION)}$", dockerfile, re.MULTILINE)


def test_image_holds_the_package_and_no_shell(pulled_image: OciImage) -> None:
    files = pulled_image.files()
    # The entrypoint resolves through PATH to the venv's script, whose interpreter is the
    # runtime base's Python.
    script = pulled_image.read_file("/venv/bin/pull-secret-updater").decode()
    assert script.startswith("#!/venv/bin/python\n")
    assert files["/venv/bin/python"].linkname == "/usr/bin/python3.11"
    assert files["/usr/bin/python3.11"].isfile()
    # The package, at this version, with only its runtime dependencies, byte-compiled.
    site = "/venv/lib/python3.11/site-packages"
    metadata = pulled_image.read_file(f"{site}/pull_secret_updater-{VERSION}.dist-info/METADATA")
    assert f"\nVersion: {VERSION}\n" in metadata.decode()
    assert any(p.startswith(f"{site}/pull_secret_updater/__pycache__/") for p in files)
    for dev_only in ("pytest", "mypy", "ruff", "hypothesis", "aiohttp"):
        assert f"{site}/{dev_only}" not in files
    # No shell, no package manager: the only executables on PATH (and in the usual
    # directories) are Python and the venv's scripts.
    path_dirs = set(pulled_image.env["PATH"].split(":")) | {"/bin", "/sbin", "/usr/sbin"}
    executables = {
        p
        for p, entry in files.items()
        if p.rsplit("/", 1)[0] in path_dirs and (entry.issym() or entry.mode & 0o111)
        and not entry.isdir()
    }  # fmt: skip
    assert not {p for p in executables if p.rsplit("/", 1)[1] in SHELLS}
    assert {p for p in executables if not p.startswith("/venv/bin/")} == {
        "/usr/bin/python3", "/usr/bin/python3.11",
    }  # fmt: skip
    assert not [
        p for p, entry in files.items()
        if not entry.isdir() and re.search(r"/(apt|apt-get|dpkg|dpkg-[a-z]+|perl[.0-9]*)$", p)
    ]  # fmt: skip
    # Users and trust as a distroless base has them.
    passwd = pulled_image.read_file("/etc/passwd").decode()
    assert "nonroot:x:65532:65532:" in passwd
    assert pulled_image.read_file("/etc/ssl/certs/ca-certificates.crt").count(b"BEGIN CERT") > 100
    assert (files["/home/nonroot"].uid, files["/home/nonroot"].gid) == (65532, 65532)


def test_container_runs_the_entrypoint_and_has_no_shell(runner: Runner) -> None:
    def run(args: list[str], entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
        name = unique("psu-image")
        argv = runner.argv(name, args=args, entrypoint=entrypoint)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        finally:
            runner.remove(name)

    version = run(args=["--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"pull-secret-updater {VERSION}"
    shell = run(entrypoint="sh", args=["-c", "true"])
    assert shell.returncode == 127, (shell.stdout, shell.stderr)
    # The root filesystem is read-only and the process is 65532, not root.
    probe = run(
        entrypoint="python3",
        args=["-c", "import os; print(os.getuid(), os.getgid(), os.access('/', os.W_OK), "
                    "os.access('/tmp', os.W_OK))"],
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["65532", "65532", "False", "False"]


def _lease_holder(cluster: ClusterHelper) -> str:
    out = cluster.kubectl("-n", NAMESPACE, "get", "lease", "pull-secret-updater",
                          "-o", "json", check=False)  # fmt: skip
    return str(json.loads(out)["spec"].get("holderIdentity") or "") if out else ""


def _controllers_started_here() -> list[str]:
    """Command lines of controller processes this test session runs (its descendants)."""
    parents: dict[int, int] = {}
    commands: dict[int, list[bytes]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (proc / "stat").read_text()
            parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            commands[int(proc.name)] = (proc / "cmdline").read_bytes().split(b"\0")

    def descends_from_us(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            seen.add(pid)
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [
        " ".join(a.decode(errors="replace") for a in argv)
        for pid, argv in commands.items()
        if b"pull_secret_updater" in argv and b"run" in argv and descends_from_us(pid)
    ]


def test_controller_from_the_image_fills_a_pull_secret(
    stack: LocalStack,
    installed: str,
    cluster: ClusterHelper,
    runner: Runner,
    tmp_path: Path,
) -> None:
    # The other tests stop their controllers; this one must be the only replica of the stack.
    assert not _controllers_started_here(), "a controller is still running"
    name = unique("psu-image")
    # Kubeconfig (a TokenRequest token of the controller ServiceAccount) and projected token,
    # made as for a controller process; the container gets them as read-only mounts.
    controller = ControllerProcess(stack, name=name, env=FAST)
    files = tmp_path / "config"
    files.mkdir(mode=0o755)
    (files / "ca.crt").write_bytes(stack.ca_file.read_bytes())
    kubeconfig = yaml.safe_load(controller.kubeconfig.read_text())
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["certificate-authority"] = f"{CONFIG_DIR}/ca.crt"
    (files / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    for path in files.iterdir():
        path.chmod(0o644)
    env = {k: v for k, v in controller.env.items() if k not in {"PATH", "HOME", "PSU_TOKEN_PATH"}}
    env["PSU_KUBECONFIG"] = f"{CONFIG_DIR}/kubeconfig"
    env["PSU_CA_BUNDLE"] = f"{CONFIG_DIR}/ca.crt"
    mounts = [(files, CONFIG_DIR), (controller.token_path.parent, TOKEN_DIR)]
    controller.process = Process(
        name, runner.argv(name, mounts=mounts, env=env), log_dir=controller.workdir
    )
    try:
        with controller:  # started, and ready (/readyz) within 30 s
            namespace = cluster.namespace("image")
            cluster.create_pull_secret(namespace, installed)
            cluster.wait_filled(namespace, timeout=60)
            # It filled the Secret as the leader: the Lease holder is this replica.
            holder = _lease_holder(cluster)
            assert holder.split("_")[0] == name, holder
            assert cluster.pull(cluster.docker_config(namespace), tmp_path) == 0
            writes = re.search(
                r'^pull_secret_updater_secret_writes_total\{outcome="success"\} (\S+)$',
                controller.metrics(), re.MULTILINE,
            )  # fmt: skip
            assert writes is not None
            assert float(writes.group(1)) >= 1
    finally:
        runner.remove(name)
        logs = controller.logs()
        print(f"--- {name} ({runner.name}) log (tail) ---\n{controller.process.log_tail(40)}")
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert records, logs[-2000:]
    assert "Traceback" not in logs
    assert "Read-only file system" not in logs
