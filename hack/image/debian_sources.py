"""Print the Debian archive entries of this machine's apt sources as one-line sources.list
entries for one suite (``deb URI SUITE[-updates|-security] main``), for mmdebstrap.

Only entries for the suite itself, its -updates and its -security suite with the ``main``
component are kept, so third-party repositories (which may share the suite name but not the
component) stay out of the image bases. ``PSU_DEBIAN_MIRROR`` replaces the machine's mirror
(the security suite is then taken from the same host's ``debian-security``); without any
entry, deb.debian.org is used.

    python3 hack/image/debian_sources.py bookworm
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

APT = Path("/etc/apt")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def _one_line_entries(text: str) -> list[tuple[str, str, list[str]]]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):  # options such as [signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 3:
            entries.append((words[0], words[1], words[2:]))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, str, list[str]]]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        components = fields.get("components", "").split()
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                entries.append((uri, suite, components))
    return entries


def host_entries() -> list[tuple[str, str, list[str]]]:
    entries = []
    files = [APT / "sources.list", *sorted((APT / "sources.list.d").glob("*.list"))]
    for path in files:
        if path.is_file():
            entries += _one_line_entries(path.read_text(errors="replace"))
    for path in sorted((APT / "sources.list.d").glob("*.sources")):
        entries += _deb822_entries(path.read_text(errors="replace"))
    return entries


def sources(suite: str) -> list[str]:
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    mirror = os.environ.get("PSU_DEBIAN_MIRROR", "").rstrip("/")
    if mirror:
        security = re.sub(r"/debian$", "/debian-security", mirror)
        lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
        if security != mirror:
            lines.append(f"deb {security} {suite}-security main")
        return lines
    lines = []
    for uri, entry_suite, components in host_entries():
        line = f"deb {uri.rstrip('/')} {entry_suite} main"
        if entry_suite in wanted and "main" in components and line not in lines:
            lines.append(line)
    if not any(line.split()[2] == suite for line in lines):
        return [
            f"deb {DEFAULT_MIRROR} {suite} main",
            f"deb {DEFAULT_MIRROR} {suite}-updates main",
            f"deb {DEFAULT_MIRROR}-security {suite}-security main",
        ]
    return lines


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(sources(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
