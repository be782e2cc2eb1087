"""Which of the extracted Debian packages a distroless-style runtime keeps.

Reads the .deb files in an apt archive directory, and prints the names of the packages
reachable from the wanted ones through Depends and Pre-Depends, without passing through the
dropped ones (the tools that only install packages: dpkg, tar, perl-base, debconf, mawk), so
the libraries only they need go too.

    python3 hack/image/keep_packages.py ARCHIVES --want a,b,c --drop x,y
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path


def _field(deb: Path, name: str) -> str:
    out = subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _alternatives(relation: str) -> list[list[str]]:
    """``a (>= 1) | b, c:any`` -> [["a", "b"], ["c"]]"""
    groups = []
    for group in relation.split(","):
        names = [re.split(r"[\s(:\[]", alt.strip(), maxsplit=1)[0] for alt in group.split("|")]
        groups.append([n for n in names if n])
    return [g for g in groups if g]


def keep(archives: Path, want: list[str], drop: set[str]) -> list[str]:
    depends: dict[str, list[list[str]]] = {}
    provides: dict[str, str] = {}
    for deb in sorted(archives.glob("*.deb")):
        name = _field(deb, "Package")
        relations = ", ".join(f for f in (_field(deb, "Pre-Depends"), _field(deb, "Depends")) if f)
        depends[name] = _alternatives(relations)
        for virtual in _alternatives(_field(deb, "Provides")):
            provides.setdefault(virtual[0], name)
    missing = [w for w in want if w not in depends]
    if missing:
        raise SystemExit(f"wanted packages were not extracted: {', '.join(missing)}")
    kept: set[str] = set()
    todo = list(want)
    while todo:
        name = todo.pop()
        if name in kept or name in drop:
            continue
        kept.add(name)
        for group in depends[name]:
            present = [provides.get(alt, alt) for alt in group]
            present = [p for p in present if p in depends and p not in drop]
            todo.extend(present[:1])  # the first alternative that is there and not dropped
    return sorted(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archives", type=Path)
    parser.add_argument("--want", required=True)
    parser.add_argument("--drop", default="")
    args = parser.parse_args()
    drop = {d for d in args.drop.split(",") if d}
    print("\n".join(keep(args.archives, [w for w in args.want.split(",") if w], drop)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
