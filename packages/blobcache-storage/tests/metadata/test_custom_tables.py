"""Custom metadata tables at the storage level: ``BlobStore`` and the SQL backends.

The cache-level behaviour (cascade on every removal path, atomicity, races, drift) is in
``packages/cacheness/tests/test_custom_metadata.py``; here: the storage API itself, a
PostgreSQL index in a schema of its own, tables of indexes sharing a database, and the
backends without SQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Column, Float, String

from cacheness.storage import (
    BlobStore,
    ConfigError,
    CustomMetadataBase,
    Entry,
    JsonMetadataBackend,
    MemoryMetadataBackend,
    PostgresMetadataBackend,
    SqliteMetadataBackend,
    custom_metadata_model,
)


@custom_metadata_model("s_runs")
class Run(CustomMetadataBase):
    __tablename__ = "custom_s_runs"
    name = Column(String(40), nullable=False, index=True)
    score = Column(Float)


def test_blob_store_api_on_sqlite(tmp_path: Path) -> None:
    with BlobStore(tmp_path / "store") as store:
        store.put(b"a" * 10, key="a", custom_metadata=Run(name="a", score=0.9))
        store.put(b"b" * 10, key="b", custom_metadata=[Run(name="b1", score=0.1), Run(name="b2")])
        assert [r.name for r in store.query_custom(Run, Run.score > 0.5)] == ["a"]
        assert [r.name for r in store.get_custom_metadata(Run, "b")] == ["b1", "b2"]
        assert [e.key for e in store.query_custom_entries("s_runs", Run.name.like("b%"))] == ["b"]
        with store.query_custom_session(Run) as query:
            assert query.filter(Run.score.is_(None)).one().name == "b2"
        store.put_batch({"a": b"new"})  # a batch replacing a key replaces its rows
        assert store.get_custom_metadata(Run, "a") == []
        store.delete_by_prefix("b")
        path = store.metadata.path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM custom_s_runs").fetchone() == (0,)
        assert conn.execute("PRAGMA foreign_key_list(custom_s_runs)").fetchone()[6] == "CASCADE"


def test_foreign_keys_are_enforced_on_every_connection(tmp_path: Path) -> None:
    with SqliteMetadataBackend(tmp_path / "index.sqlite") as index:
        index.put_custom(Entry.new("k"), [Run(name="x")])
        with index.engine.connect() as conn:  # the engine custom sessions use
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(sa.exc.IntegrityError):
                conn.exec_driver_sql(
                    "INSERT INTO custom_s_runs (cache_key, name) VALUES ('missing', 'y')"
                )
        index.delete("k")
        assert index.query_custom(Run) == []


@pytest.mark.parametrize("backend", [MemoryMetadataBackend, JsonMetadataBackend])
def test_backends_without_sql_refuse(tmp_path: Path, backend: type) -> None:
    index = backend() if backend is MemoryMetadataBackend else backend(tmp_path / "i.json")
    with BlobStore(metadata_backend=index, blob_backend="memory") as store:
        with pytest.raises(ConfigError, match=f"the {index.name} metadata backend cannot"):
            store.put(1, key="k", custom_metadata=Run(name="x"))
        assert not store.exists("k")
        with pytest.raises(ConfigError, match="'sqlite' or 'postgresql'"):
            store.migrate_custom_metadata_tables(Run)


def test_postgresql_schema_and_two_indexes_in_one_database(fresh_postgres_url: str) -> None:
    url = fresh_postgres_url
    with (
        PostgresMetadataBackend(url, schema="team_a") as first,
        PostgresMetadataBackend(url, table="other_entries") as second,
    ):
        first.put_custom(Entry.new("k"), [Run(name="in a", score=1.0)])
        second.put_custom(Entry.new("k"), [Run(name="in default", score=2.0)])
        assert [r.name for r in first.query_custom(Run)] == ["in a"]
        with first.custom_session(Run) as session:
            assert session.query(Run).one().score == 1.0
        assert [r.name for r in second.query_custom(Run)] == ["in default"]
        assert first.custom_keys(Run, Run.score > 0) == ["k"]
        first.delete("k")
        assert first.query_custom(Run) == []
        assert [r.name for r in second.query_custom(Run)] == ["in default"]
        engine = sa.create_engine(sa.engine.make_url(url).set(drivername="postgresql+psycopg"))
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM team_a.custom_s_runs").scalar()
        engine.dispose()
        assert rows == 0
        assert first.engine.pool.checkedout() == 0
