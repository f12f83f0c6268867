"""The checkout as the collection fumidai.vpc: which top-level entries belong to it (galaxy.yml's
build_ignore decides), used by scripts/setup.sh to link them into .collections and by the tests that
build the tarball.

    python -m tests.support.collection entries    # one top-level entry per line
"""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GALAXY_YML = ROOT / "galaxy.yml"
REQUIREMENTS_TXT = ROOT / "requirements.txt"
COLLECTIONS = ROOT / ".collections"


def galaxy() -> dict:
    return yaml.safe_load(GALAXY_YML.read_text())


def requirement_pins() -> dict[str, str]:
    """name (lower case) -> version of every ``name==version`` (or ``name[extra]==version``) in requirements.txt."""
    pinned = {}
    for line in REQUIREMENTS_TXT.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line)
        if match:
            pinned[match.group(1).lower()] = match.group(3)
    return pinned


def fqcn_prefix() -> str:
    """'fumidai.vpc' from galaxy.yml."""
    meta = galaxy()
    return f"{meta['namespace']}.{meta['name']}"


def ignored(relative: str, patterns: list[str]) -> bool:
    """ansible-galaxy's build_ignore test: a pattern (fnmatch) matches the path relative to the root."""
    return any(fnmatch.fnmatch(relative, p) for p in patterns)


def entries() -> list[str]:
    """Top-level names of the checkout that the built collection contains (wholly or in part)."""
    patterns = galaxy().get("build_ignore", [])
    return sorted(path.name for path in ROOT.iterdir() if not ignored(path.name, patterns))


def main(argv: list[str]) -> int:
    if argv != ["entries"]:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(entries()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
