"""SQL ``put`` inserts first and reads the old row only on a conflict: races around that.

A put of a new key is one ``INSERT ... ON CONFLICT DO NOTHING``; only when the key exists
does it lock the old row (``SELECT ... FOR UPDATE``) and update it. Another transaction
may insert or delete the key in between: the put must still end with its own row and
report what it replaced. These races are produced for real on PostgreSQL, with a second
session holding its transaction open until the put is seen waiting on its lock.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import sqlalchemy as sa

from cacheness.storage import Entry, PostgresMetadataBackend, SqliteMetadataBackend
from cacheness.storage.errors import EntryExistsError


def conninfo(url: str) -> str:
    return (
        sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def rows(url: str) -> dict[str, int]:
    """``{key: size}`` of the table, read with a plain connection."""
    with psycopg.connect(conninfo(url)) as conn:
        return dict(conn.execute("SELECT key, size FROM cacheness_entries").fetchall())


def wait_until_blocked(url: str, other_pid: int, timeout: float = 10.0) -> None:
    """Return once some session is waiting for a lock that ``other_pid`` holds."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo(url), autocommit=True) as watcher:
        while time.monotonic() < deadline:
            blocked = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (other_pid,),
            ).fetchone()[0]
            if blocked:
                return
            time.sleep(0.01)
    raise AssertionError("the put never waited for the other transaction")


def put_in_thread(index: PostgresMetadataBackend, entry: Entry) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["replaced"] = index.put(entry)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_put_over_a_row_deleted_meanwhile_inserts_it(fresh_postgres_url):
    with PostgresMetadataBackend(fresh_postgres_url) as index:
        index.put(Entry.new("k", size=1))
        with psycopg.connect(conninfo(fresh_postgres_url)) as other:
            # The other session locks the row: the put's insert sees the key taken and
            # its SELECT ... FOR UPDATE waits; then the row is deleted under it.
            other.execute("SELECT 1 FROM cacheness_entries WHERE key = 'k' FOR UPDATE")
            thread, outcome = put_in_thread(index, Entry.new("k", size=2))
            wait_until_blocked(fresh_postgres_url, other.info.backend_pid)
            other.execute("DELETE FROM cacheness_entries WHERE key = 'k'")
            other.commit()
            thread.join(timeout=30)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome
        assert outcome["replaced"] is None  # what was there is gone: nothing was replaced
        assert rows(fresh_postgres_url) == {"k": 2}
        assert index.get("k").size == 2


def test_put_over_a_row_inserted_meanwhile_replaces_it(fresh_postgres_url):
    with PostgresMetadataBackend(fresh_postgres_url) as index:
        index.put(Entry.new("template", size=7, metadata={"by": "other"}))
        with psycopg.connect(conninfo(fresh_postgres_url)) as other:
            # The other session inserts "k" and keeps its transaction open: the put's
            # insert waits to learn whether that row commits.
            other.execute(
                "CREATE TEMP TABLE pending AS "
                "SELECT * FROM cacheness_entries WHERE key = 'template'"
            )
            other.execute("UPDATE pending SET key = 'k'")
            other.execute("INSERT INTO cacheness_entries SELECT * FROM pending")
            thread, outcome = put_in_thread(index, Entry.new("k", size=2))
            wait_until_blocked(fresh_postgres_url, other.info.backend_pid)
            other.commit()
            thread.join(timeout=30)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome
        replaced = outcome["replaced"]
        assert (replaced.key, replaced.size, replaced.metadata) == ("k", 7, {"by": "other"})
        assert rows(fresh_postgres_url) == {"template": 7, "k": 2}


@pytest.mark.parametrize("overwrite", [True, False])
def test_sqlite_put_of_an_existing_key(tmp_path, sqlite_reader, overwrite):
    path = tmp_path / "index.sqlite"
    with SqliteMetadataBackend(path) as index:
        assert index.put(Entry.new("k", size=1, metadata={"v": 1})) is None
        if overwrite:
            replaced = index.put(Entry.new("k", size=2, metadata={"v": 2}))
            assert (replaced.size, replaced.metadata) == (1, {"v": 1})
        else:
            with pytest.raises(EntryExistsError, match="overwrite"):
                index.put(Entry.new("k", size=2), overwrite=False)
    stored = sqlite_reader(path)
    assert list(stored) == ["k"]
    assert stored["k"].size == (2 if overwrite else 1)
