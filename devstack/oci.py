"""Small OCI images written without container tooling: the test image and the pause image.

Both hold one layer made of a few files (the ``tiny`` program of ``hack/tiny``, under the names
it answers to, and any plain files), in an OCI image layout that skopeo pushes to the registry
or that ``ctr images import`` reads as a tar archive. Everything is deterministic (mtime 0,
sorted entries), so the same inputs give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd's import takes the full reference from this annotation; skopeo and the layout
# spec use ref.name for the tag.
CONTAINERD_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class ImageSpec:
    """One layer of files and the run configuration of a tiny image."""

    files: Mapping[str, bytes] = field(default_factory=dict)  # path -> content (0644)
    executables: Mapping[str, bytes] = field(default_factory=dict)  # path -> content (0755)
    symlinks: Mapping[str, str] = field(default_factory=dict)  # path -> target
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=lambda: ["PATH=/bin"])
    user: str = ""


def _layer(spec: ImageSpec) -> bytes:
    entries: list[tuple[str, tarfile.TarInfo, bytes | None]] = []
    data: bytes | None
    dirs = {
        str(Path(p).parent).lstrip("/")
        for p in [*spec.files, *spec.executables, *spec.symlinks]
        if str(Path(p).parent) != "/"
    }
    for d in sorted(dirs):
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        entries.append((d, info, None))
    for mode, contents in ((0o644, spec.files), (0o755, spec.executables)):
        for path, data in contents.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            entries.append((info.name, info, data))
    for path, target in spec.symlinks.items():
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        entries.append((info.name, info, None))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _, info, data in sorted(entries, key=lambda e: e[0]):
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def write_layout(layout: Path, spec: ImageSpec, *, tag: str, name: str | None = None) -> str:
    """Write ``spec`` as an OCI image layout tagged ``tag``; returns the manifest digest.

    ``name`` (a full reference) is recorded for ``ctr images import``.
    """
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    raw = _layer(spec)
    layer = gzip.compress(raw, mtime=0)
    run: dict[str, Any] = {"Env": spec.env}
    if spec.entrypoint is not None:
        run["Entrypoint"] = spec.entrypoint
    if spec.cmd is not None:
        run["Cmd"] = spec.cmd
    if spec.user:
        run["User"] = spec.user
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": run,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": put(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": put(layer), "size": len(layer)}],
        }
    ).encode()
    manifest_digest = put(manifest)
    annotations = {REF_NAME: tag, **({CONTAINERD_NAME: name} if name else {})}
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": MANIFEST,
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "annotations": annotations,
                    }
                ],
            }
        )
    )
    return manifest_digest


def archive(layout: Path, tar_path: Path) -> Path:
    """The layout as a tar archive (what ``ctr images import`` reads)."""
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(layout.rglob("*")):
            if path.is_file():
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(layout)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with path.open("rb") as f:
                    tar.addfile(info, f)
    return tar_path
