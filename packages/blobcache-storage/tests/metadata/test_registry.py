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


SQL_PROBE = """
import json, sys
from cacheness.storage import Entry, SqliteMetadataBackend
def loaded():
    return ["sqlalchemy" in sys.modules, "sqlalchemy.dialects.postgresql" in sys.modules]
steps = {}
index = SqliteMetadataBackend(sys.argv[1])
steps["open"] = loaded()
index.put(Entry.new("k", size=1))
index.update_many({"k": {"access_count": 2}})
index.get("k"), index.get_payload("k", with_metadata=True), index.get_many(["k", "x"])
index.delete_many(["k"])
steps["put, get, delete"] = loaded()
index.count({"metadata.a": 1})
steps["a filter"] = loaded()
print(json.dumps(steps))
"""


def test_sqlite_loads_sqlalchemy_only_for_ddl_and_filters_never_the_postgresql_dialect(tmp_path):
    import json
    import subprocess
    import sys

    def probe() -> dict[str, list[bool]]:
        command = [sys.executable, "-c", SQL_PROBE, str(tmp_path / "index.sqlite")]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    creating = probe()  # a new index: its tables are created with SQLAlchemy's DDL
    assert creating["open"] == [True, False]
    assert probe() == {  # an existing index
        "open": [False, False],
        "put, get, delete": [False, False],
        "a filter": [True, False],
    }
