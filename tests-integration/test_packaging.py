"""Build both distributions and install them the ways users do.

* the storage wheel never contains ``cacheness/__init__.py``;
* storage alone: ``import cacheness.storage`` works, the cache API does not exist;
* both wheels: the cacheness wheel's dependency range is met by the local storage wheel;
* an editable install (different ``sys.path`` entries) still finds ``cacheness.storage``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
STORAGE_DIR = REPO / "packages" / "blobcache-storage"
CACHE_DIR = REPO / "packages" / "cacheness"


def run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
    )  # fmt: skip
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    for package in (STORAGE_DIR, CACHE_DIR):
        run(sys.executable, "-m", "hatch", "build", "-t", "wheel", "-t", "sdist", out, cwd=package)
    return out


def one(dist: Path, pattern: str) -> Path:
    matches = sorted(dist.glob(pattern))
    assert len(matches) == 1, (pattern, matches)
    return matches[0]


def wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


def make_venv(path: Path) -> Path:
    uv = shutil.which("uv")
    if uv:
        run(uv, "venv", "--quiet", "--python", sys.executable, path)
    else:
        run(sys.executable, "-m", "venv", path)
    return path / ("Scripts" if os.name == "nt" else "bin") / "python"


def pip_install(python: Path, *args: str | Path) -> None:
    uv = shutil.which("uv")
    if uv:
        run(uv, "pip", "install", "--quiet", "--python", python, *args)
    else:
        run(python, "-m", "pip", "install", "--quiet", *args)


def test_storage_wheel_ships_only_the_storage_subpackage(dist):
    with zipfile.ZipFile(one(dist, "blobcache_storage-*.whl")) as archive:
        names = archive.namelist()
    assert "cacheness/__init__.py" not in names
    assert "cacheness/storage/__init__.py" in names
    assert "cacheness/storage/py.typed" in names
    code = [n for n in names if not n.startswith("blobcache_storage-")]
    assert all(n.startswith("cacheness/storage/") for n in code), code


def test_cacheness_wheel_ships_everything_but_storage(dist):
    with zipfile.ZipFile(one(dist, "cacheness-*.whl")) as archive:
        names = archive.namelist()
    assert "cacheness/__init__.py" in names
    assert "cacheness/py.typed" in names
    assert not [n for n in names if n.startswith("cacheness/storage/")]


def test_sdists_carry_sources_license_and_tests(dist):
    with tarfile.open(one(dist, "blobcache_storage-*.tar.gz")) as archive:
        storage = archive.getnames()
    with tarfile.open(one(dist, "cacheness-*.tar.gz")) as archive:
        cache = archive.getnames()
    for names, top in ((storage, "blobcache_storage-"), (cache, "cacheness-")):
        roots = {n.split("/", 1)[1] for n in names if "/" in n}
        assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO"} <= roots, top
        assert any(n.startswith("tests/") for n in roots), top
    assert not any(n.endswith("src/cacheness/__init__.py") for n in storage)
    assert any(n.endswith("src/cacheness/storage/__init__.py") for n in storage)
    assert any(n.endswith("src/cacheness/__init__.py") for n in cache)


def test_built_metadata_declares_the_range_and_extras(dist):
    storage = wheel_metadata(one(dist, "blobcache_storage-*.whl"))
    cache = wheel_metadata(one(dist, "cacheness-*.whl"))
    storage_version = Version(storage["Version"])

    assert storage["Requires-Python"] == ">=3.11"
    assert cache["Requires-Python"] == ">=3.11"
    assert set(storage.get_all("Provides-Extra")) >= {
        "numpy", "pandas", "arrow", "polars", "s3", "postgresql", "otel", "all",
    }  # fmt: skip
    assert set(cache.get_all("Provides-Extra")) >= {"cloud", "dataframes", "numpy", "otel", "all"}

    requirements = [Requirement(r) for r in cache.get_all("Requires-Dist")]
    core = [r for r in requirements if r.name == "blobcache-storage" and r.marker is None]
    assert len(core) == 1
    specifier = core[0].specifier
    assert len(list(specifier)) >= 2, f"a range, not a pin: {specifier}"
    assert storage_version in specifier
    assert Version("99.0") not in specifier

    cloud = [
        r for r in requirements
        if r.name == "blobcache-storage" and r.marker and r.marker.evaluate({"extra": "cloud"})
    ]  # fmt: skip
    assert cloud, "cacheness[cloud] must pull blobcache-storage extras"
    assert {"s3", "postgresql"} <= set().union(*(r.extras for r in cloud))

    for meta in (storage, cache):
        assert meta["License-Expression"] == "MIT"
        assert "Typing :: Typed" in meta.get_all("Classifier")


def test_console_scripts_and_the_cli_extra(dist):
    scripts = {}
    for pattern in ("blobcache_storage-*.whl", "cacheness-*.whl"):
        with zipfile.ZipFile(one(dist, pattern)) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
            scripts[pattern] = archive.read(name).decode()
    assert "blobcache = cacheness.storage.cli:main" in scripts["blobcache_storage-*.whl"]
    assert "cacheness = cacheness.cli:main" in scripts["cacheness-*.whl"]
    storage = wheel_metadata(one(dist, "blobcache_storage-*.whl"))
    cache = wheel_metadata(one(dist, "cacheness-*.whl"))
    assert "cli" in storage.get_all("Provides-Extra")
    assert "cli" in cache.get_all("Provides-Extra")
    cli = [Requirement(r) for r in storage.get_all("Requires-Dist")]
    extra = {r.name for r in cli if r.marker and r.marker.evaluate({"extra": "cli"})}
    assert extra == {"click", "rich"}


STORAGE_ONLY_PROBE = textwrap.dedent(
    """
    import cacheness.storage
    from cacheness.storage.errors import CacheError
    print("storage", cacheness.storage.__version__)
    try:
        from cacheness import cacheness as cache_class
    except ImportError as exc:
        print("no cache layer:", type(exc).__name__)
    else:
        raise SystemExit("the cache layer must not be importable from the storage wheel")
    """
)

BOTH_PROBE = textwrap.dedent(
    """
    import cacheness, cacheness.storage
    print("versions", sorted(cacheness.version_info().items()))
    print("storage file", cacheness.storage.__file__)
    """
)


def test_storage_wheel_alone_in_a_fresh_venv(dist, tmp_path):
    python = make_venv(tmp_path / "storage-only")
    pip_install(python, one(dist, "blobcache_storage-*.whl"))
    out = run(python, "-c", STORAGE_ONLY_PROBE, cwd=tmp_path)
    assert "storage 0." in out
    assert "no cache layer: ImportError" in out


def test_both_wheels_in_a_fresh_venv_via_find_links(dist, tmp_path):
    storage_version = wheel_metadata(one(dist, "blobcache_storage-*.whl"))["Version"]
    python = make_venv(tmp_path / "both")
    # --find-links lets the local storage wheel satisfy cacheness's dependency range.
    pip_install(
        python,
        "--find-links", dist,
        one(dist, "cacheness-*.whl"),
        f"blobcache-storage=={storage_version}",
    )  # fmt: skip
    out = run(python, "-c", BOTH_PROBE, cwd=tmp_path)
    assert f"('blobcache-storage', '{storage_version}')" in out
    assert str(tmp_path / "both") in out  # storage came from the venv, not the repo


def test_editable_installs_find_storage_on_another_path(tmp_path):
    python = make_venv(tmp_path / "editable")
    pip_install(python, "-e", STORAGE_DIR, "-e", CACHE_DIR)
    probe = (
        "import cacheness, cacheness.storage, os; "
        "print(os.path.dirname(os.path.dirname(cacheness.__file__))); "
        "print(os.path.dirname(os.path.dirname(os.path.dirname(cacheness.storage.__file__))))"
    )
    cache_root, storage_root = run(python, "-c", probe, cwd=tmp_path).split()
    assert Path(cache_root) == CACHE_DIR / "src"
    assert Path(storage_root) == STORAGE_DIR / "src"
