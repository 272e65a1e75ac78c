"""``sqlite`` and ``postgresql``: the metadata index in a SQL database.

Both backends share one SQLAlchemy Core schema (:attr:`SqlMetadataBackend.table`), one
set of statements and one transaction logic; only dialect details differ (the
``ON CONFLICT`` insert, JSON operators, ``FOR UPDATE``, how a write transaction starts,
which errors are worth a retry).

* :class:`SqliteMetadataBackend` (``sqlite``, the default) keeps the index in one file
  for the processes of one host: WAL journal, busy timeout, ``BEGIN IMMEDIATE`` for
  writes, one connection per thread (re-opened after ``fork``), bounded retries on
  "database is locked". On a network filesystem it warns once and falls back to a
  rollback journal; a team should use PostgreSQL instead.
* :class:`PostgresMetadataBackend` (``postgresql``) serves many hosts: psycopg 3, a
  pooled engine with ``pool_pre_ping``, a configurable table name and schema (several
  caches can share one database), retries with backoff on dropped connections,
  serialization failures and deadlocks, and
  :class:`~cacheness.storage.errors.BackendUnavailableError` when the server is gone.

Every batch method runs as one transaction with set-based statements (``IN`` lists
chunked under the bind-parameter limit), never one round trip per key; ``move`` is
atomic. Timestamps are stored as integer microseconds since the epoch; the layout
version is recorded in ``<table>_info`` and checked on open: a newer one is refused
(:class:`~cacheness.storage.errors.FormatVersionError`), an older one is migrated by
the steps registered in ``_MIGRATIONS`` (see :mod:`cacheness.storage._metadata._migrations`).

Example:
    >>> import tempfile
    >>> from cacheness.storage import Entry
    >>> from cacheness.storage import SqliteMetadataBackend
    >>> with SqliteMetadataBackend(tempfile.mkdtemp() + "/index.sqlite") as index:
    ...     _ = index.put(Entry.new("runs/1", size=10, metadata={"project": "ml"}))
    ...     _ = index.put(Entry.new("runs/2", size=20, metadata={"project": "cv"}))
    ...     [e.key for e in index.query({"metadata.project": "ml"})]
    ...     index.move("runs/2", "archive/2")[0].key
    ['runs/1']
    'archive/2'
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeVar

import sqlalchemy as sa
import xxhash
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from cacheness.storage._entry import Entry, utc_now, validate_key
from cacheness.storage._filters import Filter, parse_filter
from cacheness.storage._locks import FileLocks, poll_until
from cacheness.storage._metadata._entries import (
    checked_values,
    copied_entry,
    exists_error,
    moved_entry,
    normalize_entry,
    not_found_error,
    query_args,
    unique_keys,
    updated_entry,
    validate_changes,
)
from cacheness.storage._metadata._fs import (
    SpaceReserve,
    network_filesystem,
    prepare_file,
    warn_network_filesystem,
)
from cacheness.storage._metadata._migrations import FormatMigrations
from cacheness.storage._metadata._sqlcore import (
    COLUMNS,
    METADATA_TEXT,
    SCHEMA_VERSIONS,
    Statement,
    build_tables,
    compile_statement,
    entry_params,
    row_to_entry,
    row_to_payload,
)
from cacheness.storage._metadata._sqlfilter import after, compile_filter, order_components
from cacheness.storage._metadata.base import (
    PAYLOAD_FIELDS,
    PAYLOAD_STATE_FIELDS,
    MetadataBackend,
    PayloadInfo,
    Scope,
)
from cacheness.storage._optional import import_optional
from cacheness.storage.errors import (
    BackendUnavailableError,
    ConfigError,
    MetadataError,
    StorageFullError,
)

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement


log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TABLE: Final = "cacheness_entries"
"""Default name of the entries table (the version table is ``<name>_info``)."""

MIN_SQLITE: Final = (3, 35, 0)
"""Oldest SQLite library the sqlite backend works with (``DELETE ... RETURNING``)."""

_MAX_CONFLICT_RETRIES: Final = 20
_VERSION_ROW: Final = "schema_version"


class _Conflict(Exception):  # noqa: N818 - internal signal, never escapes
    """Another transaction inserted a key between our read and our insert: start over."""


class _Cursor:
    """A DB-API cursor that runs compiled :class:`Statement` objects."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def _send(self, statement: Statement, params: Any) -> None:
        self.raw.execute(statement.sql, params)

    def execute(self, statement: Statement, values: Mapping[str, Any] | None = None) -> Any:
        self._send(statement, statement.bind(values))
        return self.raw

    def rows(self, statement: Statement, values: Mapping[str, Any] | None = None) -> list[Any]:
        return list(self.execute(statement, values).fetchall())

    def first(self, statement: Statement, values: Mapping[str, Any] | None = None) -> Any:
        return self.execute(statement, values).fetchone()

    def rows_for_keys(self, statement: Statement, keys: Sequence[str]) -> list[Any]:
        self._send(statement, statement.bind_sequence(keys))
        return list(self.raw.fetchall())

    def many(self, statement: Statement, values: Iterable[Mapping[str, Any]]) -> int:
        self.raw.executemany(statement.sql, [statement.bind(item) for item in values])
        return int(self.raw.rowcount)


class _PsycopgCursor(_Cursor):
    """Lets psycopg prepare reusable statements only (see ``Statement.reusable``)."""

    __slots__ = ()

    def _send(self, statement: Statement, params: Any) -> None:
        self.raw.execute(statement.sql, params, prepare=None if statement.reusable else False)


def _backoff(attempt: int, base: float) -> float:
    """Exponential backoff with full jitter, capped at 2 s."""
    return random.uniform(0, min(2.0, base * 2**attempt))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_SqlStep = Callable[["SqlMetadataBackend", _Cursor], None]
_MIGRATIONS: Final[Mapping[str, FormatMigrations[_SqlStep]]] = {
    "sqlite": FormatMigrations("SQLite metadata table schema", SCHEMA_VERSIONS["sqlite"]),
    "postgresql": FormatMigrations(
        "PostgreSQL metadata table schema", SCHEMA_VERSIONS["postgresql"]
    ),
}
"""Per dialect: the steps that upgrade an older table by one schema version, run in the
write transaction that holds the DDL lock. A layout change bumps the dialect's entry of
``SCHEMA_VERSIONS`` and registers its step here (PostgreSQL 1 -> 2:
:func:`_postgresql_exact_metadata_text`)."""


class SqlMetadataBackend(MetadataBackend):
    """The metadata index in a SQL table: what SQLite and PostgreSQL share.

    Subclasses provide the connection, the transaction loop (:meth:`_run`) and the
    dialect details; everything else (statements, batch operations, filters, paging)
    lives here, once.

    Attributes:
        table: the SQLAlchemy ``Table`` of the entries (for advanced Core queries).
        info_table: the ``<table>_info`` table holding the schema version.
    """

    dialect_name: ClassVar[str]
    page_size: ClassVar[int] = 1000
    """Rows fetched per round trip while iterating a query."""
    in_chunk: ClassVar[int] = 500
    """Keys per ``IN (...)`` list (well under every bind-parameter limit)."""

    def __init__(self, *, table: str, schema: str | None, dialect: Dialect) -> None:
        self.table, self.info_table = build_tables(table, schema, self.dialect_name)
        self._dialect = dialect
        self._closed = False
        self._columns = self._row_columns()
        self._statements_by_shape: dict[tuple[Any, ...], Statement] = {}
        self._statements_lock = threading.Lock()
        c = self.table.c
        key_is = c.key == sa.bindparam("p_key")
        self._get = self._compile(sa.select(*self._columns).where(key_is))
        payload_columns = [c[name] for name in PAYLOAD_FIELDS]
        self._get_payload = self._compile(sa.select(*payload_columns).where(key_is))
        state_columns = [self._columns[COLUMNS.index(name)] for name in PAYLOAD_STATE_FIELDS]
        self._get_payload_state = self._compile(
            sa.select(*payload_columns, *state_columns).where(key_is)
        )
        self._get_locked = self._compile(sa.select(*self._columns).where(key_is).with_for_update())
        self._exists = self._compile(sa.select(sa.literal_column("1")).where(key_is))
        self._insert = self._compile(
            self._insert_construct()
            .values(self._write_values(COLUMNS))
            .on_conflict_do_nothing(index_elements=[c.key])
        )
        self._update_all = self._compile(
            sa.update(self.table)
            .where(key_is)
            .values(self._write_values([name for name in COLUMNS if name != "key"]))
        )
        self._delete = self._compile(sa.delete(self.table).where(key_is).returning(*self._columns))

    # ------------------------------------------------------------------ dialect hooks

    @abstractmethod
    def _run(self, work: Callable[[_Cursor], T], *, write: bool, frees_space: bool = False) -> T:
        """Run ``work`` in a transaction (``write``) or as plain reads, with retries.

        ``frees_space`` marks a deletion: on a full disk it may use the space reserved
        for deletions (see :class:`SqliteMetadataBackend`).
        """

    @abstractmethod
    def _insert_construct(self) -> Any:
        """The dialect's ``insert(table)`` (it knows ``on_conflict_do_nothing``)."""

    @abstractmethod
    def _info_exists(self, cursor: _Cursor) -> bool:
        """True when the ``<table>_info`` table exists."""

    def _lock_ddl(self, cursor: _Cursor) -> None:
        """Serialize schema creation between processes (inside the write transaction)."""

    def _row_columns(self) -> list[ColumnElement[Any]]:
        return [self.table.c[name] for name in COLUMNS]

    def _write_values(self, fields: Iterable[str]) -> dict[str, Any]:
        """The ``SET``/``VALUES`` of a write of ``fields``: each from its ``p_<name>``."""
        return {name: sa.bindparam(f"p_{name}") for name in fields}

    # ------------------------------------------------------------------ statements

    def _compile(self, statement: Any, *, reusable: bool = True) -> Statement:
        return compile_statement(statement, self._dialect, reusable=reusable)

    def _cached(
        self, shape: tuple[Any, ...], build: Callable[[], Any], *, reusable: bool = True
    ) -> Statement:
        statement = self._statements_by_shape.get(shape)
        if statement is None:
            statement = self._compile(build(), reusable=reusable)
            with self._statements_lock:
                self._statements_by_shape[shape] = statement
        return statement

    def _keys_statement(self, kind: Literal["get", "lock", "delete"], count: int) -> Statement:
        def build() -> Any:
            keys_in = self.table.c.key.in_([sa.bindparam(f"p_k{i}") for i in range(count)])
            if kind == "delete":
                return sa.delete(self.table).where(keys_in).returning(*self._columns)
            select = sa.select(*self._columns).where(keys_in)
            return select.with_for_update() if kind == "lock" else select

        return self._cached((kind, count), build, reusable=False)

    def _update_statement(self, fields: tuple[str, ...]) -> Statement:
        def build() -> Any:
            return (
                sa.update(self.table)
                .where(self.table.c.key == sa.bindparam("p_key"))
                .values(self._write_values(fields))
                .returning(*self._columns)
            )

        return self._cached(("update", fields), build)

    def _select_many(self, cursor: _Cursor, keys: Sequence[str], *, lock: bool) -> dict[str, Entry]:
        # sorted chunks touch neighbouring index pages and lock rows in one global order
        found = {}
        for chunk in _chunks(sorted(keys), self.in_chunk):
            statement = self._keys_statement("lock" if lock else "get", len(chunk))
            for row in cursor.rows_for_keys(statement, chunk):
                found[row[0]] = row_to_entry(row)
        return found

    # ------------------------------------------------------------------ schema

    @property
    def schema_version(self) -> int:
        """The table layout this backend writes (``SCHEMA_VERSIONS[dialect_name]``)."""
        return self._migrations.current

    @property
    def _migrations(self) -> FormatMigrations[_SqlStep]:
        return _MIGRATIONS[self.dialect_name]

    def _ensure_schema(self) -> None:
        version = self._run(self._read_version, write=False)
        if version != self.schema_version:
            self._run(self._create_schema, write=True)

    def _read_version(self, cursor: _Cursor) -> int | None:
        """The recorded schema version (None: no table yet); refuses a newer one."""
        if not self._info_exists(cursor):
            return None
        info = self.info_table
        row = cursor.first(
            self._compile(sa.select(info.c.value).where(info.c.name == _VERSION_ROW))
        )
        if row is None:
            return None
        where = f"table {self.table.fullname!r}"
        try:
            version = int(row[0])
        except ValueError:
            raise MetadataError(
                f"{where} records schema version {row[0]!r}, which is not a number: the "
                f"{info.name} table was edited or damaged; restore it from a backup"
            ) from None
        self._migrations.check(version, where, hint=", or use another table name")
        return version

    def _create_schema(self, cursor: _Cursor) -> None:
        """Create the tables, or migrate older ones (under the DDL lock, one transaction)."""
        self._lock_ddl(cursor)
        version = self._read_version(cursor)  # again: another process may have done it
        if version is not None:
            self._migrate(cursor, version)
            return
        for table in (self.table, self.info_table):
            create = CreateTable(table, if_not_exists=True).compile(dialect=self._dialect)
            cursor.raw.execute(str(create))
            for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
                ddl = CreateIndex(index, if_not_exists=True).compile(dialect=self._dialect)
                cursor.raw.execute(str(ddl))
        self._complete_schema(cursor)
        current = self.schema_version
        info = self.info_table
        cursor.execute(self._compile(sa.insert(info).values(name=_VERSION_ROW, value=str(current))))
        log.info("created metadata table %s (schema %d)", self.table.fullname, current)

    def _complete_schema(self, cursor: _Cursor) -> None:
        """Create what the current layout has beyond tables and indexes (triggers)."""

    def _migrate(self, cursor: _Cursor, found: int) -> None:
        """Upgrade a table of schema version ``found`` to the current one."""
        migrations = self._migrations
        steps = migrations.steps(found, f"table {self.table.fullname!r}")
        if not steps:
            return
        for version, step in steps:
            step(self, cursor)
            log.info(
                "migrated metadata table %s from schema %d to %d",
                self.table.fullname,
                version,
                version + 1,
            )
        info = self.info_table
        cursor.execute(
            self._compile(
                sa.update(info)
                .where(info.c.name == _VERSION_ROW)
                .values(value=str(migrations.current))
            )
        )

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise MetadataError(f"{type(self).__name__} is closed; open a new one")

    def _write_entry(self, cursor: _Cursor, entry: Entry, *, existed: bool) -> None:
        params = entry_params(entry)
        if existed:
            cursor.execute(self._update_all, params)
        elif cursor.execute(self._insert, params).rowcount != 1:
            raise _Conflict(entry.key)

    def _put_locked(self, cursor: _Cursor, entry: Entry, *, overwrite: bool) -> Entry | None:
        # Insert first: a new key (the common case) takes one statement, not a read too.
        params = entry_params(entry)
        if cursor.execute(self._insert, params).rowcount == 1:
            return None
        if not overwrite:
            raise exists_error(entry.key)
        row = cursor.first(self._get_locked, {"key": entry.key})
        if row is None:  # deleted by another transaction since our insert saw it
            raise _Conflict(entry.key)
        cursor.execute(self._update_all, params)
        return row_to_entry(row)

    # ------------------------------------------------------------------ primitives

    def get(self, key: str) -> Entry | None:
        """Return the entry stored under ``key``, or None."""
        validate_key(key)
        row = self._run(lambda cursor: cursor.first(self._get, {"key": key}), write=False)
        return None if row is None else row_to_entry(row)

    def get_payload(self, key: str, *, with_metadata: bool = False) -> PayloadInfo | None:
        """Return where ``key``'s data is and how to decode it (ten columns; twelve
        ``with_metadata``), or None."""
        validate_key(key)
        statement = self._get_payload_state if with_metadata else self._get_payload
        row = self._run(lambda cursor: cursor.first(statement, {"key": key}), write=False)
        return None if row is None else row_to_payload(row)

    def put(self, entry: Entry, *, overwrite: bool = True) -> Entry | None:
        """Store ``entry`` in one transaction; return the entry it replaced."""
        stored = normalize_entry(entry)
        return self._run(
            lambda cursor: self._put_locked(cursor, stored, overwrite=overwrite), write=True
        )

    def delete(self, key: str) -> Entry | None:
        """Remove ``key`` (one ``DELETE ... RETURNING``); return the removed entry."""
        validate_key(key)
        row = self._run(
            lambda cursor: cursor.first(self._delete, {"key": key}), write=True, frees_space=True
        )
        return None if row is None else row_to_entry(row)

    def update(self, key: str, /, **changes: Any) -> Entry | None:
        """Change fields of ``key`` (one ``UPDATE ... RETURNING``); None when absent."""
        validate_key(key)
        fields = tuple(sorted(validate_changes(changes)))
        if not fields:
            return self.get(key)
        values = entry_params(checked_values(changes))
        values["key"] = key
        statement = self._update_statement(fields)
        row = self._run(lambda cursor: cursor.first(statement, values), write=True)
        return None if row is None else row_to_entry(row)

    def query(
        self,
        filter: Filter | None = None,
        *,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Entry]:
        """Yield matching entries in order, fetched in pages of :attr:`page_size` rows.

        Pages continue after the last row seen (keyset paging), so no connection or
        transaction is held between pages and no entry is yielded twice.
        """
        where = compile_filter(parse_filter(filter), self.table, self.dialect_name)
        spec, limit, offset = query_args(order_by, descending, limit, offset)
        components = order_components(spec, self.table, self.dialect_name)
        self._check_open()
        return self._pages(where, components, descending, limit, offset)

    def _pages(
        self,
        where: ColumnElement[bool],
        components: list[ColumnElement[Any]],
        descending: bool,
        limit: int | None,
        offset: int,
    ) -> Iterator[Entry]:
        labels = [component.label(f"_o{i}") for i, component in enumerate(components)]
        order = [label.desc() if descending else label.asc() for label in labels]
        select = sa.select(*self._columns, *labels)
        last: Sequence[Any] | None = None
        remaining = limit
        condition = where
        while remaining is None or remaining > 0:
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            if last is not None:
                condition = sa.and_(where, after(components, last, descending))
            statement = select.where(condition).order_by(*order).limit(size)
            if last is None and offset:
                statement = statement.offset(offset)
            compiled = self._compile(statement, reusable=False)
            rows = self._run(lambda cursor, compiled=compiled: cursor.rows(compiled), write=False)
            for row in rows:
                yield row_to_entry(row)
            if len(rows) < size:
                return
            last = tuple(rows[-1][len(COLUMNS) :])
            if remaining is not None:
                remaining -= len(rows)

    # ------------------------------------------------------------------ batches

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """Return ``{key: entry}`` for the keys that exist (``IN`` lists, chunked)."""
        wanted = unique_keys(keys)
        if not wanted:
            return {}
        found = self._run(lambda cursor: self._select_many(cursor, wanted, lock=False), write=False)
        return {key: found[key] for key in wanted if key in found}

    def put_many(self, entries: Iterable[Entry]) -> list[Entry]:
        """Store every entry in one transaction; return the replaced entries, in order."""
        batch = [normalize_entry(entry) for entry in entries]
        if not batch:
            return []
        keys = list(dict.fromkeys(entry.key for entry in batch))

        def work(cursor: _Cursor) -> list[Entry]:
            current = self._select_many(cursor, keys, lock=True)
            final: dict[str, Entry] = {}
            replaced = []
            for entry in batch:
                old = final[entry.key] if entry.key in final else current.get(entry.key)
                if old is not None:
                    replaced.append(old)
                final[entry.key] = entry
            new = [entry_params(e) for key, e in final.items() if key not in current]
            if new and cursor.many(self._insert, new) != len(new):
                raise _Conflict("put_many")
            changed = [entry_params(e) for key, e in final.items() if key in current]
            if changed:
                cursor.many(self._update_all, changed)
            return replaced

        return self._run(work, write=True)

    def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Entry]:
        """Apply ``{key: {field: value}}`` in one transaction; return the updated entries."""
        checked = {validate_key(key): validate_changes(fields) for key, fields in changes.items()}
        if not checked:
            return {}

        def work(cursor: _Cursor) -> dict[str, Entry]:
            current = self._select_many(cursor, list(checked), lock=True)
            updated = {
                key: updated_entry(current[key], fields)
                for key, fields in checked.items()
                if key in current
            }
            if updated:
                cursor.many(self._update_all, [entry_params(e) for e in updated.values()])
            return updated

        return self._run(work, write=True)

    def delete_many(self, keys: Iterable[str]) -> list[Entry]:
        """Remove the keys in one transaction (``DELETE ... IN ... RETURNING``)."""
        doomed = unique_keys(keys)
        if not doomed:
            return []

        def work(cursor: _Cursor) -> dict[str, Entry]:
            removed = {}
            for chunk in _chunks(sorted(doomed), self.in_chunk):
                statement = self._keys_statement("delete", len(chunk))
                for row in cursor.rows_for_keys(statement, chunk):
                    removed[row[0]] = row_to_entry(row)
            return removed

        removed = self._run(work, write=True, frees_space=True)
        return [removed[key] for key in doomed if key in removed]

    def delete_where(self, filter: Filter) -> list[Entry]:
        """Remove every matching entry with one ``DELETE ... WHERE ... RETURNING``."""
        where = compile_filter(parse_filter(filter), self.table, self.dialect_name)
        statement = self._compile(
            sa.delete(self.table).where(where).returning(*self._columns), reusable=False
        )
        rows = self._run(lambda cursor: cursor.rows(statement), write=True, frees_space=True)
        return [row_to_entry(row) for row in rows]

    def count(self, filter: Filter | None = None) -> int:
        """Return how many entries match ``filter`` (one ``SELECT count(*)``)."""
        return self._aggregate(sa.func.count(), filter)

    def total_size(self, filter: Filter | None = None) -> int:
        """Return the summed ``size`` of the matching entries (one ``SELECT sum``)."""
        return self._aggregate(sa.func.coalesce(sa.func.sum(self.table.c.size), 0), filter)

    def _aggregate(self, function: ColumnElement[Any], filter: Filter | None) -> int:
        where = compile_filter(parse_filter(filter), self.table, self.dialect_name)
        statement = self._compile(
            sa.select(function).select_from(self.table).where(where), reusable=False
        )
        row = self._run(lambda cursor: cursor.first(statement), write=False)
        return int(row[0])

    def exists(self, key: str) -> bool:
        """Return True when ``key`` has an entry."""
        validate_key(key)
        row = self._run(lambda cursor: cursor.first(self._exists, {"key": key}), write=False)
        return row is not None

    def copy(
        self, src: str, dst: str, *, overwrite: bool = False, **changes: Any
    ) -> tuple[Entry, Entry | None]:
        """Copy ``src`` to ``dst`` in one transaction (see ``MetadataBackend.copy``)."""
        validate_key(src)
        validate_key(dst)
        validate_changes(changes)

        def work(cursor: _Cursor) -> tuple[Entry, Entry | None]:
            row = cursor.first(self._get, {"key": src})
            if row is None:
                raise not_found_error(src)
            copy = copied_entry(row_to_entry(row), dst, changes, utc_now())
            return copy, self._put_locked(cursor, copy, overwrite=overwrite)

        return self._run(work, write=True)

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> tuple[Entry, Entry | None]:
        """Rename ``src`` to ``dst`` atomically, in one transaction."""
        validate_key(src)
        validate_key(dst)

        def work(cursor: _Cursor) -> tuple[Entry, Entry | None]:
            row = cursor.first(self._get_locked, {"key": src})
            if row is None:
                raise not_found_error(src)
            source = row_to_entry(row)
            now = utc_now()
            if src == dst:
                if not overwrite:
                    raise exists_error(dst)
                stamped = moved_entry(source, dst, now)
                self._write_entry(cursor, stamped, existed=True)
                return stamped, None
            old_row = cursor.first(self._get_locked, {"key": dst})
            if old_row is not None and not overwrite:
                raise exists_error(dst)
            moved = moved_entry(source, dst, now)
            cursor.first(self._delete, {"key": src})
            self._write_entry(cursor, moved, existed=old_row is not None)
            return moved, None if old_row is None else row_to_entry(old_row)

        return self._run(work, write=True)


# ---------------------------------------------------------------------------- SQLite

_inherited_connections: list[sqlite3.Connection] = []
"""Connections inherited through ``fork``: never used nor closed by the child."""


class _ThreadConnection:
    """One thread's SQLite connection; closed when the thread (and its locals) go away.

    It may be finalized while the interpreter exits, after this module's globals were
    set to None: everything ``close`` needs is bound on the class.
    """

    __slots__ = ("__weakref__", "conn", "pid")

    _getpid = staticmethod(os.getpid)
    _inherited: ClassVar[list[sqlite3.Connection]] = _inherited_connections
    _sqlite_error: ClassVar[type[Exception]] = sqlite3.Error
    _log: ClassVar[logging.Logger] = log

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn: sqlite3.Connection | None = conn
        self.pid = os.getpid()

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
        self._retries = int(retries)
        self.journal_mode = self._choose_journal_mode(journal_mode)
        self._synchronous = synchronous or ("NORMAL" if self.journal_mode == "wal" else "FULL")
        self._local = threading.local()
        self._connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._connections_lock = threading.Lock()
        super().__init__(table=table, schema=None, dialect=sqlite_dialect.dialect())
        for quick in (self._get, self._get_payload, self._get_payload_state):  # binds (key,)
            assert (quick.positional, quick.sources) == (True, ("key",))
        self._set_journal_mode()
        self._ensure_schema()
        self.reserve.ensure()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<SqliteMetadataBackend {str(self.path)!r} table={self.table.name!r}{state}>"

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

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
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
        def work(cursor: _Cursor) -> str:
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

    def _insert_construct(self) -> Any:
        return sqlite_dialect.insert(self.table)

    def _info_exists(self, cursor: _Cursor) -> bool:
        row = cursor.raw.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            (self.info_table.name,),
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

    def _run(self, work: Callable[[_Cursor], T], *, write: bool, frees_space: bool = False) -> T:
        attempt = conflicts = 0
        used_reserve = False
        reserve = self.reserve
        taken_back = not (write and not frees_space and reserve.wanted) or reserve.ensure()
        if not taken_back and reserve.released:
            raise _IndexFullError(  # a deletion used it: get it back before anything else
                f"SQLite index {self.path}: the disk is full: the "
                f"{self.reserve.size >> 20} MiB kept beside the index for deletions were "
                "used and there is no room to set them aside again; delete more entries "
                "or free space on the filesystem (nothing was written)"
            )
        while True:
            conn = self._connection()
            try:
                if write:
                    conn.execute("BEGIN IMMEDIATE")
                result = work(_Cursor(conn.cursor()))
                if write:
                    conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                self._rollback(conn)
                if frees_space and not used_reserve and _sqlite_full(exc):
                    used_reserve = True
                    released = self.reserve.release()
                    log.warning(
                        "SQLite index %s: the disk is full; %s and retrying the deletion",
                        self.path,
                        "releasing the space reserved beside it"
                        if released
                        else "checkpointing its WAL",
                    )
                    self._checkpoint(conn)
                    continue
                if _sqlite_busy(exc) and attempt < self._retries:
                    attempt += 1
                    log.debug("SQLite index %s busy (%s); retry %d", self.path, exc, attempt)
                    time.sleep(_backoff(attempt, 0.05))
                    continue
                raise self._error(exc) from exc
            except _Conflict:
                self._rollback(conn)
                conflicts += 1
                if conflicts > _MAX_CONFLICT_RETRIES:
                    raise MetadataError(
                        f"SQLite index {self.path}: too many write conflicts"
                    ) from None
            except BaseException:
                self._rollback(conn)
                raise

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

    def _make_locks(self) -> FileLocks:
        # Processes of one host share the index file, so they share lock files beside it.
        return FileLocks(self.path.with_name(self.path.name + ".locks"))


# ---------------------------------------------------------------------------- PostgreSQL


class PostgresMetadataBackend(SqlMetadataBackend):
    """The metadata index in a PostgreSQL table, shared by many hosts.

    Args:
        url: a SQLAlchemy URL (``postgresql://user@host/db``; the psycopg 3 driver is
            used) or an existing :class:`sqlalchemy.engine.Engine` built on psycopg
            (shared, not disposed on close).
        table: name of the entries table; caches sharing a database use distinct names.
        schema: database schema of the tables (default: the connection's search path).
        pool_size, max_overflow, pool_timeout: connection pool settings.
        connect_timeout: seconds to wait for a connection before the attempt fails.
        retries: extra attempts after a dropped connection, a serialization failure or
            a deadlock, with exponential backoff from ``retry_backoff`` seconds.
        engine_options: more keyword arguments for :func:`sqlalchemy.create_engine`.

    Raises:
        MissingDependencyError: psycopg is not installed.
        BackendUnavailableError: the server cannot be reached (after the retries).
        ConfigError: bad options, or a URL for another database or driver.

    Example:
        >>> PostgresMetadataBackend("sqlite:///x.db")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: the postgresql metadata backend needs a \
postgresql:// URL, got 'sqlite:///x.db'...
    """

    name: ClassVar[str] = "postgresql"
    scope: ClassVar[Scope] = "shared"
    dialect_name: ClassVar[str] = "postgresql"

    def __init__(
        self,
        url: str | sa.engine.URL | sa.engine.Engine,
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: int = 5,
        retries: int = 3,
        retry_backoff: float = 0.1,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._owns_engine = not isinstance(url, sa.engine.Engine)
        if isinstance(url, sa.engine.Engine):
            engine = url
            if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
                raise ConfigError(
                    "the postgresql metadata backend needs an engine using the psycopg "
                    f"(3) driver, got {engine.dialect.name}+{engine.dialect.driver}"
                )
        else:
            engine = self._create_engine(
                url, pool_size, max_overflow, pool_timeout, connect_timeout, engine_options
            )
        self._psycopg = import_optional(
            "psycopg", extra="postgresql", purpose="the postgresql metadata backend"
        )
        self.engine = engine
        self._retries = int(retries)
        self._retry_backoff = float(retry_backoff)
        self._pid = os.getpid()
        super().__init__(table=table, schema=schema, dialect=engine.dialect)
        try:
            self._ensure_schema()
        except BaseException:
            if self._owns_engine:
                engine.dispose()
            raise

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        state = " closed" if self._closed else ""
        return f"<PostgresMetadataBackend {url} table={self.table.fullname!r}{state}>"

    @staticmethod
    def _create_engine(
        url: str | sa.engine.URL,
        pool_size: int,
        max_overflow: int,
        pool_timeout: float,
        connect_timeout: int,
        engine_options: Mapping[str, Any] | None,
    ) -> sa.engine.Engine:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"invalid database URL {str(url)!r}: {exc}") from exc
        backend, _, driver = parsed.drivername.partition("+")
        if backend not in ("postgresql", "postgres") or driver not in ("", "psycopg"):
            raise ConfigError(
                "the postgresql metadata backend needs a postgresql:// URL, got "
                f"{parsed.render_as_string(hide_password=True)!r} (the psycopg 3 driver is used)"
            )
        import_optional("psycopg", extra="postgresql", purpose="the postgresql metadata backend")
        options = dict(engine_options or {})
        connect_args = {"connect_timeout": connect_timeout, "application_name": "cacheness"}
        connect_args.update(options.pop("connect_args", {}))
        settings = {
            "pool_pre_ping": True,
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout,
            **options,
        }
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"), connect_args=connect_args, **settings
        )

    # ------------------------------------------------------------------ dialect hooks

    def _row_columns(self) -> list[ColumnElement[Any]]:
        # The exact JSON text, decoded by msgspec like SQLite's; the jsonb as text only
        # for rows written before the column existed (numbers normalised by jsonb).
        c = self.table.c
        exact = sa.func.coalesce(c[METADATA_TEXT], sa.cast(c.metadata, sa.Text))
        return [exact.label("metadata") if name == "metadata" else c[name] for name in COLUMNS]

    def _write_values(self, fields: Iterable[str]) -> dict[str, Any]:
        values = super()._write_values(fields)
        if "metadata" in values:  # the queryable jsonb and the exact text, from one value
            # one parameter, one type: text, parsed into jsonb by the server
            text = sa.bindparam("p_metadata", type_=sa.Text)
            values["metadata"] = sa.cast(text, postgresql.JSONB)
            values[METADATA_TEXT] = text
        return values

    def _complete_schema(self, cursor: _Cursor) -> None:
        self._guard_metadata_text(cursor)

    def _guard_metadata_text(self, cursor: _Cursor) -> None:
        """Install the trigger that clears ``metadata_text`` when a write leaves it stale.

        A writer unaware of the column (a process that opened the table before it was
        migrated, or SQL run by hand) changes ``metadata`` without ``metadata_text``; the
        trigger then clears the stale text, so reads fall back to the ``jsonb`` instead
        of returning what the row held before.
        """
        preparer = self._dialect.identifier_preparer
        table = preparer.format_table(self.table)
        column = preparer.quote(METADATA_TEXT)
        schema = f"{preparer.quote_schema(self.table.schema)}." if self.table.schema else ""
        function = f"{schema}{preparer.quote(self.table.name + '_metadata_text')}"
        trigger = preparer.quote(f"{self.table.name}_metadata_text")
        cursor.raw.execute(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF NEW.metadata IS DISTINCT FROM OLD.metadata AND NEW.{column} IS NOT "
            f"DISTINCT FROM OLD.{column} THEN NEW.{column} := NULL; END IF; RETURN NEW; END $$"
        )
        cursor.raw.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        cursor.raw.execute(
            f"CREATE TRIGGER {trigger} BEFORE UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )

    def _insert_construct(self) -> Any:
        return postgresql.insert(self.table)

    def _info_exists(self, cursor: _Cursor) -> bool:
        name = self._dialect.identifier_preparer.format_table(self.info_table)
        row = cursor.raw.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        return row is not None and row[0] is not None

    def _lock_ddl(self, cursor: _Cursor) -> None:
        schema = self.table.schema
        if schema is not None:
            found = cursor.raw.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if found is None:
                quoted = self._dialect.identifier_preparer.quote(schema)
                cursor.raw.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        lock_id = xxhash.xxh64_intdigest(f"cacheness:{self.table.fullname}".encode()) - 2**63
        cursor.raw.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))

    # ------------------------------------------------------------------ transactions

    def _describe(self) -> str:
        url = self.engine.url
        return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"

    def _checkout(self) -> Any:
        if self._pid != os.getpid():  # forked: the parent's pooled connections are not ours
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        return self.engine.raw_connection()

    def _run(self, work: Callable[[_Cursor], T], *, write: bool, frees_space: bool = False) -> T:
        psycopg = self._psycopg
        attempt = conflicts = 0
        while True:
            self._check_open()
            try:
                fairy = self._checkout()
            except sa.exc.TimeoutError as exc:
                raise BackendUnavailableError(
                    f"{self._describe()}: no pooled connection became free ({exc}); raise "
                    "pool_size/max_overflow or hold fewer connections"
                ) from exc
            except (sa.exc.DBAPIError, psycopg.Error) as exc:
                reason = getattr(exc, "orig", None) or exc
                if attempt < self._retries:
                    attempt += 1
                    log.info(
                        "%s: connecting failed (%s); retry %d", self._describe(), reason, attempt
                    )
                    time.sleep(_backoff(attempt, self._retry_backoff))
                    continue
                raise BackendUnavailableError(
                    f"{self._describe()} is unreachable: {reason}; check that the server "
                    "is up and the URL, credentials and network are right"
                ) from exc
            conn = fairy.driver_connection
            autocommit = conn.autocommit
            try:
                if not autocommit:
                    conn.autocommit = True
                cursor = conn.cursor()
                if write:
                    cursor.execute("BEGIN")
                try:
                    result = work(_PsycopgCursor(cursor))
                except BaseException:
                    if write and not conn.broken:
                        cursor.execute("ROLLBACK")
                    raise
                if write:
                    try:
                        cursor.execute("COMMIT")
                    except psycopg.Error as exc:
                        raise BackendUnavailableError(
                            f"{self._describe()}: the connection failed while committing "
                            f"({exc}); the change may or may not have been saved"
                        ) from exc
                return result
            except _Conflict:
                conflicts += 1
                if conflicts > _MAX_CONFLICT_RETRIES:
                    raise MetadataError(f"{self._describe()}: too many write conflicts") from None
            except psycopg.errors.UniqueViolation:
                conflicts += 1  # a concurrent insert of the same key: read again
                if conflicts > _MAX_CONFLICT_RETRIES:
                    raise
            except psycopg.OperationalError as exc:
                if attempt < self._retries:
                    attempt += 1
                    log.info("%s: %s; retry %d", self._describe(), exc, attempt)
                    time.sleep(_backoff(attempt, self._retry_backoff))
                    continue
                if conn.broken or conn.closed:
                    raise BackendUnavailableError(
                        f"{self._describe()}: connection lost ({exc}) after {self._retries} retries"
                    ) from exc
                raise MetadataError(f"{self._describe()}: {exc}") from exc
            except psycopg.Error as exc:
                raise MetadataError(f"{self._describe()}: {exc}") from exc
            finally:
                self._release(fairy, conn, autocommit)

    @contextlib.contextmanager
    def named_lock(self, name: str, *, timeout: float | None = None) -> Iterator[bool]:
        """Hold a PostgreSQL advisory lock named ``name``, shared by every host.

        The lock is held on a pooled connection of its own for the duration of the
        block; if that connection dies the server releases the lock. Names are scoped to
        this backend's table, so caches sharing a database do not block each other.
        See :meth:`MetadataBackend.named_lock`.

        Raises:
            BackendUnavailableError: the server cannot be reached.
        """
        self._check_open()
        key = xxhash.xxh64_intdigest(f"cacheness-lock:{self.table.fullname}:{name}".encode())
        key -= 2**63  # advisory lock keys are signed 64-bit integers
        psycopg = self._psycopg
        try:
            fairy = self._checkout()
        except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
            raise BackendUnavailableError(
                f"{self._describe()}: cannot take lock {name!r}: {exc}"
            ) from exc
        conn = fairy.driver_connection
        autocommit = conn.autocommit
        try:
            conn.autocommit = True
            if timeout is None:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                got = True
            else:
                query = "SELECT pg_try_advisory_lock(%s)"
                got = poll_until(lambda: conn.execute(query, (key,)).fetchone()[0], timeout)
        except psycopg.Error as exc:
            self._release(fairy, conn, autocommit)
            raise BackendUnavailableError(
                f"{self._describe()}: cannot take lock {name!r}: {exc}"
            ) from exc
        try:
            yield got
        finally:
            try:
                if got and not (conn.broken or conn.closed):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg.Error:
                # The lock may still be held by this session: never pool it again.
                log.warning("releasing lock %r failed; dropping its connection", name)
                fairy.invalidate()
            self._release(fairy, conn, autocommit)

    @staticmethod
    def _release(fairy: Any, conn: Any, autocommit: bool) -> None:
        if conn.broken or conn.closed:
            fairy.invalidate()
        elif not autocommit:
            conn.autocommit = autocommit
        fairy.close()

    def close(self) -> None:
        """Return the pooled connections (and dispose of the engine if this backend made it)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_engine:
            self.engine.dispose()


@_MIGRATIONS["postgresql"].register(from_version=1)
def _postgresql_exact_metadata_text(backend: SqlMetadataBackend, cursor: _Cursor) -> None:
    """PostgreSQL schema 1 -> 2: add ``metadata_text``, the exact JSON text of ``metadata``.

    ``jsonb`` normalises numbers (``1e20`` reads back as an int, ``-0.0`` as ``0``); from
    layout 2 on, writes store the text as well and reads return it. Rows written before
    keep a NULL text and read from the ``jsonb`` as they always did. Also installs the
    trigger that keeps the text from going stale under writers unaware of it.
    """
    assert isinstance(backend, PostgresMetadataBackend)
    preparer = backend._dialect.identifier_preparer
    table = preparer.format_table(backend.table)
    column = preparer.quote(METADATA_TEXT)
    cursor.raw.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} text")
    backend._guard_metadata_text(cursor)
