"""The cacheness package finds the storage package and stays light to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cacheness

HEAVY = ("numpy", "pandas", "pyarrow", "polars", "blosc2", "boto3", "botocore", "psycopg")


def test_init_starts_with_extend_path():
    source = Path(cacheness.__file__).read_text(encoding="utf-8")
    assert source.splitlines()[0] == (
        '__path__ = __import__("pkgutil").extend_path(__path__, __name__)'
    )


def test_storage_is_found_through_extend_path():
    import cacheness.storage

    assert any(p.endswith("cacheness") for p in cacheness.__path__)
    assert cacheness.version_info() == {
        "cacheness": cacheness.__version__,
        "blobcache-storage": cacheness.storage.__version__,
    }


def test_module_docstring_survives_the_first_line():
    assert cacheness.__doc__ is not None
    assert cacheness.__doc__.startswith("cacheness: a persistent cache")


def test_import_cacheness_loads_no_heavy_dependency():
    probe = "import sys, json, cacheness; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    loaded = set(json.loads(out))
    assert "cacheness" in loaded
    assert sorted(loaded & set(HEAVY)) == []
