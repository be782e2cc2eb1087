"""Reading an image from an OCI image layout without container tooling: its config, the files
of its merged layers (whiteouts applied), one file's content, and unpacking it to a directory."""

from __future__ import annotations

import json
import posixpath
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class OciImage:
    layout: Path
    manifest: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def read(cls, layout: Path, tag: str) -> OciImage:
        index = json.loads((layout / "index.json").read_text())
        refs = [
            m
            for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
        ]
        assert refs, f"no manifest tagged {tag} in {layout}: {index}"
        manifest = json.loads(_blob(layout, refs[0]["digest"]).read_text())
        config = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
        return cls(layout, manifest, config)

    @property
    def run_config(self) -> dict[str, Any]:
        """The ``config`` object of the image config: Entrypoint, Cmd, User, Env, Labels."""
        return dict(self.config.get("config") or {})

    @property
    def env(self) -> dict[str, str]:
        pairs = (e.split("=", 1) for e in self.run_config.get("Env") or [])
        return {k: v for k, v in pairs}

    def layers(self) -> list[Path]:
        return [_blob(self.layout, layer["digest"]) for layer in self.manifest["layers"]]

    def files(self) -> dict[str, tarfile.TarInfo]:
        """Every path of the merged root filesystem (normalised to ``/a/b``) and its entry."""
        merged: dict[str, tarfile.TarInfo] = {}
        for layer in self.layers():
            with tarfile.open(layer) as tar:
                for member in tar.getmembers():
                    path = _normal(member.name)
                    parent, base = posixpath.split(path)
                    if base == OPAQUE:
                        for old in [p for p in merged if p.startswith(parent.rstrip("/") + "/")]:
                            del merged[old]
                    elif base.startswith(WHITEOUT):
                        gone = posixpath.join(parent, base[len(WHITEOUT) :])
                        for old in [p for p in merged if p == gone or p.startswith(gone + "/")]:
                            del merged[old]
                    else:
                        merged[path] = member
        return merged

    def read_file(self, path: str) -> bytes:
        """Content of a regular file of the merged root filesystem (following no links)."""
        for layer in reversed(self.layers()):
            with tarfile.open(layer) as tar:
                for member in tar.getmembers():
                    if _normal(member.name) == path and member.isfile():
                        extracted = tar.extractfile(member)
                        assert extracted is not None
                        return extracted.read()
        raise FileNotFoundError(path)

    def unpack(self, dest: Path) -> None:
        """Apply the layers to ``dest`` in order, as a container runtime would (run as root to
        keep owners)."""
        dest.mkdir(parents=True, exist_ok=True)
        dest.chmod(0o755)  # it becomes "/"
        for layer in self.layers():
            with tarfile.open(layer) as tar:
                members = []
                for member in tar.getmembers():
                    path = _normal(member.name)
                    parent, base = posixpath.split(path)
                    target = dest / parent.lstrip("/")
                    if base == OPAQUE:
                        for child in target.iterdir() if target.is_dir() else ():
                            _remove(child)
                    elif base.startswith(WHITEOUT):
                        _remove(target / base[len(WHITEOUT) :])
                    else:
                        members.append(member)
                tar.extractall(dest, members=members, numeric_owner=True, filter="fully_trusted")


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def _normal(name: str) -> str:
    """``./usr/bin/`` -> ``/usr/bin``"""
    return posixpath.normpath("/" + name.lstrip("/"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
