"""The registry builds each metadata backend by name."""

from __future__ import annotations

import pytest

from cacheness.storage import (
    JsonMetadataBackend,
    MemoryMetadataBackend,
    PostgresMetadataBackend,
    SqliteMetadataBackend,
    get_metadata_backend,
    list_metadata_backends,
)
from cacheness.storage._registry import metadata_backends
from cacheness.storage.errors import ConfigError


def test_names_resolve_to_the_classes():
    assert {"memory", "json", "sqlite", "postgresql"} <= set(list_metadata_backends())
    assert metadata_backends.get_class("memory") is MemoryMetadataBackend
    assert metadata_backends.get_class("json") is JsonMetadataBackend
    assert metadata_backends.get_class("sqlite") is SqliteMetadataBackend
    assert metadata_backends.get_class("postgresql") is PostgresMetadataBackend


def test_options_are_passed(tmp_path):
    with get_metadata_backend("sqlite", path=tmp_path / "i.sqlite", table="t1") as backend:
        assert backend.table.name == "t1"
    with get_metadata_backend("json", path=tmp_path / "i.json") as backend:
        assert backend.path == tmp_path / "i.json"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"known: .*sqlite"):
        get_metadata_backend("sqllite")


def test_the_package_imports_sqlalchemy_only_for_the_sql_backends():
    import json
    import subprocess
    import sys

    probe = (
        "import sys, json, cacheness.storage as m; "
        "before = 'sqlalchemy' in sys.modules; m.SqliteMetadataBackend; "
        "print(json.dumps([before, 'sqlalchemy' in sys.modules, 'psycopg' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, True, False]
