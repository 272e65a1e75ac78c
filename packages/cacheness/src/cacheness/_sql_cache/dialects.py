"""What differs between SQLite, PostgreSQL and DuckDB: URLs, engines, upserts, locks.

* SQLite: WAL journal, a 30 s busy timeout, write transactions ``BEGIN IMMEDIATE`` (a
  writer waits for the lock up front instead of failing half-way); file locks beside
  the database for single flight. ``:memory:`` shares one connection between threads.
* PostgreSQL (psycopg 3): pooled with ``pool_pre_ping``; advisory locks; an optional
  schema, created when missing, so a SqlCache table can live in a team cache's database.
* DuckDB (``duckdb_engine``): one process may open a database file at a time (DuckDB's
  rule). By default the cache keeps it open; ``multiprocess=True`` opens it for each
  operation under a lock beside the file, so several processes can share it (each
  opening costs milliseconds).

Upserts are ``INSERT ... ON CONFLICT (primary key) DO UPDATE`` on all three.

Example:
    >>> sqlite_url("prices.db")
    'sqlite:///prices.db'
    >>> normalize_url("postgresql://cache@db.internal/cache")
    'postgresql+psycopg://cache@db.internal/cache'
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import xxhash
from sqlalchemy import event
from sqlalchemy.pool import NullPool, StaticPool

from cacheness._sql_cache.locks import (
    AdvisoryFillLocks,
    FileFillLocks,
    FillLocks,
    ProcessExclusive,
    ThreadFillLocks,
    lock_key,
)
from cacheness.storage import advisory_lock_id
from cacheness.storage.errors import BackendUnavailableError, ConfigError

log = logging.getLogger(__name__)

__all__ = ["Database", "duckdb_url", "normalize_url", "open_database", "sqlite_url"]

DIALECTS = ("sqlite", "postgresql", "duckdb")
_BUSY_TIMEOUT_S = 30


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The SQLAlchemy URL of a SQLite file (``":memory:"`` for a private in-memory one)."""
    text = os.fspath(path)
    return "sqlite://" if text in ("", ":memory:") else f"sqlite:///{text}"


def duckdb_url(path: str | os.PathLike[str]) -> str:
    """The SQLAlchemy URL of a DuckDB file (``":memory:"`` for an in-memory one)."""
    text = os.fspath(path)
    return "duckdb:///:memory:" if text in ("", ":memory:") else f"duckdb:///{text}"


def normalize_url(url: str | sa.URL) -> str | sa.URL:
    """A URL with the driver SqlCache uses filled in (``postgresql://`` -> psycopg 3).

    Raises:
        ConfigError: a bare path or a string that is not a URL.
    """
    if isinstance(url, sa.URL):
        return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"db_url must be a SQLAlchemy URL such as 'sqlite:///cache.db', "
            f"'postgresql://host/db' or 'duckdb:///cache.duckdb', got {url!r}; for a file "
            "path use SqlCache.with_sqlite(path) or SqlCache.with_duckdb(path)"
        )
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _sqlite_file(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


class Database:
    """One database as SqlCache uses it: connections, write transactions, fill locks."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        owns_engine: bool,
        fill_locks: FillLocks,
        access_factory: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self.owns_engine = owns_engine
        self.fill_locks = fill_locks
        self._access_factory = access_factory

    @property
    def where(self) -> str:
        """The database's URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def _access(self) -> contextlib.AbstractContextManager[Any]:
        return self._access_factory() if self._access_factory else contextlib.nullcontext()

    @contextlib.contextmanager
    def connect(self, *, outage_errors: bool = True) -> Iterator[sa.Connection]:
        """A connection for reads (its implicit transaction is rolled back at the end).

        Database errors become :class:`BackendUnavailableError` unless ``outage_errors``
        is False (a probe that wants the database's own answer).
        """
        errors = self._unavailable() if outage_errors else contextlib.nullcontext()
        with self._access(), errors, self.engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A write transaction: committed at the end of the block, rolled back on error."""
        with self._access(), self._unavailable(), self.engine.connect() as connection:
            if self.dialect == "sqlite":
                connection = connection.execution_options(sqlite_begin="IMMEDIATE")
            with connection.begin():
                yield connection

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise BackendUnavailableError(
                f"SqlCache cannot use its database {self.where}: {exc.orig or exc}; "
                "retry later (what is stored is not affected)"
            ) from exc

    def upsert(self, table: sa.Table) -> Any:
        """``INSERT ... ON CONFLICT (primary key) DO UPDATE`` of every other column."""
        from sqlalchemy.dialects import postgresql, sqlite

        # duckdb_engine compiles PostgreSQL's statement
        module: Any = sqlite if self.dialect == "sqlite" else postgresql
        statement = module.insert(table)
        keys = [column.name for column in table.primary_key.columns]
        updates = {
            column.name: statement.excluded[column.name]
            for column in table.columns
            if column.name not in keys
        }
        return statement.on_conflict_do_update(index_elements=keys, set_=updates)

    def write_rows(
        self,
        connection: sa.Connection,
        table: sa.Table,
        statement: Any,
        records: list[dict[str, Any]],
        *,
        columnar: bool,
    ) -> None:
        """Upsert ``records`` with ``statement`` (from :meth:`upsert`) in ``connection``.

        DuckDB runs an ``executemany`` row by row, slowly; there, when every column holds
        plain values (``columnar``), the rows go in as one Arrow table registered on the
        connection for the statement: ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.
        """
        if not records:
            return
        if self.dialect == "duckdb" and columnar and len(records) > 1:
            self._duckdb_bulk(connection, table, records)
        else:
            connection.execute(statement, records)

    def _duckdb_bulk(
        self, connection: sa.Connection, table: sa.Table, records: list[dict[str, Any]]
    ) -> None:
        from sqlalchemy.dialects import postgresql

        from cacheness._sql_cache.schema import UtcDateTime
        from cacheness.storage import import_optional

        pa = import_optional("pyarrow", extra="sql", distribution="cacheness")
        names = [column.name for column in table.columns]
        arrays: dict[str, list[Any]] = {}
        for column in table.columns:
            values = [record.get(column.name) for record in records]
            if isinstance(column.type, UtcDateTime):  # stored as naive UTC
                values = [
                    None if value is None else value.astimezone(UTC).replace(tzinfo=None)
                    for value in values
                ]
            arrays[column.name] = values
        # One name per table: a registration a failed write could not remove is replaced
        # by the next write's.
        relation = f"sqlcache_rows_{xxhash.xxh3_64_hexdigest(table.fullname.encode())}"
        raw = connection.connection.dbapi_connection
        assert raw is not None
        raw.register(relation, pa.table(arrays))
        failed = True
        try:
            columns: list[sa.ColumnClause[Any]] = [sa.column(name) for name in names]
            source = sa.select(*columns).select_from(sa.table(relation))
            insert = postgresql.insert(table).from_select(names, source)
            keys = [column.name for column in table.primary_key.columns]
            updates = {name: insert.excluded[name] for name in names if name not in keys}
            connection.execute(insert.on_conflict_do_update(index_elements=keys, set_=updates))
            failed = False
        finally:
            try:
                raw.unregister(relation)
            except Exception:
                if not failed:
                    raise
                # The transaction is aborted: DuckDB refuses everything until the rollback.
                log.debug("the rows of %s stay registered until the next write", table)

    def create(self, metadata: sa.MetaData, schema: str | None) -> None:
        """Create the schema (when missing) and the tables that do not exist yet.

        Processes creating the same tables at once take turns (SQLite: the write lock
        of ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock for the transaction).
        """
        with self.begin() as connection:
            if self.dialect == "postgresql":
                names = ",".join(sorted(table.fullname for table in metadata.sorted_tables))
                key = advisory_lock_id(lock_key(names, "create"))
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            if schema is not None and not sa.inspect(connection).has_schema(schema):
                connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            metadata.create_all(connection, checkfirst=True)

    def dispose(self) -> None:
        """Close the pooled connections (only of an engine SqlCache made itself)."""
        if self.owns_engine:
            self.engine.dispose()


def _sqlite_engine(url: sa.URL, options: Mapping[str, Any]) -> sa.Engine:
    memory = _sqlite_file(url) is None
    extra: dict[str, Any] = {}
    if memory:
        extra = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        extra = {"connect_args": {"timeout": _BUSY_TIMEOUT_S}}
    engine = sa.create_engine(url, **{**extra, **options})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin event says BEGIN
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


def open_database(
    db: str | sa.URL | sa.Engine,
    *,
    engine_options: Mapping[str, Any] | None = None,
    multiprocess: bool = False,
) -> Database:
    """Open ``db`` (a URL or an Engine) for SqlCache.

    Raises:
        ConfigError: not a URL, a database other than SQLite, PostgreSQL or DuckDB, or
            the DuckDB driver without a URL SqlCache understands.
        MissingDependencyError: the driver is not installed (names the extra).
    """
    options = dict(engine_options or {})
    if isinstance(db, sa.Engine):
        engine, owns = db, False
    else:
        url = sa.make_url(normalize_url(db))
        backend = url.get_backend_name()
        if backend not in DIALECTS:
            raise ConfigError(
                f"SqlCache works on SQLite, PostgreSQL and DuckDB, not {backend!r} ({url!r})"
            )
        _check_driver(backend)
        if backend == "sqlite":
            engine = _sqlite_engine(url, options)
        elif backend == "postgresql":
            engine = sa.create_engine(url, **{"pool_pre_ping": True, **options})
        else:
            memory = url.database in (None, "", ":memory:")
            if memory:
                options = {"poolclass": StaticPool, **options}
            elif multiprocess:
                options = {"poolclass": NullPool, **options}
            engine = sa.create_engine(url, **options)
        owns = True
    name = engine.dialect.name
    if name not in DIALECTS:
        raise ConfigError(f"SqlCache works on SQLite, PostgreSQL and DuckDB, not {name!r}")
    database = engine.url.database
    file = None if database in (None, "", ":memory:") else Path(database)
    if name == "sqlite":
        file = _sqlite_file(engine.url)
    access_factory: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
    if name == "postgresql":
        locks: FillLocks = AdvisoryFillLocks(engine)
    elif file is None:
        locks = ThreadFillLocks()
        shared = threading.RLock()  # one connection shared by the threads
        access_factory = lambda: shared  # noqa: E731
    else:
        directory = Path(f"{file}.sqlcache-locks")
        locks = FileFillLocks(directory)
        if name == "duckdb" and multiprocess:
            exclusive = ProcessExclusive(directory)
            access_factory = exclusive.hold
    return Database(engine, owns_engine=owns, fill_locks=locks, access_factory=access_factory)


def _check_driver(backend: str) -> None:
    from cacheness.storage import import_optional

    if backend == "duckdb":
        import_optional(
            "duckdb_engine", extra="duckdb", distribution="cacheness", purpose="SqlCache on DuckDB"
        )
    elif backend == "postgresql":
        import_optional(
            "psycopg", extra="cloud", distribution="cacheness", purpose="SqlCache on PostgreSQL"
        )
