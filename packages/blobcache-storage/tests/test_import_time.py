"""What ``import cacheness.storage`` loads, and what it leaves for first use (no timing).

Names of ``cacheness.storage`` are imported on first access; heavy or optional modules
load only when something needs them. These tests read ``sys.modules`` of a fresh
process; the figures (milliseconds, next to diskcache) are benchmarks/import_time.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("numpy", "pandas", "pyarrow", "polars", "blosc2", "boto3", "botocore", "psycopg")
CLI = ("click", "rich", "cacheness.storage.cli", "cacheness.cli")
# Loaded when first needed, never by the import itself.
LATER = (
    "sqlalchemy",
    "asyncio",
    "importlib.metadata",
    "msgspec",
    "zstandard",
    "cloudpickle",
    "cacheness.storage._blob_store",
    "cacheness.storage._blob.filesystem",
    "cacheness.storage._metadata.sqlite",
    "cacheness.storage._handlers.registry",
)


def modules_loaded_by(statement: str) -> set[str]:
    probe = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def test_import_storage_loads_neither_heavy_nor_deferred_modules():
    loaded = modules_loaded_by("import cacheness.storage")
    assert "cacheness.storage.errors" in loaded  # the error hierarchy is always there
    assert sorted(loaded & set(HEAVY + LATER)) == []


def test_the_library_never_imports_the_command_line():
    # export, import and migrate are library calls: click and rich stay out of them
    loaded = modules_loaded_by(
        "import io, cacheness, cacheness.storage as s; "
        "store = s.BlobStore(metadata_backend='memory', blob_backend='memory'); "
        "store.put(b'x' * 10_000, key='k'); buffer = io.BytesIO(); store.export(buffer); "
        "s.BlobStore(metadata_backend='memory', blob_backend='memory').import_("
        "io.BytesIO(buffer.getvalue())); "
        "s.migrate(store, s.BlobStore(metadata_backend='memory', blob_backend='memory'))"
    )
    assert sorted(loaded & set(CLI)) == []
    assert "cacheness.storage._portability.transfer" in loaded


def test_a_name_loads_its_module_on_first_access():
    loaded = modules_loaded_by("import cacheness.storage as s; s.MemoryBlobBackend")
    assert "cacheness.storage._blob.memory" in loaded
    assert sorted(loaded & {"sqlalchemy", "cacheness.storage._blob.s3"}) == []


def test_sql_backends_load_sqlalchemy_only_when_they_need_it():
    loaded = modules_loaded_by(
        "import cacheness.storage as s; assert s.SqliteMetadataBackend.name == 'sqlite'"
    )
    assert "sqlalchemy" not in loaded  # the class, not yet a new index's DDL
    loaded = modules_loaded_by("import cacheness.storage as s; s.PostgresMetadataBackend")
    assert "sqlalchemy" in loaded
    assert sorted(loaded & set(HEAVY)) == []


def test_storage_alone_is_a_namespace_portion():
    import cacheness.storage

    # The storage distribution ships no cacheness/__init__.py of its own.
    storage_dir = cacheness.storage.__path__[0]
    assert storage_dir.replace("\\", "/").endswith("cacheness/storage")
    parent = os.path.dirname(storage_dir)
    assert not os.path.exists(os.path.join(parent, "__init__.py"))


def test_every_public_name_resolves_and_dir_lists_them():
    import cacheness.storage as storage

    assert set(storage.__all__) <= set(dir(storage))
    assert [name for name in storage.__all__ if getattr(storage, name, None) is None] == []
