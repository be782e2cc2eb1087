"""Two ways to run a process from the image, the way a kubelet would run the Deployment's
container: as uid/gid 65532, on a read-only root filesystem with the files it needs mounted
read-only, on the host's network (the local stack listens on loopback).

- ``Podman``: ``podman run`` with its own throwaway storage (vfs), no capabilities,
  no-new-privileges, ``--read-only`` without podman's writable /tmp and /run. runc is used when
  it is installed, as crun refuses hosts with hybrid cgroups; the ulimits are set explicitly
  (at most the host's), as raising them needs a capability a VM may not grant.
- ``Chroot``: without podman, the layers are unpacked into a directory, bound read-only onto
  itself in a private mount namespace, and the entrypoint runs there with ``chroot
  --userspec=65532:65532``. Needs root.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.image.oci import OciImage

USER = "65532:65532"
Mount = tuple[Path, str]  # host path, path in the container (read-only)


def _ulimit(kind: int, cap: int) -> str:
    soft, hard = resource.getrlimit(kind)
    limits = [v for v in (soft, hard) if v != resource.RLIM_INFINITY]
    value = min([cap, *limits])
    return f"{value}:{value}"


@dataclass
class Podman:
    storage: Path
    image: str = ""
    name = "podman"

    def base(self) -> list[str]:
        runtime = shutil.which("runc")
        return [
            "podman",
            f"--root={self.storage / 'root'}",
            f"--runroot={self.storage / 'run'}",
            f"--tmpdir={self.storage / 'tmp'}",
            "--storage-driver=vfs",
            "--events-backend=file",
            "--cgroup-manager=cgroupfs",
            *([f"--runtime={runtime}"] if runtime else []),
        ]

    def pull(self, reference: str, *, creds: str, ca_file: Path) -> None:
        certs = self.storage / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca_file, certs / "ca.crt")
        subprocess.run(
            [*self.base(), "pull", "--quiet", f"--creds={creds}", f"--cert-dir={certs}",
             f"docker://{reference}"],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        self.image = reference

    def argv(
        self,
        name: str,
        *,
        mounts: Sequence[Mount] = (),
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        entrypoint: str | None = None,
    ) -> list[str]:
        return [
            *self.base(), "run", "--rm", f"--name={name}", "--network=host",
            "--read-only", "--read-only-tmpfs=false", f"--user={USER}", "--cap-drop=all",
            "--security-opt=no-new-privileges",
            f"--ulimit=nofile={_ulimit(resource.RLIMIT_NOFILE, 65536)}",
            f"--ulimit=nproc={_ulimit(resource.RLIMIT_NPROC, 4096)}",
            *(f"--volume={src}:{dst}:ro" for src, dst in mounts),
            *(f"--env={k}={v}" for k, v in (env or {}).items()),
            *([f"--entrypoint={json.dumps([entrypoint])}"] if entrypoint else []),
            self.image, *args,
        ]  # fmt: skip

    def remove(self, name: str) -> None:
        subprocess.run([*self.base(), "rm", "--force", "--time=5", name],
                       capture_output=True, timeout=60, check=False)  # fmt: skip

    def close(self) -> None:
        subprocess.run([*self.base(), "rm", "--all", "--force"],
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        subprocess.run([*self.base(), "rmi", "--all", "--force"],
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(self.storage, ignore_errors=True)


@dataclass
class Chroot:
    rootfs: Path
    image: OciImage
    name = "chroot"
    _prepared: set[str] = field(default_factory=set)

    def argv(
        self,
        name: str,
        *,
        mounts: Sequence[Mount] = (),
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        entrypoint: str | None = None,
    ) -> list[str]:
        del name  # one namespace per process; nothing to name
        config = self.image.run_config
        command = [entrypoint] if entrypoint else list(config.get("Entrypoint") or [])
        if not args and not entrypoint:
            args = list(config.get("Cmd") or [])
        environment = {**self.image.env, "HOME": "/home/nonroot", **(env or {})}
        root = shlex.quote(str(self.rootfs))
        lines = ["set -eu", f"mount --bind {root} {root}"]
        for src, dst in [*mounts, (Path("/dev"), "/dev")]:
            target = _inside(self.rootfs, dst)
            if dst not in self._prepared:  # mount points, made while the tree is writable
                target.mkdir(parents=True, exist_ok=True)
                self._prepared.add(dst)
            lines.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(target))}")
            lines.append(f"mount -o remount,bind,ro {shlex.quote(str(target))}")
        lines.append(f"mount -t proc proc {root}/proc")
        lines.append(f"mount -o remount,bind,ro {root}")
        run = [
            shutil.which("env") or "/usr/bin/env", "-i",
            *(f"{k}={v}" for k, v in environment.items()),
            shutil.which("chroot") or "/usr/sbin/chroot",
            f"--userspec={USER}", f"--groups={USER.split(':')[1]}",
            str(self.rootfs), *command, *args,
        ]  # fmt: skip
        lines.append(f"exec {shlex.join(run)}")
        return ["unshare", "--mount", "--propagation=private", "--", "sh", "-c",
                "\n".join(lines)]  # fmt: skip

    def remove(self, name: str) -> None:
        del name

    def close(self) -> None:
        shutil.rmtree(self.rootfs, ignore_errors=True)


Runner = Podman | Chroot


def _inside(root: Path, path: str) -> Path:
    """``path`` of the image's tree at ``root``, its symlinks resolved within ``root`` (an
    absolute link such as /var/run -> /run must not lead to the host's /run)."""
    current, parts, hops = root, [p for p in path.split("/") if p], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(f"too many symbolic links in {path} under {root}")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            current = root if target.startswith("/") else current
        else:
            current = candidate
    return current
