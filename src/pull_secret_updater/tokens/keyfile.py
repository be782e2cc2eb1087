"""Verified keys kept between calls of the kubelet plugin, in a file only its user can write.

The plugin is a new process at every call, so without a cache every call fetches the token
service's discovery document and key set before it can verify the token it got: two requests
on a call that needs one. The key set is public; what matters is that nobody else can put a
key there, or they could make the plugin vouch for a token they signed. So a cache file is
used only if it and its directory belong to the plugin's user (or the directory to root),
neither is writable by group or others, and the file is no symlink; anything else is ignored
(the keys are fetched as without a cache), never an error. A key set older than the
verifier's `max_age` is fetched again, and a token naming a key that is not in the file is a
refetch too (`TokenVerifier`): a rotation is seen at the first token signed with the new key,
and a withdrawn key stops vouching within `max_age`.

Written whole to a temporary file and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["KeyFile"]

_UNSAFE = stat.S_IWGRP | stat.S_IWOTH


class KeyFile:
    """The key set of `issuer`, kept under `directory` (created 0700 if missing)."""

    def __init__(
        self, directory: Path, *, issuer: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.issuer = issuer
        digest = hashlib.sha256(issuer.encode()).hexdigest()[:24]
        self.path = directory / f"keys-{digest}.json"
        self._clock = clock

    def load(self, *, max_age: float) -> tuple[list[dict[str, Any]], float] | None:
        """The key entries kept and their age in seconds; None when there are none that may
        be used (missing, too old, unsafe, unreadable)."""
        if not self._safe_directory():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                return None
            if info.st_mode & _UNSAFE or info.st_size > 1024 * 1024:
                return None
            try:
                document = json.loads(file.read())
            except ValueError:
                return None
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            return None
        fetched_at, keys = document.get("fetched_at"), document.get("keys")
        if not isinstance(fetched_at, (int, float)) or not isinstance(keys, list):
            return None
        age = self._clock() - float(fetched_at)
        if not 0 <= age < max_age:
            return None
        return [k for k in keys if isinstance(k, dict)], age

    def save(self, keys: list[dict[str, Any]]) -> None:
        """Keep `keys`, fetched now; a failure leaves the cache as it was (never raises)."""
        with contextlib.suppress(OSError):
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._safe_directory():
                return
            document = {"issuer": self.issuer, "fetched_at": self._clock(), "keys": keys}
            fd, name = tempfile.mkstemp(dir=self.directory, prefix=".keys-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as file:
                    json.dump(document, file)
                os.replace(name, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(name)

    def _safe_directory(self) -> bool:
        try:
            info = os.lstat(self.directory)
        except OSError:
            return False
        return (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid in (os.geteuid(), 0)
            and not info.st_mode & _UNSAFE
        )
