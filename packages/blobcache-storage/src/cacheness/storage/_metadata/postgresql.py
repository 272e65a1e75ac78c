"""``postgresql``: the metadata index in a PostgreSQL table, shared by many hosts.

psycopg 3, a pooled engine with ``pool_pre_ping``, a configurable table name and schema
(several caches can share one database), retries with backoff on dropped connections,
serialization failures and deadlocks, :class:`~cacheness.storage.errors.BackendUnavailableError`
when the server is gone, advisory locks for ``named_lock``. The shared schema,
statements and transaction loop are in ``sql.py``; the one migration so far (layout 1 ->
2, ``metadata_text``) is here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cacheness.storage._locks import advisory_lock_id, poll_until
from cacheness.storage._metadata._migrations import FormatMigrations
from cacheness.storage._metadata._sqlrows import COLUMNS, METADATA_TEXT, SCHEMA_VERSIONS
from cacheness.storage._metadata.sql import (
    DEFAULT_TABLE,
    Cursor,
    PsycopgCursor,
    Run,
    Signal,
    SqlMetadataBackend,
    SqlStep,
    Verdict,
)
from cacheness.storage._optional import import_optional
from cacheness.storage._pairing import Scope
from cacheness.storage._telemetry import Attributes, instrumentation, register_gauges
from cacheness.storage.errors import BackendUnavailableError, ConfigError, MetadataError

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.elements import ColumnElement

    from cacheness.storage._metadata._sqlcustom import ChildTable, TableShape

log = logging.getLogger(__name__)

T = TypeVar("T")

_MIGRATIONS: Final[FormatMigrations[SqlStep]] = FormatMigrations(
    "PostgreSQL metadata table schema", SCHEMA_VERSIONS["postgresql"]
)
"""The steps that upgrade an older PostgreSQL table, one schema version each (1 -> 2:
:func:`_exact_metadata_text`)."""


class _ConnectFailed(Signal):
    """No connection could be had from the pool (judged: retried, then unreachable)."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(f"connecting failed ({reason})", reason)


class _Dropped(Signal):
    """The server dropped the connection or the transaction (an ``OperationalError``)."""

    def __init__(self, reason: BaseException, *, broken: bool) -> None:
        super().__init__(str(reason), reason)
        self.broken = broken


class PostgresMetadataBackend(SqlMetadataBackend):
    """The metadata index in a PostgreSQL table, shared by many hosts.

    Args:
        url: a SQLAlchemy URL (``postgresql://user@host/db``; the psycopg 3 driver is
            used) or an existing :class:`sqlalchemy.engine.Engine` built on psycopg
            (shared, not disposed on close).
        table: name of the entries table; caches sharing a database use distinct names.
        schema: database schema of the tables (default: the connection's search path).
        pool_size: connections kept in the pool.
        max_overflow: connections opened beyond ``pool_size`` when needed.
        pool_timeout: seconds to wait for a connection of the pool.
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
    migrations: ClassVar[FormatMigrations[SqlStep]] = _MIGRATIONS

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
        self._pool_lock = threading.Lock()
        self._pool_events = {"waits": 0, "timeouts": 0}
        _LIVE.add(self)
        instrumentation()  # with a meter provider set, its pool gauges exist from now on
        self.retries = int(retries)
        self.retry_backoff = float(retry_backoff)
        self._pid = os.getpid()
        self._engine_dialect = engine.dialect
        super().__init__(table=table, schema=schema)
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

    def _complete_schema(self, cursor: Cursor) -> None:
        self._guard_metadata_text(cursor)

    def _guard_metadata_text(self, cursor: Cursor) -> None:
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

    def _make_dialect(self) -> Dialect:
        return self._engine_dialect

    # ------------------------------------------------------------------ custom metadata

    def _custom_engine(self) -> sa.engine.Engine:
        self._check_open()
        if self._pid != os.getpid():  # forked: the parent's pooled connections are not ours
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        if self.schema is None:
            return self.engine
        return self.engine.execution_options(schema_translate_map={None: self.schema})

    def _regclass(self, name: str, schema: str | None) -> str:
        preparer = self._dialect.identifier_preparer
        quoted = preparer.quote(name)
        return quoted if schema is None else f"{preparer.quote_schema(schema)}.{quoted}"

    def _table_shape(self, cursor: Cursor, name: str, schema: str | None) -> TableShape | None:
        from cacheness.storage._metadata._sqlcustom import TableShape

        table = self._regclass(name, schema)
        columns = cursor.raw.execute(
            "SELECT attname, NOT attnotnull FROM pg_attribute WHERE attrelid = "
            "to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        ).fetchall()
        if not columns:
            return None
        entries = self._regclass(self.table.name, self.table.schema)
        linked = cursor.raw.execute(
            "SELECT 1 FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
            "AND a.attnum = c.conkey[1] WHERE c.contype = 'f' AND c.confdeltype = 'c' AND "
            "c.conrelid = to_regclass(%s) AND c.confrelid = to_regclass(%s) AND "
            "a.attname = 'cache_key'",
            (table, entries),
        ).fetchone()
        return TableShape({row[0]: bool(row[1]) for row in columns}, linked is not None)

    def _child_tables(self, cursor: Cursor) -> list[ChildTable]:
        from cacheness.storage._metadata._sqlcustom import ChildTable

        quote = self._dialect.identifier_preparer.quote
        entries = self._regclass(self.table.name, self.table.schema)
        links = cursor.raw.execute(
            "SELECT c.conrelid, c.conrelid::regclass::text, a.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'f' AND c.confrelid = to_regclass(%s) ORDER BY 2",
            (entries,),
        ).fetchall()
        children = []
        for oid, name, link in links:
            columns = cursor.raw.execute(
                "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 "
                "AND NOT a.attisdropped AND a.attname <> %s AND NOT EXISTS (SELECT 1 FROM "
                "pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = "
                "ANY(i.indkey)) ORDER BY a.attnum",
                (oid, link),
            ).fetchall()
            children.append(ChildTable(name, quote(link), tuple(quote(row[0]) for row in columns)))
        return children

    def _insert_construct(self) -> Any:
        return postgresql.insert(self.table)

    def _info_exists(self, cursor: Cursor) -> bool:
        name = self._dialect.identifier_preparer.format_table(self.info_table)
        row = cursor.raw.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        return row is not None and row[0] is not None

    def _lock_ddl(self, cursor: Cursor) -> None:
        schema = self.table.schema
        if schema is not None:
            found = cursor.raw.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if found is None:
                quoted = self._dialect.identifier_preparer.quote(schema)
                cursor.raw.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        lock_id = advisory_lock_id(f"cacheness:{self._fullname}")
        cursor.raw.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))

    # ------------------------------------------------------------------ transactions

    def _describe(self) -> str:
        url = self.engine.url
        return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"

    def _checkout(self) -> Any:
        if self._pid != os.getpid():  # forked: the parent's pooled connections are not ours
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        pool = self.engine.pool
        max_overflow = getattr(pool, "_max_overflow", -1)  # a QueuePool's; others never wait
        if (
            max_overflow >= 0
            and _pool_figure(pool, "checkedin") == 0
            and _pool_figure(pool, "overflow") >= max_overflow
        ):
            with self._pool_lock:  # every connection is in use: this checkout waits
                self._pool_events["waits"] += 1
        return self.engine.raw_connection()

    def stats(self) -> dict[str, int]:
        """Return the connection pool's state: what to watch when requests queue.

        ``size`` (connections kept open), ``checked_out`` (in use), ``checked_in``
        (idle), ``overflow`` (open beyond ``pool_size``), ``waits`` (checkouts that found
        every connection in use and waited) and ``timeouts`` (of those, the ones that
        gave up after ``pool_timeout``). Also the gauges ``cacheness.storage.pool.*``.
        """
        pool = self.engine.pool
        with self._pool_lock:
            events = dict(self._pool_events)
        return {
            "size": _pool_figure(pool, "size"),
            "checked_out": _pool_figure(pool, "checkedout"),
            "checked_in": _pool_figure(pool, "checkedin"),
            "overflow": max(0, _pool_figure(pool, "overflow")),
            **events,
        }

    def _attempt(self, work: Callable[[Cursor], T], write: bool) -> T:
        self._check_open()
        try:
            fairy = self._checkout()
        except sa.exc.TimeoutError as exc:
            with self._pool_lock:
                self._pool_events["timeouts"] += 1
            log.warning("%s: no pooled connection became free in time", self._describe())
            raise BackendUnavailableError(
                f"{self._describe()}: no pooled connection became free ({exc}); raise "
                "pool_size/max_overflow or hold fewer connections"
            ) from exc
        except (sa.exc.DBAPIError, self._psycopg.Error) as exc:
            raise _ConnectFailed(getattr(exc, "orig", None) or exc) from exc
        conn = fairy.driver_connection
        autocommit = conn.autocommit
        try:
            if not autocommit:
                conn.autocommit = True
            cursor = conn.cursor()
            if write:
                cursor.execute("BEGIN")
            try:
                result = work(PsycopgCursor(cursor))
            except BaseException:
                if write and not conn.broken:
                    cursor.execute("ROLLBACK")
                raise
            if write:
                try:
                    cursor.execute("COMMIT")
                except self._psycopg.Error as exc:
                    raise BackendUnavailableError(
                        f"{self._describe()}: the connection failed while committing "
                        f"({exc}); the change may or may not have been saved"
                    ) from exc
            return result
        except self._psycopg.OperationalError as exc:
            raise _Dropped(exc, broken=conn.broken or conn.closed) from exc
        finally:
            self._release(fairy, conn, autocommit)

    def _judge(self, exc: Exception, run: Run, can_retry: bool) -> Verdict | BaseException | None:
        psycopg = self._psycopg
        if isinstance(exc, _ConnectFailed):
            if can_retry:
                return Verdict.RETRY
            return BackendUnavailableError(
                f"{self._describe()} is unreachable: {exc.reason}; check that the server "
                "is up and the URL, credentials and network are right"
            )
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return Verdict.CONFLICT  # a concurrent insert of the same key: read again
        if isinstance(exc, _Dropped):
            if can_retry:
                return Verdict.RETRY
            if exc.broken:
                return BackendUnavailableError(
                    f"{self._describe()}: connection lost ({exc.reason}) after "
                    f"{self.retries} retries"
                )
            return MetadataError(f"{self._describe()}: {exc.reason}")
        if isinstance(exc, psycopg.Error):
            return MetadataError(f"{self._describe()}: {exc}")
        return None

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
        key = advisory_lock_id(f"cacheness-lock:{self._fullname}:{name}")
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


_LIVE: weakref.WeakSet[PostgresMetadataBackend] = weakref.WeakSet()
"""Open backends, whose pools the ``cacheness.storage.pool.*`` gauges read."""


def _pool_figure(pool: Any, method: str) -> int:
    """One figure of a SQLAlchemy pool (0 for a pool without it, e.g. ``NullPool``)."""
    figure = getattr(pool, method, None)
    return int(figure()) if callable(figure) else 0


def _pool_readings() -> Iterator[tuple[str, float, Attributes]]:
    for backend in list(_LIVE):
        if backend._closed:
            continue
        attributes = {"cacheness.backend": "postgresql", "cacheness.pool": backend._describe()}
        for name, value in backend.stats().items():
            if name != "checked_in":
                yield f"cacheness.storage.pool.{name}", value, attributes


register_gauges(_pool_readings)


@_MIGRATIONS.register(from_version=1)
def _exact_metadata_text(backend: SqlMetadataBackend, cursor: Cursor) -> None:
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
