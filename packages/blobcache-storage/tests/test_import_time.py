"""Heavy optional dependencies stay out of ``import cacheness.storage``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("numpy", "pandas", "pyarrow", "polars", "blosc2", "boto3", "botocore", "psycopg")
# Needed only by the SQL backends: imported when one is created, not before.
SQL = ("sqlalchemy",)


def modules_loaded_by(statement: str) -> set[str]:
    probe = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def test_import_storage_loads_no_heavy_dependency():
    loaded = modules_loaded_by("import cacheness.storage")
    assert "cacheness.storage" in loaded
    assert sorted(loaded & set(HEAVY + SQL)) == []


def test_sql_backends_load_on_first_access():
    loaded = modules_loaded_by(
        "import cacheness.storage as s; assert s.SqliteMetadataBackend.name == 'sqlite'"
    )
    assert "sqlalchemy" in loaded
    assert sorted(loaded & set(HEAVY)) == []


def test_storage_alone_is_a_namespace_portion():
    import cacheness.storage

    # The storage distribution ships no cacheness/__init__.py of its own.
    storage_dir = cacheness.storage.__path__[0]
    assert storage_dir.replace("\\", "/").endswith("cacheness/storage")
    parent = os.path.dirname(storage_dir)
    assert not os.path.exists(os.path.join(parent, "__init__.py"))
