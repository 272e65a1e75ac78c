"""``sqlite``: the metadata index in a SQLite file, for the processes of one host.

WAL journal, busy timeout, ``BEGIN IMMEDIATE`` for writes, one connection per thread
(re-opened after ``fork``), bounded retries on "database is locked", a space reserve for
deletions on a full disk. On a network filesystem it warns once and falls back to a
rollback journal; a team should use PostgreSQL instead. The shared schema, statements
and transaction loop are in ``sql.py``.

Example:
    >>> import tempfile
    >>> from cacheness.storage import Entry, SqliteMetadataBackend
    >>> with SqliteMetadataBackend(tempfile.mkdtemp() + "/index.sqlite") as index:
    ...     _ = index.put(Entry.new("runs/1", size=10))
    ...     index.count(), index.schema_version
    (1, 1)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeVar, cast

from cacheness.storage._entry import Entry, validate_key
from cacheness.storage._filters import Filter
from cacheness.storage._locks import FileLocks
from cacheness.storage._metadata import _walindex
from cacheness.storage._metadata._entries import unique_keys
from cacheness.storage._metadata._fs import (
    SpaceReserve,
    network_filesystem,
    prepare_file,
    warn_network_filesystem,
)
from cacheness.storage._metadata._migrations import FormatMigrations
from cacheness.storage._metadata._sqlrows import (
    SCHEMA_VERSIONS,
    Statement,
    row_to_entry,
    row_to_payload,
)
from cacheness.storage._metadata.base import PayloadInfo
from cacheness.storage._metadata.sql import (
    DEFAULT_TABLE,
    Cursor,
    Run,
    SqlMetadataBackend,
    SqlStep,
    Verdict,
)
from cacheness.storage._pairing import Scope
from cacheness.storage.errors import ConfigError, MetadataError, StorageFullError

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect, Engine

    from cacheness.storage._metadata._sqlcustom import ChildTable, TableShape

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_SQLITE: Final = (3, 35, 0)
"""Oldest SQLite library the sqlite backend works with (``DELETE ... RETURNING``)."""

_MIGRATIONS: Final[FormatMigrations[SqlStep]] = FormatMigrations(
    "SQLite metadata table schema", SCHEMA_VERSIONS["sqlite"]
)
"""The steps that upgrade an older SQLite table (none so far: layout 1 is the first)."""


_DATA_VERSION: Final = "PRAGMA data_version"


class _Process:
    """This process's id, kept current across ``fork`` (``os.getpid()`` is a system call,
    too slow for ``change_token``)."""

    pid = os.getpid()


def _forked() -> None:
    _Process.pid = os.getpid()


os.register_at_fork(after_in_child=_forked)

_inherited_connections: list[sqlite3.Connection] = []
"""Connections inherited through ``fork``: never used nor closed by the child."""


class _ThreadConnection:
    """One thread's SQLite connection; closed when the thread (and its locals) go away.

    It may be finalized while the interpreter exits, after this module's globals were
    set to None: everything ``close`` needs is bound on the class.
    """

    __slots__ = ("__weakref__", "conn", "header", "pid", "seen")

    _getpid = staticmethod(os.getpid)
    _inherited: ClassVar[list[sqlite3.Connection]] = _inherited_connections
    _sqlite_error: ClassVar[type[Exception]] = sqlite3.Error
    _log: ClassVar[logging.Logger] = log

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.pid = os.getpid()
        self.seen: int | None = None  # PRAGMA data_version when change_token last looked
        self.header: bytes | None = None  # the WAL-index header read just before that

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if self.pid != self._getpid():
            self._inherited.append(conn)  # the parent's: closing would disturb it
            return
        try:
            conn.close()
        except self._sqlite_error:
            self._log.warning("closing a SQLite connection failed", exc_info=True)

    def __del__(self) -> None:
        self.close()


def _release_wal(connections: weakref.WeakSet[_ThreadConnection], wal: _walindex.WalIndex) -> None:
    """Close an index's connections (again: closing twice is nothing), then give back its
    WAL-index view; what ``close()`` ends with, and what an index garbage-collected
    unclosed gets."""
    for connection in list(connections):
        connection.close()
    _walindex.detach(wal)


class _IndexFullError(StorageFullError, MetadataError):
    """The disk under a SQLite index is full (a ``StorageFullError`` and a ``MetadataError``)."""


def _sqlite_full(exc: sqlite3.Error) -> bool:
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_FULL
    return "database or disk is full" in str(exc).lower()


def _sqlite_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class SqliteMetadataBackend(SqlMetadataBackend):
    """The metadata index in a SQLite file, safe for the processes of one host.

    Args:
        path: the database file (parent directories are created).
        table: name of the entries table (several indexes can share one file).
        busy_timeout: seconds a statement waits for another process's write lock.
        journal_mode: ``"auto"`` (WAL, or a rollback journal on a network
            filesystem), ``"wal"`` or ``"delete"``.
        synchronous: SQLite's ``synchronous`` pragma; default ``"NORMAL"`` with WAL
            (durable across application crashes; a power cut may lose the last
            commits, never corrupt) and ``"FULL"`` with a rollback journal.
        retries: extra attempts of a transaction that still finds the database locked.
        cache_mb: page cache of each connection, in MiB (filled only as pages are read).
        reserve_mb: space kept in ``<path>.reserve`` for deletions on a full disk
            (0 disables). A deletion that finds the disk full releases it, checkpoints
            the WAL (whose space is then reused, never truncated) and retries; a large
            deletion that still does not fit commits in chunks. The reserve is
            allocated again at the next write that finds room. About one WAL
            auto-checkpoint (1,000 pages) of room covers what a checkpoint may need.

    Raises:
        ConfigError: bad path or options.
        MetadataError: the file is not a database, or was written by a newer release.

    Example:
        >>> import tempfile
        >>> index = SqliteMetadataBackend(tempfile.mkdtemp() + "/index.sqlite")
        >>> index.journal_mode
        'wal'
        >>> index.close()
    """

    name: ClassVar[str] = "sqlite"
    scope: ClassVar[Scope] = "host"
    dialect_name: ClassVar[str] = "sqlite"
    migrations: ClassVar[FormatMigrations[SqlStep]] = _MIGRATIONS
    retry_backoff = 0.05
    retry_log_level = logging.DEBUG  # busy under contention is normal

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        busy_timeout: float = 30.0,
        journal_mode: Literal["auto", "wal", "delete"] = "auto",
        synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] | None = None,
        retries: int = 5,
        cache_mb: int = 64,
        reserve_mb: float = 4.0,
    ) -> None:
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise ConfigError(
                f"the sqlite metadata backend needs a file path, got {str(path)!r}; "
                "use the memory backend for an index that lives in memory"
            )
        if journal_mode not in ("auto", "wal", "delete"):
            raise ConfigError(
                f"journal_mode must be 'auto', 'wal' or 'delete', got {journal_mode!r}"
            )
        if synchronous is not None and synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}"
            )
        if not busy_timeout > 0:
            raise ConfigError(f"busy_timeout must be > 0 seconds, got {busy_timeout!r}")
        if isinstance(reserve_mb, bool) or not (
            isinstance(reserve_mb, int | float) and 0 <= reserve_mb <= 1024
        ):
            raise ConfigError(f"reserve_mb must be a number of MiB in 0..1024, got {reserve_mb!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ConfigError(
                f"the sqlite metadata backend needs SQLite >= 3.35 (RETURNING), this Python "
                f"links SQLite {sqlite3.sqlite_version}; upgrade Python or use postgresql"
            )
        self.path = prepare_file(path, "sqlite", "index.sqlite")
        self.reserve = SpaceReserve(
            self.path.with_name(self.path.name + ".reserve"), int(reserve_mb * (1 << 20))
        )
        self._busy_timeout = float(busy_timeout)
        self._cache_kib = int(cache_mb) * 1024
        self.retries = int(retries)
        self.journal_mode = self._choose_journal_mode(journal_mode)
        self._synchronous = synchronous or ("NORMAL" if self.journal_mode == "wal" else "FULL")
        self._local = threading.local()
        self._connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._connections_lock = threading.Lock()
        self._changes = 0  # change_token(): moved by our commits and others' (data_version)
        self._changes_lock = threading.Lock()
        self._engine: Engine | None = None
        self._engine_pid = 0
        super().__init__(table=table, schema=None)
        for quick in (self._get, self._get_payload, self._get_payload_state):  # binds (key,)
            assert (quick.positional, quick.sources) == (True, ("key",))
        self._set_journal_mode()
        self._ensure_schema()
        self.reserve.ensure()
        # change_token's cheap check (WAL only): the WAL-index header, shared by this
        # process's indexes on the file; released after this index's connections, by
        # close() or when the index is garbage-collected unclosed
        self._wal_index = _walindex.attach(self.path) if self.journal_mode == "wal" else None
        self._release_wal = (
            None
            if self._wal_index is None
            else weakref.finalize(self, _release_wal, self._connections, self._wal_index)
        )

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<SqliteMetadataBackend {str(self.path)!r} table={self.table_name!r}{state}>"

    # ------------------------------------------------------------------ connections

    def _choose_journal_mode(self, requested: str) -> Literal["wal", "delete"]:
        network = network_filesystem(self.path.parent)
        if network is None:
            return "delete" if requested == "delete" else "wal"
        if requested == "auto":
            warn_network_filesystem(
                self.path.parent,
                "sqlite wal",
                "SQLite's WAL journal is unsafe there, so the rollback journal is used "
                "(slower, and still unsafe for writers on several machines); share an "
                "index between machines with the postgresql metadata backend",
                stacklevel=3,
            )
            return "delete"
        if requested == "wal":
            warn_network_filesystem(
                self.path.parent,
                "sqlite wal",
                "journal_mode='wal' was requested but WAL needs shared memory that a network "
                "filesystem cannot provide; processes on different machines will corrupt "
                "the index. Use the postgresql metadata backend",
                stacklevel=3,
            )
            return "wal"
        return "delete"

    def _connect(self, *, autocommit: bool = True) -> sqlite3.Connection:
        """A connection with this index's pragmas (foreign keys enforced on every one).

        ``autocommit`` (the index's own connections): transactions are begun by hand;
        otherwise the driver begins them (SQLAlchemy sessions).
        """
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None if autocommit else "DEFERRED",
                check_same_thread=False,
                cached_statements=256,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{self._cache_kib}")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return conn

    def _connection(self) -> sqlite3.Connection:
        held: _ThreadConnection | None = getattr(self._local, "held", None)
        if held is not None and held.conn is not None and held.pid == os.getpid():
            return held.conn
        self._check_open()
        if held is not None:
            held.close()  # after fork: set aside, never reused
        conn = self._connect()
        held = _ThreadConnection(conn)
        self._local.held = held
        with self._connections_lock:
            self._connections.add(held)
        return conn

    def _set_journal_mode(self) -> None:
        def work(cursor: Cursor) -> str:
            current = cursor.raw.execute("PRAGMA journal_mode").fetchone()[0]
            if current.lower() != self.journal_mode:
                pragma = f"PRAGMA journal_mode = {self.journal_mode}"
                current = cursor.raw.execute(pragma).fetchone()[0]
            return str(current).lower()

        mode = self._run(work, write=False)
        if mode != self.journal_mode:
            raise MetadataError(
                f"could not switch {self.path} to journal_mode={self.journal_mode} (it is "
                f"{mode}); another process may hold it open in another mode"
            )

    def _make_dialect(self) -> Dialect:
        from sqlalchemy.dialects import sqlite

        return sqlite.dialect()

    # ------------------------------------------------------------------ custom metadata

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the index file (custom metadata sessions use it).

        Made on first use; its pooled connections enforce foreign keys like the index's
        own. Disposed by :meth:`close`.
        """
        return self._custom_engine()

    def _custom_engine(self) -> Engine:
        self._check_open()
        with self._connections_lock:
            engine = self._engine
            if engine is not None and self._engine_pid != os.getpid():
                engine.dispose(close=False)  # forked: the parent's connections stay its own
            if engine is None or self._engine_pid != os.getpid():
                import sqlalchemy as sa

                engine = sa.create_engine(
                    f"sqlite:///{self.path}",
                    creator=lambda: self._connect(autocommit=False),
                    pool_size=5,
                    max_overflow=10,
                )
                self._engine, self._engine_pid = engine, os.getpid()
            return engine

    def _table_shape(self, cursor: Cursor, name: str, schema: str | None) -> TableShape | None:
        from cacheness.storage._metadata._sqlcustom import TableShape

        quoted = self._dialect.identifier_preparer.quote(name)
        columns = cursor.raw.execute(f"PRAGMA table_info({quoted})").fetchall()
        if not columns:
            return None
        links = cursor.raw.execute(f"PRAGMA foreign_key_list({quoted})").fetchall()
        linked = any(
            (table, source, target, on_delete.upper())
            == (self.table_name, "cache_key", "key", "CASCADE")
            for _, _, table, source, target, _, on_delete, _ in links
        )
        return TableShape({row[1]: not row[3] for row in columns}, linked)

    def _child_tables(self, cursor: Cursor) -> list[ChildTable]:
        from cacheness.storage._metadata._sqlcustom import ChildTable

        quote = self._dialect.identifier_preparer.quote
        names = cursor.raw.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%REFERENCES%' "
            "ORDER BY name"
        ).fetchall()
        children = []
        for (name,) in names:
            links = cursor.raw.execute(f"PRAGMA foreign_key_list({quote(name)})").fetchall()
            link = next((row[3] for row in links if row[2] == self.table_name), None)
            if link is None:
                continue
            columns = cursor.raw.execute(f"PRAGMA table_info({quote(name)})").fetchall()
            copied = tuple(quote(row[1]) for row in columns if not row[5] and row[1] != link)
            children.append(ChildTable(quote(name), quote(link), copied))
        return children

    def _precompiled(self) -> dict[str, Statement] | None:
        """The statements compiled ahead of time for the default table, so that opening an
        index and working by key never imports SQLAlchemy (see ``_sqlite_statements.py``)."""
        if self.table_name != DEFAULT_TABLE:
            return None
        from cacheness.storage._metadata._sqlite_statements import STATEMENTS

        return STATEMENTS

    def _insert_construct(self) -> Any:
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(self.table)

    def _info_exists(self, cursor: Cursor) -> bool:
        row = cursor.raw.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            (f"{self.table_name}_info",),
        ).fetchone()
        return row is not None

    def _error(self, exc: sqlite3.Error) -> MetadataError:
        if _sqlite_full(exc):
            return _IndexFullError(
                f"SQLite index {self.path}: {exc}; the disk is full: delete entries to make "
                "room (deletions work on a full disk) or free space on the filesystem"
            )
        hint = ""
        message = str(exc).lower()
        if "readonly" in message or "unable to open" in message:
            hint = "; check that the directory and the file are writable"
        elif "malformed" in message or "not a database" in message:
            hint = "; the file is damaged or not a SQLite database: restore it or move it away"
        elif _sqlite_busy(exc):
            hint = (
                f"; another process held the write lock for longer than busy_timeout "
                f"({self._busy_timeout:g} s)"
            )
        return MetadataError(f"SQLite index {self.path}: {exc}{hint}")

    # ------------------------------------------------------------------ transactions

    def _describe(self) -> str:
        return f"SQLite index {self.path}"

    def _start(self, run: Run) -> None:
        reserve = self.reserve
        if not run.write or run.frees_space or not reserve.wanted or reserve.ensure():
            return
        if reserve.released:
            raise _IndexFullError(  # a deletion used it: get it back before anything else
                f"SQLite index {self.path}: the disk is full: the "
                f"{reserve.size >> 20} MiB kept beside the index for deletions were "
                "used and there is no room to set them aside again; delete more entries "
                "or free space on the filesystem (nothing was written)"
            )

    def _attempt(self, work: Callable[[Cursor], T], write: bool) -> T:
        conn = self._connection()
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")
            result = work(Cursor(conn.cursor()))
            if write:
                conn.execute("COMMIT")
                with self._changes_lock:
                    self._changes += 1
            return result
        except BaseException:
            self._rollback(conn)
            raise

    def _judge(self, exc: Exception, run: Run, can_retry: bool) -> Verdict | BaseException | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        if run.frees_space and not run.used_reserve and _sqlite_full(exc):
            run.used_reserve = True
            released = self.reserve.release()
            log.warning(
                "SQLite index %s: the disk is full; %s and retrying the deletion",
                self.path,
                "releasing the space reserved beside it" if released else "checkpointing its WAL",
            )
            self._checkpoint(self._connection())
            return Verdict.AGAIN
        if can_retry and _sqlite_busy(exc):
            return Verdict.RETRY
        return self._error(exc)

    def get(self, key: str) -> Entry | None:
        """Return the entry stored under ``key``, or None.

        One statement on this thread's open connection; only when that fails (the
        database busy, the connection not open yet) does the read go through the
        retrying transaction loop. A key lookup is the hottest path of a store.
        """
        found, row = self._quick_row(self._get, key)
        if not found:
            return super().get(key)
        return None if row is None else row_to_entry(row)

    def get_payload(self, key: str, *, with_metadata: bool = False) -> PayloadInfo | None:
        """Return where ``key``'s data is and how to decode it, or None (as :meth:`get`)."""
        statement = self._get_payload_state if with_metadata else self._get_payload
        found, row = self._quick_row(statement, key)
        if not found:
            return super().get_payload(key, with_metadata=with_metadata)
        return None if row is None else row_to_payload(row)

    def _quick_row(self, statement: Statement, key: str) -> tuple[bool, Any]:
        """Run a one-key SELECT on this thread's open connection: ``(ran, row or None)``.

        ``ran`` is False when there is no open connection yet (another thread, a forked
        child) or the statement failed: the caller then takes the retrying path.
        """
        held: _ThreadConnection | None = getattr(self._local, "held", None)
        if held is None or held.conn is None or held.pid != os.getpid():
            return False, None
        validate_key(key)
        try:
            return True, held.conn.execute(statement.sql, (key,)).fetchone()
        except sqlite3.Error as exc:
            log.debug("SQLite index %s: quick read failed (%s); retrying", self.path, exc)
            return False, None

    def change_token(self) -> int | None:
        """Return a number that moves whenever anything was committed to the index.

        ``PRAGMA data_version`` on this thread's connection changes when another
        connection (another thread's, another process's) committed since it last looked;
        this backend's own commits move the number themselves.

        In WAL mode the PRAGMA is skipped while the WAL-index header in shared memory
        holds the same bytes as just before this connection last ran it: every commit
        rewrites that header, so nothing was committed since (see ``_walindex``; tens of
        nanoseconds). Otherwise one PRAGMA on the open connection: about two
        microseconds, no I/O beyond the WAL index in shared memory.
        """
        held: _ThreadConnection | None = getattr(self._local, "held", None)
        wal = self._wal_index
        header = None if wal is None else wal.header()
        if (
            header is not None
            and held is not None
            and held.pid == _Process.pid
            and header == held.header
        ):
            return self._changes  # nothing committed since the PRAGMA below last ran here
        if held is None or held.conn is None or held.pid != os.getpid():
            self._connection()  # opened (or reopened after a fork)
            held = cast(_ThreadConnection, self._local.held)
        # the header is read before the PRAGMA: a commit after that read moves it again
        try:
            version = cast(sqlite3.Connection, held.conn).execute(_DATA_VERSION).fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        if version != held.seen:
            with self._changes_lock:
                held.seen = version
                self._changes += 1
        held.header = header
        if header is None and wal is not None and wal.identity[0] == held.pid:
            wal.map_header()  # this connection has read in WAL mode: the -shm file is there
        return self._changes

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database so the next write starts the WAL over.

        PASSIVE: never waits for readers. The WAL file keeps its size (no truncation),
        so the next transactions reuse its space instead of asking the disk for more.
        """
        if self.journal_mode != "wal":
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.debug("SQLite index %s: checkpoint failed (%s)", self.path, exc)

    def delete_many(self, keys: Iterable[str]) -> list[Entry]:
        """Remove the keys in one transaction (see ``SqlMetadataBackend.delete_many``).

        On a full disk, a deletion too large for the room there is commits in chunks,
        each followed by a WAL checkpoint so the next one reuses the WAL's space.
        """
        doomed = unique_keys(keys)
        try:
            return super().delete_many(doomed)
        except StorageFullError:
            return self._delete_in_chunks(doomed, None)

    def delete_where(self, filter: Filter) -> list[Entry]:
        """Remove every matching entry (one statement; in chunks on a full disk)."""
        try:
            return super().delete_where(filter)
        except StorageFullError:
            keys = [entry.key for entry in self.query(filter)]
            return self._delete_in_chunks(keys, filter)

    def _delete_in_chunks(self, keys: Sequence[str], filter: Filter | None) -> list[Entry]:
        """Delete ``keys`` (still matching ``filter``) in ever smaller transactions."""
        removed: list[Entry] = []
        size, start = 256, 0
        log.warning(
            "SQLite index %s: the disk is full; deleting %d entries in chunks", self.path, len(keys)
        )
        while start < len(keys):
            chunk = list(keys[start : start + size])
            selector: Filter = {"key": {"$in": chunk}}
            if filter is not None:
                selector = {"$and": [selector, filter]}
            try:
                removed += super().delete_where(selector)
            except StorageFullError:
                if size == 1:
                    if removed:  # committed: their blobs are orphans now, for repair()
                        log.warning(
                            "SQLite index %s: %d entries were deleted before the disk ran "
                            "out of room entirely",
                            self.path,
                            len(removed),
                        )
                    raise
                size = max(size // 4, 1)
                continue
            self._checkpoint(self._connection())
            start += len(chunk)
        return removed

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("ROLLBACK failed on %s", self.path, exc_info=True)

    def close(self) -> None:
        """Close every thread's connection; later calls raise ``MetadataError``."""
        self._closed = True
        with self._connections_lock:
            held = list(self._connections)
            self._connections = weakref.WeakSet()
        for connection in held:
            connection.close()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose(close=self._engine_pid == os.getpid())
        self._wal_index = None
        if self._release_wal is not None:
            self._release_wal()  # after this index's connections, as it needs

    def _make_locks(self) -> FileLocks:
        # Processes of one host share the index file, so they share lock files beside it.
        return FileLocks(self.path.with_name(self.path.name + ".locks"))
