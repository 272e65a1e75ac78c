"""Test cacheness against the lowest blobcache-storage version its range allows.

cacheness depends on a *range* of blobcache-storage versions, so its tests must pass
with the oldest release in that range, not only with the storage code next to it.

The lowest version comes from ``packages/cacheness/pyproject.toml``. It is taken, in
order, from the storage package in this tree (when its version is that one), from the git
tag ``blobcache-storage-vX.Y.Z``, or from PyPI. A fresh virtual environment gets that
storage version, cacheness from this tree (not editable) and the test tools listed in
``hatch.toml``; then cacheness's unit tests run there.

Usage: ``python .ci/test_lowest_storage.py [pytest args]`` (needs ``uv`` or ``venv``+pip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
STORAGE = REPO / "packages" / "blobcache-storage"
CACHE = REPO / "packages" / "cacheness"


def lowest_allowed(requirement: Requirement) -> Version:
    """The smallest version a ``>=``/``==``/``~=`` clause of the specifier allows."""
    floors = [
        Version(spec.version)
        for spec in requirement.specifier
        if spec.operator in (">=", "==", "~=", "===")
    ]
    if not floors:
        raise SystemExit(f"{requirement} has no lower bound: give it one")
    lowest = max(floors)
    if lowest not in requirement.specifier:
        raise SystemExit(f"{lowest} is excluded by {requirement.specifier}")
    return lowest


def storage_requirement() -> Requirement:
    project = tomllib.loads((CACHE / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == "blobcache-storage":
            return requirement
    raise SystemExit("cacheness does not depend on blobcache-storage")


def in_tree_version() -> Version:
    namespace: dict[str, str] = {}
    exec((STORAGE / "src/cacheness/storage/_version.py").read_text(), namespace)
    return Version(namespace["__version__"])


def storage_source(version: Version, workdir: Path) -> str:
    """A pip requirement that installs blobcache-storage ``version`` with all extras."""
    if in_tree_version() == version:
        print(f"blobcache-storage {version}: the package in this tree")
        return f"blobcache-storage[all] @ {STORAGE.as_uri()}"
    tag = f"blobcache-storage-v{version}"
    if subprocess.run(["git", "-C", REPO, "rev-parse", "-q", "--verify", tag],
                      capture_output=True).returncode == 0:  # fmt: skip
        checkout = workdir / "storage-at-tag"
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", checkout, tag],
                       check=True)  # fmt: skip
        print(f"blobcache-storage {version}: git tag {tag}")
        return f"blobcache-storage[all] @ {(checkout / 'packages/blobcache-storage').as_uri()}"
    print(f"blobcache-storage {version}: PyPI")
    return f"blobcache-storage[all]=={version}"


def test_tools() -> list[str]:
    hatch = tomllib.loads((REPO / "hatch.toml").read_text())
    return list(hatch["envs"]["default"]["dependencies"])


def main(pytest_args: list[str]) -> int:
    requirement = storage_requirement()
    version = lowest_allowed(requirement)
    with tempfile.TemporaryDirectory(prefix="cacheness-lowest-") as tmp:
        workdir = Path(tmp)
        venv = workdir / "venv"
        python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        uv = shutil.which("uv")
        if uv:
            subprocess.run([uv, "venv", "-q", "--python", sys.executable, venv], check=True)
            install = [uv, "pip", "install", "-q", "--python", python]
        else:
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            install = [python, "-m", "pip", "install", "-q"]
        try:
            pinned = storage_source(version, workdir)
            subprocess.run([*install, pinned, f"{CACHE}[all]", *test_tools()], check=True)
            check = (
                "import cacheness.storage as s, cacheness as c; "
                "print('testing cacheness', c.__version__, 'on blobcache-storage', s.__version__)"
            )
            subprocess.run([python, "-c", check], check=True, cwd=workdir)
            tests = [python, "-m", "pytest", str(CACHE / "tests"), *pytest_args]
            return subprocess.run(tests, cwd=REPO, check=False).returncode
        finally:
            if (workdir / "storage-at-tag").exists():
                subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force",
                                workdir / "storage-at-tag"], check=False)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
