"""Map a release tag to its package, failing when the tag and the version disagree.

``python .ci/release_package.py cacheness-v0.1.0`` prints ``package=cacheness`` (for
``$GITHUB_OUTPUT``) when ``packages/cacheness`` is at version 0.1.0, and exits 1 with a
message otherwise. Versions are read from the files hatch reads them from.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("blobcache-storage", "cacheness")


def package_version(package: str) -> str:
    directory = REPO / "packages" / package
    pyproject = tomllib.loads((directory / "pyproject.toml").read_text())
    namespace: dict[str, str] = {}
    exec((directory / pyproject["tool"]["hatch"]["version"]["path"]).read_text(), namespace)
    return namespace["__version__"]


def package_for_tag(tag: str) -> str:
    """Return the package a tag releases; raise ValueError when it must not be released."""
    for package in PACKAGES:
        prefix = f"{package}-v"
        if tag.startswith(prefix):
            wanted, actual = tag.removeprefix(prefix), package_version(package)
            if wanted != actual:
                raise ValueError(f"tag {tag} says {wanted} but packages/{package} is at {actual}")
            return package
    raise ValueError(f"tag {tag} names no package; expected one of: {', '.join(PACKAGES)}")


if __name__ == "__main__":
    try:
        print(f"package={package_for_tag(sys.argv[1])}")
    except (IndexError, ValueError) as exc:
        print(f"::error::{exc or 'usage: release_package.py TAG'}", file=sys.stderr)
        sys.exit(1)
