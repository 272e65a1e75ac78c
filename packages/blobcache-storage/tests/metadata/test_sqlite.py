"""The SQLite backend: conformance, state machine, schema, journal and locking details."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings

from cacheness.storage import Entry, SqliteMetadataBackend
from cacheness.storage._metadata import _fs
from cacheness.storage.errors import ConfigError, MetadataError, NetworkFilesystemWarning
from cacheness.storage.testing.metadata import (
    MetadataBackendConformance,
    metadata_state_machine,
)


class TestSqliteConformance(MetadataBackendConformance):
    @pytest.fixture
    def backend(self, tmp_path):
        with SqliteMetadataBackend(tmp_path / "index.sqlite") as index:
            yield index

    @pytest.fixture
    def ground_truth(self, tmp_path, sqlite_reader):
        return lambda: sqlite_reader(tmp_path / "index.sqlite")

    @pytest.fixture
    def reopen(self, tmp_path):
        return lambda: SqliteMetadataBackend(tmp_path / "index.sqlite")


def test_state_machine(tmp_path):
    counter = iter(range(10**6))

    def factory():
        return SqliteMetadataBackend(tmp_path / "sm.sqlite", table=f"sm_{next(counter)}")

    machine = metadata_state_machine(factory)
    machine.TestCase.settings = settings(max_examples=40, stateful_step_count=25)
    machine.TestCase("runTest").runTest()


def pragma(path, name):
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_schema_indexes_version_and_wal(tmp_path):
    path = tmp_path / "index.sqlite"
    SqliteMetadataBackend(path).close()
    assert pragma(path, "journal_mode") == "wal"
    with closing(sqlite3.connect(path)) as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list('cacheness_entries')")}
        version = conn.execute(
            "SELECT value FROM cacheness_entries_info WHERE name = 'schema_version'"
        ).fetchone()
        columns = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(cacheness_entries)")}
    assert {
        "ix_cacheness_entries_created_at",
        "ix_cacheness_entries_accessed_at",
        "ix_cacheness_entries_handler",
    } <= indexes
    assert version == ("1",)  # SQLite's metadata column is exact text already
    assert "metadata_text" not in columns
    assert columns["created_at"] == "BIGINT"
    assert columns["inline"] == "BLOB"


def test_timestamps_are_integer_microseconds(tmp_path):
    path = tmp_path / "index.sqlite"
    entry = Entry.new("k", now=datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
    with SqliteMetadataBackend(path) as index:
        index.put(entry)
        assert list(index.query({"created_at": {"$gte": entry.created_at}})) == [entry]
        assert list(index.query({"created_at": {"$gt": entry.created_at}})) == []
    with closing(sqlite3.connect(path)) as conn:
        (created,) = conn.execute("SELECT created_at FROM cacheness_entries").fetchone()
    assert created == (entry.created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "index.sqlite"
    SqliteMetadataBackend(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE cacheness_entries_info SET value = '99'")
        conn.commit()
    with pytest.raises(MetadataError, match="newer blobcache-storage"):
        SqliteMetadataBackend(path)


def test_tables_are_named_so_indexes_can_share_a_file(tmp_path):
    path = tmp_path / "index.sqlite"
    one = SqliteMetadataBackend(path, table="one")
    two = SqliteMetadataBackend(path, table="two")
    one.put(Entry.new("k", size=1))
    two.put(Entry.new("k", size=2))
    assert one.get("k").size == 1
    assert two.get("k").size == 2
    one.close()
    two.close()


@pytest.mark.parametrize("table", ["", "1abc", "bad-name", "x; DROP TABLE y", "a" * 41])
def test_table_names_are_validated(tmp_path, table):
    with pytest.raises(ConfigError, match="identifier"):
        SqliteMetadataBackend(tmp_path / "i.sqlite", table=table)


@pytest.mark.parametrize("path", [":memory:", "", "file:x?mode=memory"])
def test_memory_paths_are_refused(path):
    with pytest.raises(ConfigError, match="memory backend"):
        SqliteMetadataBackend(path)


def test_not_a_database_is_refused_clearly(tmp_path):
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MetadataError, match="not a SQLite database"):
        SqliteMetadataBackend(path)


def test_many_handles_opening_a_fresh_file_at_once(tmp_path, concurrently):
    path = tmp_path / "fresh.sqlite"
    concurrently(6, lambda: SqliteMetadataBackend(path))
    with SqliteMetadataBackend(path) as backend:
        assert backend.count() == 6


def test_a_held_write_lock_makes_writers_wait_then_fail_clearly(tmp_path):
    path = tmp_path / "index.sqlite"
    backend = SqliteMetadataBackend(path, busy_timeout=0.05, retries=1)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(MetadataError, match="busy_timeout"):
            backend.put(Entry.new("k"))
        assert backend.get("k") is None  # readers are not blocked under WAL
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    backend.put(Entry.new("k"))
    assert backend.exists("k")


def test_connections_are_per_thread_and_closed(tmp_path):
    backend = SqliteMetadataBackend(tmp_path / "index.sqlite")
    backend.put(Entry.new("k"))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(backend.get("k")))
    thread.start()
    thread.join()
    assert seen[0] is not None
    backend.close()
    with pytest.raises(MetadataError, match="closed"):
        backend.count()


NFS_TABLE = """\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
95 22 0:52 / {mount} rw,relatime - nfs4 fileserver:/export rw,vers=4.2
"""


def test_network_filesystem_warns_once_and_uses_rollback_journal(tmp_path, monkeypatch):
    fake = tmp_path / "mountinfo"
    fake.write_text(NFS_TABLE.format(mount=str(tmp_path).replace(" ", "\\040")))
    monkeypatch.setattr(_fs, "MOUNTINFO", fake)
    monkeypatch.setattr(_fs, "_warned", set())
    with pytest.warns(NetworkFilesystemWarning, match="postgresql") as record:
        first = SqliteMetadataBackend(tmp_path / "a.sqlite")
    second = SqliteMetadataBackend(tmp_path / "b.sqlite")  # same mount: no second warning
    assert len(record) == 1
    assert first.journal_mode == second.journal_mode == "delete"
    first.put(Entry.new("k"))
    assert first.get("k") is not None
    assert pragma(tmp_path / "a.sqlite", "journal_mode") == "delete"
    first.close()
    second.close()


def test_local_filesystem_does_not_warn(tmp_path, monkeypatch):
    fake = tmp_path / "mountinfo"
    fake.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    monkeypatch.setattr(_fs, "MOUNTINFO", fake)
    with SqliteMetadataBackend(tmp_path / "a.sqlite") as backend:  # filterwarnings=error
        assert backend.journal_mode == "wal"


def test_delete_where_is_one_statement(tmp_path):
    backend = SqliteMetadataBackend(tmp_path / "index.sqlite")
    backend.put_many([Entry.new(f"k{i}", size=i) for i in range(2000)])
    statements = []
    conn = backend._connection()
    conn.set_trace_callback(statements.append)
    removed = backend.delete_where({"size": {"$lt": 1000}})
    conn.set_trace_callback(None)
    assert len(removed) == 1000
    assert [s.split()[0] for s in statements] == ["BEGIN", "DELETE", "COMMIT"]
    statements.clear()
    conn.set_trace_callback(statements.append)
    assert len(backend.get_many([f"k{i}" for i in range(2000)])) == 1000
    conn.set_trace_callback(None)
    assert len(statements) == 4  # 2000 keys in chunks of 500


def test_a_forked_child_opens_its_own_connection(tmp_path, in_fork):
    backend = SqliteMetadataBackend(tmp_path / "index.sqlite")
    backend.put(Entry.new("parent"))

    def child() -> bool:  # must not reuse the parent's connection
        backend.put(Entry.new("child"))
        return backend.exists("parent")

    assert in_fork(child) == 0
    assert sorted(e.key for e in backend.query()) == ["child", "parent"]
    backend.put(Entry.new("parent-again"))
    backend.close()


@pytest.mark.parametrize("read", ["get", "get_payload"])
def test_reads_in_a_locked_database_retry_then_fail_clearly(tmp_path, read):
    # Reads run on the thread's open connection and fall back to the retrying loop.
    path = tmp_path / "index.sqlite"
    backend = SqliteMetadataBackend(path, journal_mode="delete", busy_timeout=0.05, retries=1)
    backend.put(Entry.new("k", size=3))
    assert getattr(backend, read)("k") is not None  # the connection is open: the quick path
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # a rollback journal: readers are locked out
    try:
        with pytest.raises(MetadataError, match="busy_timeout"):
            getattr(backend, read)("k")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert getattr(backend, read)("k").size == 3
    backend.close()
    with pytest.raises(MetadataError, match="closed"):
        getattr(backend, read)("k")


def test_get_returns_distinct_and_shared_timestamps(tmp_path):
    t0 = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    entries = [
        Entry.new("same", now=t0),
        Entry.new("updated", now=t0).replace(updated_at=t0 + timedelta(seconds=1)),
        Entry.new("accessed", now=t0).replace(accessed_at=t0 + timedelta(microseconds=1)),
        Entry.new("all", now=t0).replace(
            updated_at=t0 + timedelta(days=1), accessed_at=t0 + timedelta(days=2)
        ),
    ]
    with SqliteMetadataBackend(tmp_path / "index.sqlite") as index:
        index.put_many(entries)
        for entry in entries:
            assert index.get(entry.key) == entry


def test_a_forked_child_reads_on_its_own_connection(tmp_path, in_fork):
    backend = SqliteMetadataBackend(tmp_path / "index.sqlite")
    backend.put(Entry.new("parent"))
    assert backend.get("parent") is not None  # the parent's connection is open

    def child() -> bool:
        return backend.get("parent") is not None and backend.get("nope") is None

    assert in_fork(child) == 0
    assert backend.get("parent") is not None
    backend.close()


LEFT_OPEN = """
import logging, sys, threading
from cacheness.storage import BlobStore
from cacheness.storage._metadata import sqlite  # keeps the backend module alive to the end

store = BlobStore(sys.argv[1])
store.put(1, key="k")
store.get("k")
worker = threading.Thread(target=store.get, args=("k",))  # a second thread's connection
worker.start()
worker.join()


class Attached:  # something of the application's, with a finalizer, hung on the store
    def __del__(self):
        pass


store.attached = Attached()
# Held by a module imported before the sqlite backend's: at exit the interpreter clears
# the backend module's globals (os -> None) before this one's, and the store goes last.
logging.left_open = store
del store
"""


def test_stores_left_open_at_exit_print_nothing(tmp_path):
    import subprocess
    import sys

    child = subprocess.run(
        [sys.executable, "-c", LEFT_OPEN, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stderr == ""
    with SqliteMetadataBackend(tmp_path / "store" / "index.sqlite") as index:
        assert index.exists("k")


def test_precompiled_statements_are_what_sqlalchemy_compiles():
    # The default table's statements ship compiled, so that a process opening an index
    # does not import SQLAlchemy; they must say what the Core statements say. When this
    # fails after a schema or statement change (or a SQLAlchemy release that writes SQL
    # differently), run tests/metadata/make_sqlite_statements.py.
    from cacheness.storage._metadata._sqlite_statements import STATEMENTS

    from .make_sqlite_statements import compiled

    assert compiled() == STATEMENTS


def test_another_table_compiles_its_statements(tmp_path):
    index = SqliteMetadataBackend(tmp_path / "index.sqlite", table="runs")
    index.put(Entry.new("k", size=1))
    assert index.get_many(["k", "x"])["k"].size == 1
    assert index._get.sql.startswith("SELECT runs.")
    index.close()


def test_a_listing_never_reads_the_payload_column(tmp_path):
    """query_without_payload selects NULL for ``inline``: a row's payload (up to 64 KiB,
    in overflow pages) is never fetched, and the other fields are the stored ones."""
    index = SqliteMetadataBackend(tmp_path / "index.sqlite")
    payload = bytes(range(256)) * 200
    index.put(Entry.new("big", size=len(payload), inline=payload, metadata={"team": "a"}))
    (listed,) = index.query_without_payload()
    assert listed.inline is None
    assert listed.blob_ref == ""
    assert listed.replace(inline=payload) == index.get("big")
    index.close()
