"""``BlobStore.change_token`` (what a layer in front of the store checks) and ``decoder``.

The token must move on every commit, whoever made it: this store, another thread's
connection, another store (another process's view) on the same SQLite file; and stay
put while nothing was committed. Backends that cannot tell cheaply say None.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import pytest

from cacheness.storage import BlobStore, IntegrityError, InvalidEntryError, StorageError


def _sqlite(path: Path) -> BlobStore:
    return BlobStore(path=path, metadata_backend="sqlite", blob_backend="filesystem")


def test_sqlite_token_stays_put_without_commits(tmp_path: Path) -> None:
    with _sqlite(tmp_path) as store:
        store.put(1, key="k")
        token = store.change_token()
        store.get("k")
        store.list()
        assert store.change_token() == token


def test_sqlite_token_moves_on_own_commits(tmp_path: Path) -> None:
    with _sqlite(tmp_path) as store:
        for write in (
            lambda: store.put(1, key="k"),
            lambda: store.update_metadata("k", {"a": 1}),
            lambda: store.delete("k"),
        ):
            token = store.change_token()
            write()
            assert store.change_token() != token


def test_sqlite_token_moves_on_another_connections_commit(tmp_path: Path) -> None:
    with _sqlite(tmp_path) as store, _sqlite(tmp_path) as other:
        store.put(1, key="k")
        token = store.change_token()
        other.put(2, key="k")
        assert store.change_token() != token
        token = store.change_token()
        # a commit with no store at all: plain sqlite3 on the index file
        with sqlite3.connect(tmp_path / "index.sqlite") as raw:
            raw.execute("CREATE TABLE IF NOT EXISTS outsider (x)")
        assert store.change_token() != token


def test_sqlite_token_moves_on_another_threads_commit(tmp_path: Path) -> None:
    with _sqlite(tmp_path) as store:
        store.put(1, key="k")
        token = store.change_token()
        worker = threading.Thread(target=lambda: store.put(2, key="k"))
        worker.start()
        worker.join()
        assert store.change_token() != token
        # and the other way round: this thread's commit seen from another thread's token
        seen: list[int | None] = []
        ready, done = threading.Event(), threading.Event()

        def watch() -> None:
            seen.append(store.change_token())
            ready.set()
            done.wait()
            seen.append(store.change_token())

        watcher = threading.Thread(target=watch)
        watcher.start()
        ready.wait()
        store.put(3, key="k")
        done.set()
        watcher.join()
        assert seen[0] != seen[1]


def test_memory_index_counts_its_writes() -> None:
    with BlobStore(metadata_backend="memory", blob_backend="memory") as store:
        token = store.change_token()
        assert store.change_token() == token
        store.put(1, key="k")
        assert store.change_token() != token


def test_json_index_cannot_tell(tmp_path: Path) -> None:
    with BlobStore(path=tmp_path, metadata_backend="json", blob_backend="filesystem") as store:
        assert store.change_token() is None


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = _sqlite(tmp_path)
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.change_token()


def test_decoder_gives_a_fresh_object_per_call() -> None:
    with BlobStore(metadata_backend="memory", blob_backend="memory") as store:
        store.put({"rows": [1, 2]}, key="k")
        decode = store.decoder(store.get_metadata("k"))  # type: ignore[arg-type]
        first = decode()
        first["rows"].append(3)
        assert decode() == {"rows": [1, 2]}
        assert decode() is not decode()


def test_decoder_refuses_blob_entries_and_damaged_bytes() -> None:
    # unsigned, so that the hash check is what refuses the damaged bytes (with signing
    # on, the signature fails first: test_signing.py checks that)
    with BlobStore(metadata_backend="memory", blob_backend="memory", signing=False) as store:
        store.put(random.Random(0).randbytes(100_000), key="big")
        entry = store.get_metadata("big")
        assert entry is not None
        with pytest.raises(InvalidEntryError, match="in a blob"):
            store.decoder(entry)
        store.put([1, 2, 3], key="small")
        small = store.get_metadata("small")
        assert small is not None
        assert small.inline is not None
        damaged = small.replace(inline=small.inline[:-1] + b"\x00")
        with pytest.raises(IntegrityError, match="hash"):
            store.decoder(damaged)


# -------------------------------------------------- the WAL-index header instead of the PRAGMA


def _pragmas(store: BlobStore) -> list[str]:
    """Trace the statements this thread's connection runs from now on."""
    seen: list[str] = []
    store.metadata._connection().set_trace_callback(seen.append)  # type: ignore[attr-defined]
    return seen


def test_sqlite_token_skips_the_pragma_while_nothing_is_committed(tmp_path: Path) -> None:
    with _sqlite(tmp_path) as store, _sqlite(tmp_path) as other:
        store.put(1, key="k")
        store.change_token()
        token = store.change_token()  # the header is mapped and remembered by now
        ran = _pragmas(store)
        assert [store.change_token() for _ in range(3)] == [token] * 3
        assert ran == []  # answered from the WAL-index header alone
        other.put(2, key="k")
        assert store.change_token() != token
        assert ran == ["PRAGMA data_version"]  # the header moved: the PRAGMA says who


def test_sqlite_token_in_rollback_journal_mode_asks_the_pragma(tmp_path: Path) -> None:
    store = BlobStore(
        path=tmp_path,
        metadata_backend="sqlite",
        blob_backend="filesystem",
        metadata_options={"journal_mode": "delete"},
    )
    with (
        store,
        BlobStore(
            path=tmp_path,
            metadata_backend="sqlite",
            blob_backend="filesystem",
            metadata_options={"journal_mode": "delete"},
        ) as other,
    ):
        store.put(1, key="k")
        token = store.change_token()
        ran = _pragmas(store)
        assert store.change_token() == token
        assert ran == ["PRAGMA data_version"]
        other.put(2, key="k")
        assert store.change_token() != token


def test_sqlite_header_view_is_shared_and_closed_by_the_last_index(tmp_path: Path) -> None:
    from cacheness.storage._metadata import _walindex

    first, second = _sqlite(tmp_path), _sqlite(tmp_path)
    for store in (first, second):
        store.put(1, key="k")
        store.change_token()
    index = first.metadata._wal_index  # type: ignore[attr-defined]
    assert index is second.metadata._wal_index  # type: ignore[attr-defined]
    assert index is not None
    assert index.header() is not None
    first.close()
    # the descriptor is still open (closing it would drop the second index's locks)
    assert index.header() is not None
    token = second.change_token()
    with sqlite3.connect(tmp_path / "index.sqlite") as raw:
        raw.execute("CREATE TABLE IF NOT EXISTS outsider (x)")
    raw.close()
    assert second.change_token() != token
    second.close()
    assert index.header() is None
    assert index.identity not in _walindex._indexes


def test_a_view_stays_while_another_connection_of_the_process_has_the_file(
    tmp_path: Path,
) -> None:
    """Closing the view's descriptor would drop every POSIX lock of the process on the
    -shm file, those SQLite took for an outside connection included: while one is open,
    the last index to close leaves the view open, and the next index uses it again."""
    from cacheness.storage._metadata import _walindex

    store = _sqlite(tmp_path)
    store.put(1, key="k")
    store.change_token()
    index = store.metadata._wal_index  # type: ignore[attr-defined]
    assert index is not None
    raw = sqlite3.connect(tmp_path / "index.sqlite", isolation_level=None)
    raw.execute("BEGIN")
    assert raw.execute("SELECT count(*) FROM cacheness_entries").fetchone() == (1,)
    store.close()
    assert index.header() is not None  # kept: the outsider's read transaction goes on
    assert _walindex._indexes[index.identity] is index
    writer = _sqlite(tmp_path)
    assert writer.metadata._wal_index is index  # type: ignore[attr-defined]
    token = writer.change_token()
    writer.put(2, key="k2")  # a write while the outsider reads its snapshot
    assert raw.execute("SELECT count(*) FROM cacheness_entries").fetchone() == (1,)
    raw.execute("COMMIT")
    assert raw.execute("SELECT count(*) FROM cacheness_entries").fetchone() == (2,)
    raw.close()
    assert writer.change_token() != token
    writer.close()
    assert index.header() is None  # now no one else has it open: closed
    assert index.identity not in _walindex._indexes


def test_sqlite_token_after_the_opening_thread_is_gone(tmp_path: Path) -> None:
    """The store opened and first asked in a thread that ends: its connection closes with
    the thread, and with no other connection SQLite would delete the -shm file and make a
    new one for the next; the header watched must stay the one in use."""
    made: list[BlobStore] = []
    tokens: list[int | None] = []

    def open_in_a_thread() -> None:
        store = _sqlite(tmp_path)
        store.put(1, key="k")
        store.change_token()
        tokens.append(store.change_token())
        made.append(store)

    worker = threading.Thread(target=open_in_a_thread)
    worker.start()
    worker.join()
    del worker
    import gc

    gc.collect()  # the thread's connection is closed with its locals
    (store,) = made
    with store:
        token = store.change_token()
        assert store.change_token() == token
        with sqlite3.connect(tmp_path / "index.sqlite") as raw:
            raw.execute("CREATE TABLE IF NOT EXISTS outsider (x)")
        raw.close()
        assert store.change_token() != token


def test_sqlite_header_view_of_an_unclosed_store_goes_with_it(tmp_path: Path) -> None:
    import gc

    from cacheness.storage._metadata import _walindex

    store = _sqlite(tmp_path)
    store.put(1, key="k")
    store.change_token()
    index = store.metadata._wal_index  # type: ignore[attr-defined]
    assert index is not None
    assert index.header() is not None
    del store
    gc.collect()  # garbage-collected without close(): its connections, then the view
    assert index.header() is None
    assert index.identity not in _walindex._indexes
