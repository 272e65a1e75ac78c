"""The metadata index in a SQL table: what the ``sqlite`` and ``postgresql`` backends share.

One SQLAlchemy Core schema (:attr:`SqlMetadataBackend.table`), one set of statements,
one transaction loop (:meth:`SqlMetadataBackend._run`: retries with backoff, write
conflicts started over, both bounded) and the schema version check; the dialect modules
(``sqlite.py``, ``postgresql.py``) add the connection, one transaction attempt, which
errors are worth a retry, and dialect details (the ``ON CONFLICT`` insert, JSON
operators, ``FOR UPDATE``).

Every batch method runs as one transaction with set-based statements (``IN`` lists
chunked under the bind-parameter limit), never one round trip per key; ``move`` is
atomic. Timestamps are stored as integer microseconds since the epoch; the layout
version is recorded in ``<table>_info`` and checked on open: a newer one is refused
(:class:`~cacheness.storage.errors.FormatVersionError`), an older one is migrated by
the steps a backend registers in its ``migrations`` (see ``_migrations.py``).

Example:
    >>> import tempfile
    >>> from cacheness.storage import Entry, SqliteMetadataBackend
    >>> with SqliteMetadataBackend(tempfile.mkdtemp() + "/index.sqlite") as index:
    ...     _ = index.put(Entry.new("runs/1", size=10, metadata={"project": "ml"}))
    ...     _ = index.put(Entry.new("runs/2", size=20, metadata={"project": "cv"}))
    ...     [e.key for e in index.query({"metadata.project": "ml"})]
    ...     index.move("runs/2", "archive/2")[0].key
    ['runs/1']
    'archive/2'
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeVar

from cacheness.storage._entry import Entry, utc_now, validate_key
from cacheness.storage._filters import Filter, parse_filter
from cacheness.storage._metadata._entries import (
    checked_changes,
    checked_values,
    copied_entry,
    exists_error,
    moved_entry,
    normalize_entry,
    not_found_error,
    query_args,
    unique_keys,
    updated_entries,
    validate_changes,
)
from cacheness.storage._metadata._migrations import FormatMigrations
from cacheness.storage._metadata._sqlrows import (
    COLUMNS,
    Statement,
    entry_params,
    row_to_entry,
    row_to_payload,
    validate_identifier,
    widen_in_list,
)
from cacheness.storage._metadata.base import (
    PAYLOAD_FIELDS,
    PAYLOAD_STATE_FIELDS,
    MetadataBackend,
    PayloadInfo,
)
from cacheness.storage._telemetry import record_retry
from cacheness.storage.errors import (
    MetadataError,
)

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Dialect, Engine
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

    from cacheness.storage._custom import CustomMetadataBase
    from cacheness.storage._metadata._sqlcustom import ChildTable, CustomTables, TableShape


log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TABLE: Final = "cacheness_entries"
"""Default name of the entries table (the version table is ``<name>_info``)."""

MIN_SQLITE: Final = (3, 35, 0)
"""Oldest SQLite library the sqlite backend works with (``DELETE ... RETURNING``)."""

_MAX_CONFLICT_RETRIES: Final = 20
_CONFLICT_BACKOFF: Final = 0.0002
"""Base of the jittered pause after a second write conflict in a row (seconds)."""
_VERSION_ROW: Final = "schema_version"


class Conflict(Exception):  # noqa: N818 - internal signal, never escapes
    """Another transaction inserted a key between our read and our insert: start over."""


class Cursor:
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


class PsycopgCursor(Cursor):
    """Lets psycopg prepare reusable statements only (see ``Statement.reusable``)."""

    __slots__ = ()

    def _send(self, statement: Statement, params: Any) -> None:
        self.raw.execute(statement.sql, params, prepare=None if statement.reusable else False)


def backoff(attempt: int, base: float) -> float:
    """Exponential backoff with full jitter, capped at 2 s."""
    import random  # only a retry needs it

    return random.uniform(0, min(2.0, base * 2**attempt))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


SqlStep = Callable[["SqlMetadataBackend", "Cursor"], None]
"""A migration step: upgrades a table by one schema version, run in the write transaction
that holds the DDL lock."""


class Signal(Exception):  # noqa: N818 - internal, never escapes the loop
    """Raised by a dialect's attempt to tell its :meth:`~SqlMetadataBackend._judge` what
    happened; ``reason`` is the real error, which the error raised instead is chained to."""

    def __init__(self, message: str, reason: BaseException) -> None:
        super().__init__(message)
        self.reason = reason


class Run:
    """The state of one :meth:`SqlMetadataBackend._run` call, seen by the dialect hooks."""

    __slots__ = ("frees_space", "used_reserve", "write")

    def __init__(self, write: bool, frees_space: bool) -> None:
        self.write = write
        self.frees_space = frees_space
        self.used_reserve = False


class Verdict(enum.Enum):
    """What the transaction loop does after a failed attempt."""

    RETRY = "retry"  # transient: wait (backoff) and try again, up to ``retries`` times
    AGAIN = "again"  # something was freed: try again at once
    CONFLICT = "conflict"  # a concurrent write got in between: start over (bounded)


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
    supports_custom_metadata: ClassVar[bool] = True
    migrations: ClassVar[FormatMigrations[SqlStep]]
    """The steps that upgrade an older table of this dialect, one schema version each."""
    page_size: ClassVar[int] = 1000
    """Rows fetched per round trip while iterating a query."""
    in_chunk: ClassVar[int] = 500
    """Keys per ``IN (...)`` list (well under every bind-parameter limit)."""

    def __init__(self, *, table: str, schema: str | None) -> None:
        self.table_name = validate_identifier("table name", table)
        self.schema = None if schema is None else validate_identifier("schema name", schema)
        self._closed = False
        self._statements_by_shape: dict[tuple[Any, ...], Statement] = {}
        self._statements_lock = threading.Lock()
        fixed = self._precompiled() or self._compile_fixed()
        self._get = fixed["get"]
        self._get_payload = fixed["get_payload"]
        self._get_payload_state = fixed["get_payload_state"]
        self._get_locked = fixed["get_locked"]
        self._exists = fixed["exists"]
        self._insert = fixed["insert"]
        self._update_all = fixed["update_all"]
        self._delete = fixed["delete"]
        self._read_version_statement = fixed["read_version"]
        self._in_templates = {kind: fixed[f"{kind}_in"] for kind in ("get", "lock", "delete")}

    # ------------------------------------------------------------------ SQLAlchemy, when needed

    @functools.cached_property
    def _tables(self) -> tuple[sa.Table, sa.Table]:
        from cacheness.storage._metadata._sqlcore import build_tables

        return build_tables(self.table_name, self.schema, self.dialect_name)

    @property
    def table(self) -> sa.Table:
        """The SQLAlchemy ``Table`` of the entries (SQLAlchemy is imported on first use)."""
        return self._tables[0]

    @property
    def info_table(self) -> sa.Table:
        """The ``<table>_info`` table holding the schema version."""
        return self._tables[1]

    @functools.cached_property
    def _custom(self) -> CustomTables:
        from cacheness.storage._metadata._sqlcustom import CustomTables

        return CustomTables(self)

    @functools.cached_property
    def _dialect(self) -> Dialect:
        return self._make_dialect()

    @functools.cached_property
    def _columns(self) -> list[ColumnElement[Any]]:
        return self._row_columns()

    @property
    def _fullname(self) -> str:
        """``schema.table`` as written in messages (no SQLAlchemy needed)."""
        return self.table_name if self.schema is None else f"{self.schema}.{self.table_name}"

    def _precompiled(self) -> dict[str, Statement] | None:
        """The fixed statements compiled ahead of time for this table, if there are any."""
        return None

    def _compile_fixed(self) -> dict[str, Statement]:
        """Compile the statements every backend runs, with SQLAlchemy Core.

        ``<kind>_in`` are templates of one key (``IN (?)``): :meth:`_keys_statement`
        widens them to the number of keys.
        """
        import sqlalchemy as sa

        c = self.table.c
        columns = self._columns
        key_is = c.key == sa.bindparam("p_key")
        payload_columns = [c[name] for name in PAYLOAD_FIELDS]
        state_columns = [columns[COLUMNS.index(name)] for name in PAYLOAD_STATE_FIELDS]
        info = self.info_table
        fixed = {
            "get": sa.select(*columns).where(key_is),
            "get_payload": sa.select(*payload_columns).where(key_is),
            "get_payload_state": sa.select(*payload_columns, *state_columns).where(key_is),
            "get_locked": sa.select(*columns).where(key_is).with_for_update(),
            "exists": sa.select(sa.literal_column("1")).where(key_is),
            "insert": self._insert_construct()
            .values(self._write_values(COLUMNS))
            .on_conflict_do_nothing(index_elements=[c.key]),
            "update_all": sa.update(self.table)
            .where(key_is)
            .values(self._write_values([name for name in COLUMNS if name != "key"])),
            "delete": sa.delete(self.table).where(key_is).returning(*columns),
            "read_version": sa.select(info.c.value).where(info.c.name == _VERSION_ROW),
        }
        compiled = {name: self._compile(statement) for name, statement in fixed.items()}
        for kind in ("get", "lock", "delete"):
            compiled[f"{kind}_in"] = self._compile(self._keys_construct(kind, 1), reusable=False)
        return compiled

    def _make_dialect(self) -> Dialect:
        """The SQLAlchemy dialect statements are compiled for."""
        raise NotImplementedError  # pragma: no cover - every backend has one

    # ------------------------------------------------------------------ dialect hooks

    retries: int = 3
    """Extra attempts of a transaction after a transient failure."""
    retry_backoff: float = 0.1
    """Base of the exponential backoff between those attempts, in seconds."""
    retry_log_level: int = logging.INFO
    """How loudly a retry is logged."""

    def _run(self, work: Callable[[Cursor], T], *, write: bool, frees_space: bool = False) -> T:
        """Run ``work`` in a transaction (``write``) or as plain reads: THE transaction loop.

        A transient failure (the dialect's :meth:`_judge` says so) is retried with
        exponential backoff, at most :attr:`retries` times; a write conflict (a
        concurrent insert of the same key) starts the work over, at once the first time
        and after a short jittered pause from the second on (so racing writers stop
        colliding), at most ``_MAX_CONFLICT_RETRIES`` times. ``frees_space`` marks a
        deletion: on a full disk it may use the space reserved for deletions (see the
        sqlite backend).
        """
        run = Run(write, frees_space)
        self._start(run)
        retried = conflicts = 0
        while True:
            try:
                return self._attempt(work, write)
            except Conflict:
                verdict: Verdict | BaseException | None = Verdict.CONFLICT
            except Exception as exc:
                verdict = self._judge(exc, run, retried < self.retries)
                if verdict is None:
                    raise
                if isinstance(verdict, BaseException):
                    raise verdict from (exc.reason if isinstance(exc, Signal) else exc)
                if verdict is Verdict.RETRY:
                    retried += 1
                    where = self._describe()
                    log.log(self.retry_log_level, "%s: %s; retry %d", where, exc, retried)
                    record_retry(retried + 1, {"cacheness.backend": self.name})
                    time.sleep(backoff(retried, self.retry_backoff))
            if verdict is Verdict.CONFLICT:
                conflicts += 1
                if conflicts > _MAX_CONFLICT_RETRIES:
                    raise MetadataError(f"{self._describe()}: too many write conflicts") from None
                if conflicts > 1:  # writers racing for one key again: step apart (jittered)
                    time.sleep(backoff(conflicts, _CONFLICT_BACKOFF))

    def _start(self, run: Run) -> None:
        """Check what must hold before a transaction starts (e.g. the space reserve)."""

    @abstractmethod
    def _attempt(self, work: Callable[[Cursor], T], write: bool) -> T:
        """Run ``work`` once: in a transaction that commits (``write``), or as reads.

        Rolls back and re-raises on any failure; the loop in :meth:`_run` judges it.
        """

    @abstractmethod
    def _judge(self, exc: Exception, run: Run, can_retry: bool) -> Verdict | BaseException | None:
        """Decide on a failed attempt: a :class:`Verdict`, the error to raise instead
        (chained to ``exc``), or None to raise ``exc`` as it is."""

    @abstractmethod
    def _describe(self) -> str:
        """Where the index is, for messages (``SQLite index /path``)."""

    @abstractmethod
    def _insert_construct(self) -> Any:
        """The dialect's ``insert(table)`` (it knows ``on_conflict_do_nothing``)."""

    @abstractmethod
    def _info_exists(self, cursor: Cursor) -> bool:
        """True when the ``<table>_info`` table exists."""

    def _lock_ddl(self, cursor: Cursor) -> None:
        """Serialize schema creation between processes (inside the write transaction)."""

    def _row_columns(self) -> list[ColumnElement[Any]]:
        return [self.table.c[name] for name in COLUMNS]

    @abstractmethod
    def _table_shape(self, cursor: Cursor, name: str, schema: str | None) -> TableShape | None:
        """The columns of table ``name`` and whether it links to the entries (None: absent)."""

    @abstractmethod
    def _child_tables(self, cursor: Cursor) -> list[ChildTable]:
        """The tables whose rows reference the entries (custom metadata tables)."""

    @abstractmethod
    def _custom_engine(self) -> Engine:
        """The SQLAlchemy engine custom metadata sessions use (same database)."""

    def _write_values(self, fields: Iterable[str]) -> dict[str, Any]:
        """The ``SET``/``VALUES`` of a write of ``fields``: each from its ``p_<name>``."""
        import sqlalchemy as sa

        return {name: sa.bindparam(f"p_{name}") for name in fields}

    # ------------------------------------------------------------------ statements

    def _compile(self, statement: Any, *, reusable: bool = True) -> Statement:
        from cacheness.storage._metadata._sqlcore import compile_statement

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

    def _keys_construct(self, kind: Literal["get", "lock", "delete"], count: int) -> Any:
        """``SELECT``/``SELECT ... FOR UPDATE``/``DELETE ... RETURNING`` of ``count`` keys."""
        import sqlalchemy as sa

        keys_in = self.table.c.key.in_([sa.bindparam(f"p_k{i}") for i in range(count)])
        if kind == "delete":
            return sa.delete(self.table).where(keys_in).returning(*self._columns)
        select = sa.select(*self._columns).where(keys_in)
        return select.with_for_update() if kind == "lock" else select

    def _keys_statement(self, kind: Literal["get", "lock", "delete"], count: int) -> Statement:
        """The statement of ``kind`` for ``count`` keys: the one-key template, widened."""
        shape = (kind, count)
        statement = self._statements_by_shape.get(shape)
        if statement is None:
            statement = widen_in_list(self._in_templates[kind], count)
            with self._statements_lock:
                self._statements_by_shape[shape] = statement
        return statement

    def _rename_statement(self) -> Statement:
        """``UPDATE ... SET key = :key, <every field> WHERE key = :src`` (``move``)."""

        def build() -> Any:
            import sqlalchemy as sa

            return (
                sa.update(self.table)
                .where(self.table.c.key == sa.bindparam("p_src"))
                .values(self._write_values(COLUMNS))
            )

        return self._cached(("rename",), build)

    def _update_statement(self, fields: tuple[str, ...]) -> Statement:
        def build() -> Any:
            import sqlalchemy as sa

            return (
                sa.update(self.table)
                .where(self.table.c.key == sa.bindparam("p_key"))
                .values(self._write_values(fields))
                .returning(*self._columns)
            )

        return self._cached(("update", fields), build)

    def _select_many(self, cursor: Cursor, keys: Sequence[str], *, lock: bool) -> dict[str, Entry]:
        # sorted chunks touch neighbouring index pages and lock rows in one global order
        found = {}
        for chunk in chunks(sorted(keys), self.in_chunk):
            statement = self._keys_statement("lock" if lock else "get", len(chunk))
            for row in cursor.rows_for_keys(statement, chunk):
                found[row[0]] = row_to_entry(row)
        return found

    # ------------------------------------------------------------------ schema

    @property
    def schema_version(self) -> int:
        """The table layout this backend writes (the newest version of its migrations)."""
        return self.migrations.current

    def _ensure_schema(self) -> None:
        version = self._run(self._read_version, write=False)
        if version != self.schema_version:
            self._run(self._create_schema, write=True)

    def _read_version(self, cursor: Cursor) -> int | None:
        """The recorded schema version (None: no table yet); refuses a newer one."""
        if not self._info_exists(cursor):
            return None
        row = cursor.first(self._read_version_statement)
        if row is None:
            return None
        where = f"table {self._fullname!r}"
        try:
            version = int(row[0])
        except ValueError:
            raise MetadataError(
                f"{where} records schema version {row[0]!r}, which is not a number: the "
                f"{self.table_name}_info table was edited or damaged; restore it from a backup"
            ) from None
        self.migrations.check(version, where, hint=", or use another table name")
        return version

    def _create_schema(self, cursor: Cursor) -> None:
        """Create the tables, or migrate older ones (under the DDL lock, one transaction)."""
        import sqlalchemy as sa
        from sqlalchemy.schema import CreateIndex, CreateTable

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

    def _complete_schema(self, cursor: Cursor) -> None:
        """Create what the current layout has beyond tables and indexes (triggers)."""

    def _migrate(self, cursor: Cursor, found: int) -> None:
        """Upgrade a table of schema version ``found`` to the current one."""
        import sqlalchemy as sa

        migrations = self.migrations
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

    def _write_entry(self, cursor: Cursor, entry: Entry, *, existed: bool) -> None:
        params = entry_params(entry)
        if existed:
            cursor.execute(self._update_all, params)
        elif cursor.execute(self._insert, params).rowcount != 1:
            raise Conflict(entry.key)

    def _put_locked(
        self, cursor: Cursor, entry: Entry, *, overwrite: bool, keep_rows: bool = False
    ) -> Entry | None:
        """Insert or replace ``entry``; return the replaced entry.

        A replaced entry is deleted and inserted again, so its custom metadata rows go
        with it (the foreign key cascades); ``keep_rows`` updates it in place instead,
        keeping them (``update_data``).
        """
        # Insert first: a new key (the common case) takes one statement, not a read too.
        params = entry_params(entry)
        if cursor.execute(self._insert, params).rowcount == 1:
            return None
        if not overwrite:
            raise exists_error(entry.key)
        if keep_rows:
            row = cursor.first(self._get_locked, {"key": entry.key})
        else:
            row = cursor.first(self._delete, {"key": entry.key})
        if row is None:  # deleted by another transaction since our insert saw it
            raise Conflict(entry.key)
        if keep_rows:
            cursor.execute(self._update_all, params)
        else:
            self._write_entry(cursor, entry, existed=False)
        return row_to_entry(row)

    # ------------------------------------------------------------------ primitives

    def get(self, key: str) -> Entry | None:
        """Return the entry stored under ``key``, or None."""
        validate_key(key)
        row = self._run(lambda cursor: cursor.first(self._get, {"key": key}), write=False)
        return None if row is None else row_to_entry(row)

    def get_payload(self, key: str, *, with_metadata: bool = False) -> PayloadInfo | None:
        """Return where ``key``'s data is and how to decode it (eleven columns; thirteen
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
        return self._query(filter, order_by, descending, limit, offset, self._columns)

    def query_without_payload(
        self,
        filter: Filter | None = None,
        *,
        order_by: str = "key",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Entry]:
        """Like :meth:`query`, without reading the inline payload column (``inline=None``).

        A row's payload of up to the inline threshold lies in overflow pages after its
        fields: a listing that does not select it never reads them.
        """
        return self._query(filter, order_by, descending, limit, offset, self._listed_columns)

    @functools.cached_property
    def _listed_columns(self) -> list[ColumnElement[Any]]:
        import sqlalchemy as sa

        return [
            sa.null().label("inline") if name == "inline" else column
            for name, column in zip(COLUMNS, self._columns, strict=True)
        ]

    def _query(
        self,
        filter: Filter | None,
        order_by: str,
        descending: bool,
        limit: int | None,
        offset: int,
        columns: list[ColumnElement[Any]],
    ) -> Iterator[Entry]:
        from cacheness.storage._metadata._sqlfilter import compile_filter, order_components

        parsed = parse_filter(filter)
        spec, limit, offset = query_args(order_by, descending, limit, offset)
        where = compile_filter(parsed, self.table, self.dialect_name)
        components = order_components(spec, self.table, self.dialect_name)
        self._check_open()
        return self._pages(where, components, descending, limit, offset, columns)

    def _pages(
        self,
        where: ColumnElement[bool],
        components: list[ColumnElement[Any]],
        descending: bool,
        limit: int | None,
        offset: int,
        columns: list[ColumnElement[Any]],
    ) -> Iterator[Entry]:
        import sqlalchemy as sa
        from sqlalchemy.sql import operators

        from cacheness.storage._metadata._sqlfilter import after

        # An order component that is a selected column (created_at, key...) is read back
        # from the row; only the others (a metadata path's rank and value) are selected
        # again under a label: each extra column is one more value per row to fetch.
        labels: list[Any] = []
        ordered: list[ColumnElement[Any]] = []
        positions: list[int] = []
        for component in components:
            index = next((i for i, column in enumerate(columns) if column is component), None)
            if index is None:
                index = len(columns) + len(labels)
                component = component.label(f"_o{len(labels)}")
                labels.append(component)
            ordered.append(component)
            positions.append(index)
        order = [item.desc() if descending else item.asc() for item in ordered]
        select = sa.select(*columns, *labels).order_by(*order)
        # The page after the first takes the previous page's last order values as bind
        # parameters: one compiled statement serves every page (compiling with
        # SQLAlchemy costs about as much as fetching a page of a thousand rows). Each
        # parameter is typed as a literal of its value would be (PostgreSQL casts
        # parameters: a number ranked by a CASE must not become an INTEGER), so the
        # statement is kept per shape of the values (which are None, and their types).
        compiled: dict[tuple[Any, ...], Statement] = {}

        def statement(last: Sequence[Any] | None, size: int) -> Statement:
            shape = (None if last is None else tuple(map(type, last)), size)
            found = compiled.get(shape)
            if found is None:
                if last is None:
                    page = select.where(where).limit(size).offset(offset or None)
                else:
                    marks = [
                        None
                        if value is None
                        else sa.bindparam(
                            f"p_after{i}",
                            value,
                            type_=component.type.coerce_compared_value(operators.gt, value),
                        )
                        for i, (component, value) in enumerate(zip(components, last, strict=True))
                    ]
                    page = select.where(sa.and_(where, after(components, marks, descending)))
                    page = page.limit(size)
                found = compiled[shape] = self._compile(page, reusable=False)
            return found

        last: Sequence[Any] | None = None
        remaining = limit
        while remaining is None or remaining > 0:
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            page = statement(last, size)
            values = None if last is None else {f"after{i}": v for i, v in enumerate(last)}

            def fetch(cursor: Cursor, page: Statement = page, values: Any = values) -> list[Any]:
                return cursor.rows(page, values)

            rows = self._run(fetch, write=False)
            for row in rows:
                yield row_to_entry(row)
            if len(rows) < size:
                return
            last = tuple(rows[-1][index] for index in positions)
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

        def work(cursor: Cursor) -> list[Entry]:
            current = self._select_many(cursor, keys, lock=True)
            final: dict[str, Entry] = {}
            replaced = []
            for entry in batch:
                old = final[entry.key] if entry.key in final else current.get(entry.key)
                if old is not None:
                    replaced.append(old)
                final[entry.key] = entry
            replacing = sorted(key for key in final if key in current)
            for chunk in chunks(replacing, self.in_chunk):  # their custom rows go too
                cursor.rows_for_keys(self._keys_statement("delete", len(chunk)), chunk)
            rows = [entry_params(entry) for entry in final.values()]
            if cursor.many(self._insert, rows) != len(rows):
                raise Conflict("put_many")
            return replaced

        return self._run(work, write=True)

    def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Entry]:
        """Apply ``{key: {field: value}}`` in one transaction; return the updated entries."""
        return self.update_many_if(changes, {})

    def update_many_if(
        self,
        changes: Mapping[str, Mapping[str, Any]],
        expect: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Entry]:
        """:meth:`update_many` for the entries that still hold ``expect``: the rows are
        read locked and compared in the same transaction that writes them."""
        checked = checked_changes(changes)
        if not checked:
            return {}

        def work(cursor: Cursor) -> dict[str, Entry]:
            current = self._select_many(cursor, list(checked), lock=True)
            updated = updated_entries(current, checked, expect)
            if updated:
                cursor.many(self._update_all, [entry_params(e) for e in updated.values()])
            return updated

        return self._run(work, write=True)

    def delete_many(self, keys: Iterable[str]) -> list[Entry]:
        """Remove the keys in one transaction (``DELETE ... IN ... RETURNING``)."""
        doomed = unique_keys(keys)
        if not doomed:
            return []

        def work(cursor: Cursor) -> dict[str, Entry]:
            removed = {}
            for chunk in chunks(sorted(doomed), self.in_chunk):
                statement = self._keys_statement("delete", len(chunk))
                for row in cursor.rows_for_keys(statement, chunk):
                    removed[row[0]] = row_to_entry(row)
            return removed

        removed = self._run(work, write=True, frees_space=True)
        return [removed[key] for key in doomed if key in removed]

    def delete_where(self, filter: Filter) -> list[Entry]:
        """Remove every matching entry with one ``DELETE ... WHERE ... RETURNING``."""
        import sqlalchemy as sa

        where = self._where(filter)
        statement = self._compile(
            sa.delete(self.table).where(where).returning(*self._columns), reusable=False
        )
        rows = self._run(lambda cursor: cursor.rows(statement), write=True, frees_space=True)
        return [row_to_entry(row) for row in rows]

    def count(self, filter: Filter | None = None) -> int:
        """Return how many entries match ``filter`` (one ``SELECT count(*)``)."""
        import sqlalchemy as sa

        return self._aggregate(sa.func.count(), filter)

    def total_size(self, filter: Filter | None = None) -> int:
        """Return the summed ``size`` of the matching entries (one ``SELECT sum``)."""
        import sqlalchemy as sa

        return self._aggregate(sa.func.coalesce(sa.func.sum(self.table.c.size), 0), filter)

    def _where(self, filter: Filter | None) -> ColumnElement[bool]:
        """``filter`` validated, then compiled to a WHERE clause of this table."""
        from cacheness.storage._metadata._sqlfilter import compile_filter

        parsed = parse_filter(filter)
        return compile_filter(parsed, self.table, self.dialect_name)

    def _aggregate(self, function: ColumnElement[Any], filter: Filter | None) -> int:
        import sqlalchemy as sa

        where = self._where(filter)
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

        def work(cursor: Cursor) -> tuple[Entry, Entry | None]:
            row = cursor.first(self._get, {"key": src})
            if row is None:
                raise not_found_error(src)
            copy = copied_entry(row_to_entry(row), dst, changes, utc_now())
            if src == dst:  # a copy onto itself keeps its custom rows, once
                return copy, self._put_locked(cursor, copy, overwrite=overwrite, keep_rows=True)
            replaced = self._put_locked(cursor, copy, overwrite=overwrite)
            self._custom.copy_rows(cursor, src, dst)
            return copy, replaced

        return self._run(work, write=True)

    # ------------------------------------------------------------------ custom metadata

    def put_custom(
        self,
        entry: Entry,
        rows: list[CustomMetadataBase],
        *,
        overwrite: bool = True,
        keep_rows: bool = False,
    ) -> Entry | None:
        """Store ``entry`` and its custom metadata rows in one transaction.

        See :meth:`MetadataBackend.put_custom`. The rows' tables are created (or checked)
        first, each in a transaction of its own; then the entry (replacing an old one
        and, unless ``keep_rows``, its rows) and the new rows commit together.
        """
        stored = normalize_entry(entry)
        prepared = self._custom.prepare(rows) if rows else []

        def work(cursor: Cursor) -> Entry | None:
            replaced = self._put_locked(cursor, stored, overwrite=overwrite, keep_rows=keep_rows)
            self._custom.write(cursor, stored.key, prepared)
            return replaced

        replaced = self._run(work, write=True)
        for row in rows:
            row.cache_key = stored.key
        return replaced

    def link_custom_models(self, models: Iterable[type[CustomMetadataBase] | str]) -> None:
        """Create or check the tables of ``models`` (see ``MetadataBackend``)."""
        self._check_open()
        for model in models:
            self._custom.link(model)

    def custom_session(
        self, model: type[CustomMetadataBase] | str
    ) -> AbstractContextManager[Session]:
        """An ORM session on this index's database (see :meth:`MetadataBackend.custom_session`)."""
        self._check_open()
        return self._custom.session(model)

    def query_custom(
        self, model: type[CustomMetadataBase] | str, *where: Any
    ) -> list[CustomMetadataBase]:
        """Return ``model``'s rows matching ``where``, detached, ordered by key and id."""
        self._check_open()
        return self._custom.rows(model, where)

    def custom_keys(self, model: type[CustomMetadataBase] | str, *where: Any) -> list[str]:
        """Return the sorted keys of the entries with a row of ``model`` matching ``where``."""
        self._check_open()
        return self._custom.keys(model, where)

    def migrate_custom_tables(
        self, models: Iterable[type[CustomMetadataBase] | str]
    ) -> dict[str, list[str]]:
        """Create missing tables, add missing nullable columns (see ``MetadataBackend``)."""
        self._check_open()
        return self._custom.migrate(models)

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> tuple[Entry, Entry | None]:
        """Rename ``src`` to ``dst`` atomically, in one transaction."""
        validate_key(src)
        validate_key(dst)

        def work(cursor: Cursor) -> tuple[Entry, Entry | None]:
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
            if old_row is not None:  # the replaced entry's custom rows go with it
                cursor.first(self._delete, {"key": dst})
            # A rename in place: ON UPDATE CASCADE relinks the custom metadata rows.
            renamed = cursor.execute(self._rename_statement(), entry_params(moved) | {"src": src})
            if renamed.rowcount != 1:
                raise Conflict(src)
            return moved, None if old_row is None else row_to_entry(old_row)

        return self._run(work, write=True)
