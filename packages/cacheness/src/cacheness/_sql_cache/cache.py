"""SqlCache: a pull-through cache of tabular data that fetches only what is missing.

Rows live in a real SQL table (SQLite, PostgreSQL or DuckDB). ``get_data`` reads the
requested rows with one indexed query, works out which keys or sub-ranges are missing
or expired, calls the fetcher once per gap, upserts the answers in one transaction and
returns the requested rows, sorted by the key, as a DataFrame. See the "SqlCache" docs
page for the whole story; :mod:`cacheness._sql_cache` lists the modules behind it.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from cacheness._sql_cache.adapters import FunctionAdapter, SqlCacheAdapter
from cacheness._sql_cache.dialects import Database, duckdb_url, open_database, sqlite_url
from cacheness._sql_cache.errors import (
    FetcherError,
    InvalidFetchedDataError,
    InvalidQueryError,
    SqlCacheError,
)
from cacheness._sql_cache.frames import FrameReader, PreparedRows, prepare_rows
from cacheness._sql_cache.gaps import FetchRequest, GapFinder, missing_runs
from cacheness._sql_cache.increments import (
    EPOCH_UTC,
    Axis,
    BusinessDays,
    parse_ordered_increment,
    parse_time_increment,
)
from cacheness._sql_cache.locks import bucket_names, lock_key
from cacheness._sql_cache.query import (
    Between,
    Equals,
    OneOf,
    Query,
    Spec,
    fetch_kwargs,
    normalize,
    parse_kwargs,
    to_parsed,
)
from cacheness._sql_cache.result import DataFrame, SqlCacheResult, SqlCacheStatus
from cacheness._sql_cache.schema import (
    CACHED_AT,
    EXPIRES_AT,
    RANGE_END,
    RANGE_START,
    CacheTables,
    UtcDateTime,
    build_table,
    prepare_tables,
)
from cacheness.storage import import_optional
from cacheness.storage.errors import ConfigError

__all__ = ["GapDetector", "SqlCache"]

log = logging.getLogger(__name__)

GapDetector = Callable[[dict[str, Any], DataFrame, "SqlCache"], list[dict[str, Any]]]

_CHUNK = 500  # values per IN (...) list
_OPTIONS = frozenset(
    {
        "data_adapter",
        "data_fetcher",
        "ttl_seconds",
        "time_increment",
        "ordered_increment",
        "range_column",
        "gap_detector",
        "stale_if_error",
        "settle",
        "tail_overlap",
        "lock_timeout",
        "schema",
        "multiprocess",
        "engine_options",
        "clock",
    }
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ttl(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"ttl_seconds must be a number of seconds, a timedelta, or 0/None for never; "
            f"got {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"ttl_seconds must be >= 0 (0 or None: never expires), got {value!r}")
    return float(value) or None


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class SqlCache:
    """A pull-through cache of rows in a SQL table: fetch only what is missing.

    Args:
        db_url: a SQLAlchemy URL (``sqlite:///prices.db``, ``postgresql://host/db``,
            ``duckdb:///prices.duckdb``) or an ``Engine``. Paths: use the builders.
        table: a :class:`sqlalchemy.Table` with a primary key, or a table name with the
            columns as keyword arguments (``price=Float``) and ``primary_keys=[...]``,
            or None to take the adapter's table.
        data_adapter: a :class:`SqlCacheAdapter`; or give ``data_fetcher`` instead.
        data_fetcher: a function called with a gap's parameters, returning a DataFrame.
        primary_keys: the key columns when the table is built from keyword arguments.
        ttl_seconds: how long fetched rows (and known-empty answers) stay fresh;
            ``0`` or None: forever. A ``timedelta`` is accepted. Default one day.
        time_increment: the step of a Date/DateTime range column: a ``timedelta``,
            seconds, or ``"5min"``, ``"1h"``, ``"1D"``, ``"1B"`` (business days).
            Date columns default to one day.
        ordered_increment: the step of an integer range column (default 1 when the
            range column is an integer).
        range_column: the key column asked for by ranges; default the last Date or
            DateTime key column (or, with ``ordered_increment``, the last integer one).
        gap_detector: ``detector(query_params, cached_frame, cache) -> [fetch kwargs]``
            replaces the built-in gap detection (``cache.detect_gaps`` is the built-in).
        stale_if_error: when the fetcher raises, return what the table has (expired
            rows included) with the status ``STALE``/``SOURCE_FAILED`` instead of raising.
        settle: rows whose range value is within this window of now are provisional:
            stored, but fetched again on the next call (an unfinished daily bar).
        tail_overlap: when a gap continues a series that has fresh rows, also refetch
            this much before it (a count of increments, or a duration), for sources
            that revise recent history.
        lock_timeout: seconds to wait for another caller filling the same series
            before fetching anyway (None: wait as long as it takes). Default 300.
        schema: the database schema of the tables (PostgreSQL, DuckDB).
        multiprocess: DuckDB files only: open the database per operation so several
            processes can share it (SQLite and PostgreSQL always can).
        engine_options: keyword arguments for :func:`sqlalchemy.create_engine`.
        clock: returns the current time, timezone-aware (tests pass a fake one).
        **columns: the table's columns, when ``table`` is a name.

    Raises:
        ConfigError: anything above that does not fit (no primary key, an increment
            that does not fit the range column, both or neither fetcher kinds, ...).
        MissingDependencyError: pandas, or the database's driver, is not installed.

    Example:
        >>> import pandas as pd
        >>> from sqlalchemy import Float, Integer, String
        >>> calls = []
        >>> def fetch_users(user_id):
        ...     calls.append(user_id)
        ...     return pd.DataFrame({"user_id": user_id, "name": [f"u{i}" for i in user_id]})
        >>> cache = SqlCache.for_lookup_table(":memory:", table_name="users",
        ...     primary_keys=["user_id"], data_fetcher=fetch_users,
        ...     user_id=Integer, name=String)
        >>> cache.get_data(user_id=[1, 2])[["user_id", "name"]].to_dict("list")
        {'user_id': [1, 2], 'name': ['u1', 'u2']}
        >>> cache.get_data(user_id=[2, 3])["name"].tolist()
        ['u2', 'u3']
        >>> calls  # the second call fetched only user 3
        [[1, 2], [3]]
        >>> cache.close()
    """

    def __init__(
        self,
        db_url: str | sa.URL | sa.Engine,
        table: sa.Table | str | None = None,
        data_adapter: SqlCacheAdapter | None = None,
        *,
        data_fetcher: Callable[..., DataFrame] | None = None,
        primary_keys: Sequence[str] | None = None,
        ttl_seconds: float | timedelta | None = 86400,
        time_increment: timedelta | float | str | None = None,
        ordered_increment: int | None = None,
        range_column: str | None = None,
        gap_detector: GapDetector | None = None,
        stale_if_error: bool = False,
        settle: timedelta | None = None,
        tail_overlap: int | timedelta | None = None,
        lock_timeout: float | None = 300.0,
        schema: str | None = None,
        multiprocess: bool = False,
        engine_options: Mapping[str, Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        **columns: Any,
    ) -> None:
        import_optional("pandas", extra="sql", distribution="cacheness", purpose="SqlCache")
        user_table = self._table_from(table, data_adapter, primary_keys, columns, schema)
        if (data_adapter is None) == (data_fetcher is None):
            raise ConfigError(
                "give SqlCache exactly one source of rows: data_adapter=SqlCacheAdapter() "
                "or data_fetcher=function"
            )
        if data_adapter is not None and not isinstance(data_adapter, SqlCacheAdapter):
            raise ConfigError(
                f"data_adapter must be a SqlCacheAdapter, got {type(data_adapter).__name__}"
            )
        self.adapter: SqlCacheAdapter = data_adapter or FunctionAdapter(
            user_table, _fetcher(data_fetcher)
        )
        if gap_detector is not None and not callable(gap_detector):
            raise ConfigError(f"gap_detector must be callable, got {type(gap_detector).__name__}")
        self.ttl_seconds = _ttl(ttl_seconds)
        self.time_increment = (
            None if time_increment is None else parse_time_increment(time_increment)
        )
        self.ordered_increment = (
            None if ordered_increment is None else parse_ordered_increment(ordered_increment)
        )
        self.tables: CacheTables = prepare_tables(
            user_table,
            schema=schema,
            range_column=range_column,
            ordered=self.ordered_increment is not None,
        )
        self.axis = self._axis()
        self.gap_detector = gap_detector
        self.stale_if_error = bool(stale_if_error)
        self.settle = self._settle(settle)
        self.tail_overlap = tail_overlap
        tail_steps = self._tail_steps(tail_overlap)
        if lock_timeout is not None and not lock_timeout >= 0:
            raise ConfigError(f"lock_timeout must be >= 0 seconds or None, got {lock_timeout!r}")
        self.lock_timeout = lock_timeout
        self._clock = clock or _utc_now
        self._finder = GapFinder(self.tables, self.axis, tail_steps)
        self._db: Database = open_database(
            db_url, engine_options=engine_options, multiprocess=multiprocess
        )
        if schema is not None and self._db.dialect == "sqlite":
            self._db.dispose()
            raise ConfigError("schema= is for PostgreSQL and DuckDB; SQLite has none")
        self._reader = FrameReader(self.tables, self._db.engine.dialect)
        self._selects: dict[tuple[tuple[str, type], ...], sa.Select[Any]] = {}
        self._upsert_rows = self._db.upsert(self.tables.data)
        self._upsert_empty = self._db.upsert(self.tables.empty)
        self._columnar = "object" not in self.tables.kinds.values()
        self._stats_lock = threading.Lock()
        self._counters = dict.fromkeys(
            ("hits", "misses", "fetch_calls", "rows_fetched", "fetch_errors", "stale_served"), 0
        )
        self._closed = False
        try:
            self._db.create(self.tables.data.metadata, schema)
            self._check_existing_table()
        except BaseException:
            self._db.dispose()
            raise

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _table_from(
        table: sa.Table | str | None,
        adapter: SqlCacheAdapter | None,
        primary_keys: Sequence[str] | None,
        columns: Mapping[str, Any],
        schema: str | None,
    ) -> sa.Table:
        if isinstance(table, str):
            if primary_keys is None:
                raise ConfigError(
                    f"table {table!r} is built from keyword arguments: name its key columns "
                    "with primary_keys=[...]"
                )
            return build_table(table, primary_keys, columns, schema=schema)
        if columns:
            raise ConfigError(
                f"unknown SqlCache arguments {sorted(columns)}: columns as keyword "
                "arguments need a table name (table='prices', price=Float, ...)"
            )
        if table is None:
            if adapter is None:
                raise ConfigError(
                    "SqlCache needs a table: a sqlalchemy.Table, a table name with columns, "
                    "or a data_adapter whose get_table_definition() returns one"
                )
            table = adapter.get_table_definition()
        if not isinstance(table, sa.Table):
            raise ConfigError(
                f"table must be a sqlalchemy.Table or a table name, got {type(table).__name__}"
            )
        return table

    def _axis(self) -> Axis | None:
        column = self.tables.range_column
        if column is None:
            if self.time_increment is not None or self.ordered_increment is not None:
                raise ConfigError(
                    f"time_increment/ordered_increment step a range column, and table "
                    f"{self.tables.data.name!r} has no Date, DateTime or integer key column "
                    "to range over"
                )
            return None
        kind = self.tables.kinds[column]
        assert kind in ("date", "utc", "naive", "int")
        if kind == "int":
            if self.time_increment is not None:
                raise ConfigError(
                    f"the range column {column!r} holds integers: step it with "
                    "ordered_increment, not time_increment"
                )
            return Axis.for_kind(kind, self.ordered_increment or 1)
        if self.ordered_increment is not None:
            raise ConfigError(
                f"the range column {column!r} holds {kind} values: step it with "
                "time_increment, not ordered_increment"
            )
        if self.time_increment is None:
            if kind != "date":
                return None  # ranges of it need a time_increment (said when asked)
            return Axis.for_kind(kind, timedelta(days=1))
        return Axis.for_kind(kind, self.time_increment)

    def _settle(self, settle: timedelta | None) -> timedelta | None:
        if settle is None:
            return None
        if not isinstance(settle, timedelta) or settle < timedelta(0):
            raise ConfigError(f"settle must be a non-negative timedelta, got {settle!r}")
        column = self.tables.range_column
        if column is None or self.tables.kinds[column] not in ("date", "utc", "naive"):
            raise ConfigError("settle needs a Date or DateTime range column")
        return settle

    def _tail_steps(self, overlap: int | timedelta | None) -> int:
        if overlap is None:
            return 0
        if self.axis is None:
            raise ConfigError("tail_overlap needs a range column with an increment")
        if isinstance(overlap, bool) or not isinstance(overlap, int | timedelta):
            raise ConfigError(
                f"tail_overlap is a count of increments or a timedelta, got {overlap!r}"
            )
        if isinstance(overlap, timedelta) and self.axis.kind == "int":
            raise ConfigError("tail_overlap of an integer range column is a count, not a time")
        steps = self.axis.steps(overlap)
        if steps < 0:
            raise ConfigError(f"tail_overlap must not be negative, got {overlap!r}")
        return steps

    def _check_existing_table(self) -> None:
        columns = list(self.tables.data.columns)
        probe = sa.select(*columns).limit(0)
        empty_probe = sa.select(*self.tables.empty.columns).limit(0)
        try:
            with self._db.connect(outage_errors=False) as connection:
                connection.execute(probe).fetchall()
                connection.execute(empty_probe).fetchall()
        except sa.exc.DBAPIError as exc:
            raise ConfigError(
                f"table {self.tables.name!r} exists in {self._db.where} with other columns "
                f"than SqlCache expects ({', '.join(c.name for c in columns)}): {exc.orig}; "
                "use another table_name, or drop the old table"
            ) from exc

    # ------------------------------------------------------------------ builders
    @staticmethod
    def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        options = {name: kwargs.pop(name) for name in list(kwargs) if name in _OPTIONS}
        return options, kwargs

    @staticmethod
    def _db_for(db: str | Any, default: str) -> str | sa.URL | sa.Engine:
        if isinstance(db, sa.Engine | sa.URL) or (isinstance(db, str) and "://" in db):
            return db
        return duckdb_url(db) if default == "duckdb" else sqlite_url(db)

    @classmethod
    def with_sqlite(
        cls,
        db_path: str | Any = ":memory:",
        table: sa.Table | str | None = None,
        data_adapter: SqlCacheAdapter | None = None,
        **options: Any,
    ) -> SqlCache:
        """A SqlCache in a SQLite file (``":memory:"``: in memory, this process only).

        Other arguments as for :class:`SqlCache`.

        Example:
            >>> import sqlalchemy as sa, pandas as pd
            >>> t = sa.Table("t", sa.MetaData(), sa.Column("k", sa.String, primary_key=True))
            >>> with SqlCache.with_sqlite(":memory:", t,
            ...         data_fetcher=lambda k: pd.DataFrame({"k": [k]})) as cache:
            ...     cache.get_data(k="a")["k"].tolist()
            ['a']
        """
        return cls(sqlite_url(db_path), table, data_adapter, **options)

    @classmethod
    def with_postgresql(
        cls,
        db_url: str | sa.URL,
        table: sa.Table | str | None = None,
        data_adapter: SqlCacheAdapter | None = None,
        *,
        schema: str | None = None,
        **options: Any,
    ) -> SqlCache:
        """A SqlCache in a PostgreSQL database (``postgresql://user@host/db``).

        ``schema`` puts the tables in that schema (created when missing), e.g. beside
        a team cache's index in the same database. Other arguments as for
        :class:`SqlCache`. Needs psycopg (``pip install "cacheness[cloud]"``).

        Example: the section "Beside a team cache in PostgreSQL" of the SqlCache docs
        page (run by the tests against a real server)::

            prices = SqlCache.with_postgresql(
                "postgresql://cache@db.internal/cache", "daily_prices", data_fetcher=api,
                primary_keys=["symbol", "date"], schema="market_data",
                symbol=String(12), date=Date, close=Float, volume=Integer)
        """
        return cls(db_url, table, data_adapter, schema=schema, **options)

    @classmethod
    def with_duckdb(
        cls,
        db_path: str | Any = ":memory:",
        table: sa.Table | str | None = None,
        data_adapter: SqlCacheAdapter | None = None,
        *,
        multiprocess: bool = False,
        **options: Any,
    ) -> SqlCache:
        """A SqlCache in a DuckDB file (``pip install "cacheness[duckdb]"``).

        DuckDB lets one process open a file at a time; ``multiprocess=True`` opens it
        for each operation under a lock beside it, so processes can share it.
        Other arguments as for :class:`SqlCache`.

        Example:
            >>> import pandas as pd
            >>> t = sa.Table("t", sa.MetaData(), sa.Column("k", sa.String, primary_key=True))
            >>> with SqlCache.with_duckdb(":memory:", t,
            ...         data_fetcher=lambda k: pd.DataFrame({"k": [k]})) as cache:
            ...     cache.get_result(k="a").status.value
            'fetched'
        """
        return cls(duckdb_url(db_path), table, data_adapter, multiprocess=multiprocess, **options)

    @classmethod
    def for_lookup_table(
        cls,
        db: str | Any,
        table_name: str = "lookup_cache",
        primary_keys: Sequence[str] | None = None,
        data_fetcher: Callable[..., DataFrame] | None = None,
        ttl_seconds: float | timedelta | None = 43200,
        **columns: Any,
    ) -> SqlCache:
        """A cache of records looked up by key (user profiles, product details).

        ``db`` is a path (SQLite) or a URL. Columns are keyword arguments
        (``user_id=Integer, name=String``); ``primary_keys`` defaults to the first.
        The fetcher is called with the missing keys (a list when the caller asked
        with a list). SqlCache options (``stale_if_error=``, ``clock=``, ...) may be
        given as keyword arguments too. TTL: 12 hours.

        Example:
            >>> import pandas as pd
            >>> def fetch(sku):
            ...     return pd.DataFrame({"sku": sku, "price": [9.5] * len(sku)})
            >>> with SqlCache.for_lookup_table(":memory:", table_name="products",
            ...         primary_keys=["sku"], data_fetcher=fetch,
            ...         sku=sa.String(20), price=sa.Float) as products:
            ...     products.get_data(sku=["b-2", "a-1"])["sku"].tolist()
            ['a-1', 'b-2']
        """
        options, columns = cls._split(columns)
        if data_fetcher is None:
            raise ConfigError("for_lookup_table needs data_fetcher=function")
        keys = list(primary_keys) if primary_keys else list(columns)[:1]
        return cls(
            cls._db_for(db, "sqlite"),
            table_name,
            data_fetcher=data_fetcher,
            primary_keys=keys,
            ttl_seconds=ttl_seconds,
            **options,
            **columns,
        )

    @classmethod
    def for_analytics_table(
        cls,
        db: str | Any,
        table_name: str = "analytics_cache",
        primary_keys: Sequence[str] | None = None,
        data_fetcher: Callable[..., DataFrame] | None = None,
        ttl_seconds: float | timedelta | None = 43200,
        **columns: Any,
    ) -> SqlCache:
        """Like :meth:`for_lookup_table`, for analytical tables: a path means DuckDB.

        Example (a URL opens any database):
            >>> import pandas as pd
            >>> with SqlCache.for_analytics_table("sqlite://", primary_keys=["day"],
            ...         data_fetcher=lambda day: pd.DataFrame({"day": [day], "sales": [3]}),
            ...         day=sa.Date, sales=sa.Integer) as sales:
            ...     int(sales.get_data(day="2024-05-01")["sales"].iloc[0])
            3
        """
        options, columns = cls._split(columns)
        if data_fetcher is None:
            raise ConfigError("for_analytics_table needs data_fetcher=function")
        keys = list(primary_keys) if primary_keys else list(columns)[:1]
        return cls(
            cls._db_for(db, "duckdb"),
            table_name,
            data_fetcher=data_fetcher,
            primary_keys=keys,
            ttl_seconds=ttl_seconds,
            **options,
            **columns,
        )

    @classmethod
    def _series_table(
        cls,
        db: str | Any,
        default: str,
        table_name: str,
        symbol_column: str,
        date_column: str,
        data_fetcher: Callable[..., DataFrame] | None,
        ttl_seconds: float | timedelta | None,
        time_increment: timedelta | float | str,
        columns: dict[str, Any],
    ) -> SqlCache:
        options, columns = cls._split(columns)
        if data_fetcher is None:
            raise ConfigError("a timeseries cache needs data_fetcher=function")
        increment = parse_time_increment(time_increment)
        daily = isinstance(increment, BusinessDays) or not increment % timedelta(days=1)
        spec = {
            symbol_column: sa.String,
            date_column: sa.Date if daily else UtcDateTime,
            **columns,
        }
        return cls(
            cls._db_for(db, default),
            table_name,
            data_fetcher=data_fetcher,
            primary_keys=[symbol_column, date_column],
            ttl_seconds=ttl_seconds,
            time_increment=time_increment,
            **options,
            **spec,
        )

    @classmethod
    def for_timeseries(
        cls,
        db: str | Any,
        table_name: str = "timeseries_cache",
        symbol_column: str = "symbol",
        date_column: str = "date",
        data_fetcher: Callable[..., DataFrame] | None = None,
        ttl_seconds: float | timedelta | None = 86400,
        time_increment: timedelta | float | str = "1D",
        **columns: Any,
    ) -> SqlCache:
        """A cache of time series keyed by ``symbol`` and ``date`` (a path means DuckDB).

        Asked with ``get_data(symbol=..., start_date=..., end_date=...)``; the fetcher
        gets ``symbol``, ``start_date`` and ``end_date`` of each gap. The date column
        is a Date for daily increments (``"1D"``, ``"1B"``), a timezone-aware UTC
        DateTime for finer ones (``"5min"``). Value columns are keyword arguments
        (``close=Float``). TTL: one day.

        Example:
            >>> import pandas as pd
            >>> def bars(symbol, start_date, end_date):
            ...     days = pd.bdate_range(start_date, end_date)
            ...     return pd.DataFrame({"date": days, "close": 1.0})
            >>> with SqlCache.for_timeseries("sqlite://", data_fetcher=bars,
            ...                              time_increment="1B", close=sa.Float) as prices:
            ...     len(prices.get_data(symbol="X", start_date="2024-01-01",
            ...                         end_date="2024-01-14"))
            10
        """
        return cls._series_table(
            db,
            "duckdb",
            table_name,
            symbol_column,
            date_column,
            data_fetcher,
            ttl_seconds,
            time_increment,
            columns,
        )

    @classmethod
    def for_realtime_timeseries(
        cls,
        db: str | Any,
        table_name: str = "realtime_timeseries_cache",
        symbol_column: str = "symbol",
        date_column: str = "date",
        data_fetcher: Callable[..., DataFrame] | None = None,
        ttl_seconds: float | timedelta | None = 3600,
        time_increment: timedelta | float | str = "1D",
        **columns: Any,
    ) -> SqlCache:
        """Like :meth:`for_timeseries` for recent data: a path means SQLite; TTL one hour.

        Example:
            >>> cache = SqlCache.for_realtime_timeseries(":memory:", data_fetcher=print,
            ...                                          time_increment="5min")
            >>> cache.primary_keys, cache.ttl_seconds, str(cache.table.c.date.type)
            (('symbol', 'date'), 3600.0, 'DATETIME')
            >>> cache.close()
        """
        return cls._series_table(
            db,
            "sqlite",
            table_name,
            symbol_column,
            date_column,
            data_fetcher,
            ttl_seconds,
            time_increment,
            columns,
        )

    # ------------------------------------------------------------------ properties
    @property
    def table(self) -> sa.Table:
        """The cached table as SqlCache created it (with ``cached_at``/``expires_at``)."""
        return self.tables.data

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine of the database."""
        return self._db.engine

    @property
    def primary_keys(self) -> tuple[str, ...]:
        """The table's key columns, in order."""
        return self.tables.primary_keys

    def now(self) -> datetime:
        """The current time from the cache's clock (timezone-aware, UTC)."""
        now = self._clock()
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise ConfigError(f"the clock must return a timezone-aware datetime, got {now!r}")
        return now.astimezone(UTC)

    def __repr__(self) -> str:
        return f"SqlCache({self.tables.name!r} in {self._db.where})"

    def __enter__(self) -> SqlCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections SqlCache opened (an Engine given stays open)."""
        if not self._closed:
            self._closed = True
            self._db.dispose()

    def _check_open(self) -> None:
        if self._closed:
            raise SqlCacheError(f"{self!r} is closed; create a new SqlCache")

    # ------------------------------------------------------------------ queries
    def _parse(self, params: Mapping[str, Any], *, partial: bool = False) -> Query:
        parsed = self.adapter.parse_query_params(**params)
        query = normalize(self.tables, parsed, partial=partial)
        if query.is_range and self.axis is None:
            column = self.tables.range_column
            raise ConfigError(
                f"ranges of {column!r} need its step: create the SqlCache with "
                "time_increment= (e.g. '5min' or timedelta(minutes=5))"
            )
        return query

    def _conditions(self, table: sa.Table, specs: Mapping[str, Spec]) -> list[Any]:
        conditions = []
        for column, spec in specs.items():
            if isinstance(spec, Equals):
                conditions.append(table.c[column] == spec.value)
            elif isinstance(spec, OneOf):
                conditions.append(table.c[column].in_(spec.values))
            else:
                conditions.append(table.c[column].between(spec.start, spec.end))
        return conditions

    def _split_specs(self, specs: Mapping[str, Spec]) -> list[dict[str, Spec]]:
        """``specs`` with long value lists cut into several (IN lists stay short)."""
        parts: list[dict[str, Spec]] = [dict(specs)]
        for column, spec in specs.items():
            if isinstance(spec, OneOf) and len(spec.values) > _CHUNK:
                parts = [
                    {**part, column: OneOf(tuple(chunk))}
                    for part in parts
                    for chunk in _chunks(spec.values)
                ]
        return parts

    def _select(self, specs: Mapping[str, Spec]) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The read statement of ``specs``' shape (built once per shape) and its values."""
        shape = tuple((column, type(spec)) for column, spec in specs.items())
        statement = self._selects.get(shape)
        table = self.tables.data
        if statement is None:
            conditions = []
            for position, (column, kind) in enumerate(shape):
                name = f"p{position}"
                if kind is Equals:
                    conditions.append(table.c[column] == sa.bindparam(name))
                elif kind is OneOf:
                    conditions.append(table.c[column].in_(sa.bindparam(name, expanding=True)))
                else:
                    conditions.append(
                        table.c[column].between(sa.bindparam(name), sa.bindparam(f"{name}_end"))
                    )
            statement = (
                sa.select(*self._reader.select_columns)
                .where(*conditions)
                .order_by(*(table.c[key] for key in self.tables.primary_keys))
            )
            self._selects[shape] = statement
        values: dict[str, Any] = {}
        for position, spec in enumerate(specs.values()):
            name = f"p{position}"
            if isinstance(spec, Equals):
                values[name] = spec.value
            elif isinstance(spec, OneOf):
                values[name] = list(spec.values)
            else:
                values[name], values[f"{name}_end"] = spec.start, spec.end
        return statement, values

    def _read(self, connection: sa.Connection, specs: Mapping[str, Spec]) -> DataFrame:
        frames = [
            self._reader.read(connection, *self._select(part)) for part in self._split_specs(specs)
        ]
        if len(frames) == 1:
            return frames[0]
        pd = import_optional("pandas", extra="sql", distribution="cacheness")
        merged = pd.concat(frames, ignore_index=True)
        return merged.sort_values(list(self.tables.primary_keys), ignore_index=True)

    @staticmethod
    def _live(frame: DataFrame, now: datetime) -> DataFrame:
        """The fresh rows of ``frame`` (the frame itself when all are)."""
        expires = frame[EXPIRES_AT].array.asi8  # int64 nanoseconds, NaT (never) the lowest
        limit = (now - EPOCH_UTC) // timedelta(microseconds=1) * 1000
        fresh = (expires == np.iinfo(np.int64).min) | (expires > limit)
        return frame if bool(fresh.all()) else frame[fresh].reset_index(drop=True)

    def _empty_live(self, now: datetime) -> Any:
        column = self.tables.empty.c[EXPIRES_AT]
        return sa.or_(column.is_(None), column > now)

    def _scope_condition(self, table: sa.Table, scopes: Sequence[tuple[Any, ...]]) -> Any:
        columns = [table.c[name] for name in self.tables.scope_columns]
        if not columns:
            return sa.true()
        if len(columns) == 1:
            return columns[0].in_([scope[0] for scope in scopes])
        return sa.or_(
            *(sa.and_(*(c == v for c, v in zip(columns, scope, strict=True))) for scope in scopes)
        )

    def _known_empty(self, connection: sa.Connection, now: datetime) -> _KnownEmptyLookup:
        """The lookup of live known-empty entries the gap finder calls when rows miss."""
        return _KnownEmptyLookup(self, connection, now)

    def _find(
        self, connection: sa.Connection, query: Query, live: DataFrame, now: datetime
    ) -> list[FetchRequest]:
        if self.gap_detector is None:
            return self._finder.find(query, live, self._known_empty(connection, now))
        wanted = self.gap_detector(to_parsed(query.specs), live, self)
        if not isinstance(wanted, list | tuple) or not all(
            isinstance(params, Mapping) for params in wanted
        ):
            raise SqlCacheError(
                f"gap_detector must return a list of dicts of fetch parameters, got {wanted!r}"
            )
        return [self._request_for(dict(params)) for params in wanted]

    def _request_for(self, params: dict[str, Any]) -> FetchRequest:
        """A custom detector's fetch parameters as a request (specs when they read as one)."""
        try:
            query = normalize(self.tables, parse_kwargs(set(self.tables.data.c.keys()), params))
        except (InvalidQueryError, ConfigError):
            log.debug("fetch parameters %r are not a key query: no negative caching", params)
            return FetchRequest({}, kwargs=params)
        specs = query.specs
        scopes_of = self.tables.scope_columns
        scope_values = [_values_of(spec) for column, spec in specs.items() if column in scopes_of]
        scopes = tuple(itertools.product(*scope_values))
        column = self.tables.range_column
        if query.is_range and self.axis is not None and column is not None:
            between = specs[column]
            assert isinstance(between, Between)
            lo, hi = self.axis.ceil(between.start), self.axis.floor(between.end)
            return FetchRequest(specs, scopes, lo, hi, kwargs=params)
        all_values = [_values_of(spec) for spec in specs.values()]
        return FetchRequest(
            specs, scopes, keys=tuple(itertools.product(*all_values)), kwargs=params
        )

    # ------------------------------------------------------------------ public reads
    def fetch_params(self, query_params: Mapping[str, Any]) -> dict[str, Any]:
        """The fetcher's keyword arguments for a parsed query (for gap detectors).

        Example:
            >>> import datetime as dt
            >>> cache = SqlCache.for_realtime_timeseries(":memory:", data_fetcher=print)
            >>> cache.fetch_params({"symbol": "A", "date": {"start": dt.date(2024, 1, 1),
            ...                                            "end": dt.date(2024, 1, 2)}})
            {'symbol': 'A', 'start_date': datetime.date(2024, 1, 1), 'end_date': ...}
            >>> cache.close()
        """
        return fetch_kwargs(self.tables, normalize(self.tables, query_params).specs)

    def detect_gaps(
        self, query_params: Mapping[str, Any], cached_frame: DataFrame
    ) -> list[dict[str, Any]]:
        """The built-in gap detection: fetch parameters of what ``cached_frame`` lacks.

        ``query_params`` is the parsed query a gap detector receives, ``cached_frame``
        the fresh rows it has (a detector may drop some to have them refetched).

        Example:
            >>> import datetime as dt, pandas as pd
            >>> cache = SqlCache.for_realtime_timeseries(":memory:", data_fetcher=print)
            >>> cache.detect_gaps({"symbol": "A", "date": {"start": dt.date(2024, 1, 1),
            ...                                            "end": dt.date(2024, 1, 3)}},
            ...                   pd.DataFrame())  # nothing cached yet
            [{'symbol': 'A', 'start_date': datetime.date(2024, 1, 1), 'end_date': ...}]
            >>> cache.close()
        """
        self._check_open()
        query = normalize(self.tables, query_params)
        with self._db.connect() as connection:
            requests = self._finder.find(
                query, cached_frame, self._known_empty(connection, self.now())
            )
        return [fetch_kwargs(self.tables, request.specs) for request in requests]

    def get_data(self, **params: Any) -> DataFrame:
        """The requested rows, fetching only what the table lacks or holds expired.

        Args:
            **params: key columns by name (a value or a list) and the range column as
                ``start_<column>=``/``end_<column>=`` (inclusive), e.g.
                ``symbol="AAPL", start_date="2024-01-02", end_date="2024-03-28"``.

        Returns:
            The rows, sorted by the primary key, with ``cached_at``/``expires_at``,
            in the table's dtypes. A second identical call does not fetch.

        Raises:
            InvalidQueryError: unknown parameters, missing keys, start after end, ...
            FetcherError: the fetcher raised (unless ``stale_if_error``); nothing stored.
            InvalidFetchedDataError: the fetcher's frame does not fit; nothing stored.
            BackendUnavailableError: the database cannot be reached.

        Example:
            >>> import pandas as pd
            >>> cache = SqlCache.for_lookup_table(":memory:", primary_keys=["k"],
            ...     data_fetcher=lambda k: pd.DataFrame({"k": k, "v": [len(x) for x in k]}),
            ...     k=sa.String, v=sa.Integer)
            >>> cache.get_data(k=["bb", "a"])[["k", "v"]].values.tolist()
            [['a', 1], ['bb', 2]]
            >>> cache.close()
        """
        return self.get_result(**params).data

    def get_result(self, **params: Any) -> SqlCacheResult:
        """Like :meth:`get_data`, with where the rows came from (:class:`SqlCacheResult`).

        Example:
            >>> import pandas as pd
            >>> cache = SqlCache.for_lookup_table(":memory:", primary_keys=["k"],
            ...     data_fetcher=lambda k: pd.DataFrame({"k": [k], "v": [1.0]}),
            ...     k=sa.String, v=sa.Float)
            >>> cache.get_result(k="a").status, cache.get_result(k="a").status
            (<SqlCacheStatus.FETCHED: 'fetched'>, <SqlCacheStatus.CACHED: 'cached'>)
            >>> cache.close()
        """
        self._check_open()
        query = self._parse(params)
        now = self.now()
        with self._db.connect() as connection:
            frame = self._read(connection, query.specs)
            live = self._live(frame, now)
            requests = self._find(connection, query, live, now)
        if not requests:
            self._count(hits=1)
            return SqlCacheResult(frame, SqlCacheStatus.CACHED)
        return self._fill(query, requests)

    # ------------------------------------------------------------------ filling gaps
    def _lock_names(self, requests: Sequence[FetchRequest]) -> list[str]:
        table = self.tables.name
        if any(not request.specs for request in requests):
            return [lock_key(table, "table")]
        return bucket_names(table, (scope for request in requests for scope in request.scopes))

    def _fill(self, query: Query, requests: list[FetchRequest]) -> SqlCacheResult:
        with self._db.fill_locks.hold(self._lock_names(requests), self.lock_timeout) as got:
            if not got:
                log.warning(
                    "SqlCache %s: another caller has been filling these rows for %s s; "
                    "fetching without waiting longer",
                    self.tables.name,
                    self.lock_timeout,
                )
            now = self.now()
            with self._db.connect() as connection:  # filled while we waited?
                frame = self._read(connection, query.specs)
                requests = self._find(connection, query, self._live(frame, now), now)
            if not requests:
                self._count(hits=1)
                return SqlCacheResult(frame, SqlCacheStatus.CACHED)
            fetched: list[tuple[FetchRequest, PreparedRows]] = []
            calls: list[dict[str, Any]] = []
            error: Exception | None = None
            for request in requests:
                kwargs = dict(request.kwargs or fetch_kwargs(self.tables, request.specs))
                calls.append(kwargs)
                self._count(fetch_calls=1)
                try:
                    answer = self.adapter.fetch_data(**kwargs)
                except Exception as exc:
                    self._count(fetch_errors=1)
                    if not self.stale_if_error:
                        raise FetcherError(
                            f"the fetcher of {self.tables.name!r} raised {exc!r} when called "
                            f"with {kwargs}; nothing was stored"
                        ) from exc
                    log.warning(
                        "SqlCache %s: the fetcher raised %r for %s; serving what the table has",
                        self.tables.name,
                        exc,
                        kwargs,
                    )
                    error = exc
                    continue
                fixed = {  # key columns asked for one value: the frame may leave them out
                    column: spec.value if isinstance(spec, Equals) else spec.values[0]
                    for column, spec in request.specs.items()
                    if isinstance(spec, Equals)
                    or (isinstance(spec, OneOf) and len(spec.values) == 1)
                }
                prepared = prepare_rows(self.tables, answer, fixed)
                fetched.append((request, prepared))
            rows = sum(len(prepared.records) for _, prepared in fetched)
            self._count(misses=1, rows_fetched=rows)
            if fetched:
                self._write(fetched, self.now())
        with self._db.connect() as connection:
            frame = self._read(connection, query.specs)
            if error is None:
                status = SqlCacheStatus.FETCHED
            else:
                self._count(stale_served=1)
                status = self._after_failure(connection, query, frame)
        return SqlCacheResult(frame, status, tuple(calls), rows, error)

    def _after_failure(
        self, connection: sa.Connection, query: Query, frame: DataFrame
    ) -> SqlCacheStatus:
        """STALE when every requested key has a row (fresh or not), else SOURCE_FAILED."""
        far = datetime.min.replace(tzinfo=UTC)  # every entry counts, expired or not
        missing = self._finder.find(query, frame, self._known_empty(connection, far))
        return SqlCacheStatus.SOURCE_FAILED if missing else SqlCacheStatus.STALE

    def _expiry(self, now: datetime) -> datetime | None:
        return None if self.ttl_seconds is None else now + timedelta(seconds=self.ttl_seconds)

    def _provisional_from(self, now: datetime) -> Any:
        """The smallest range value still provisional under ``settle`` (None: none is)."""
        if self.settle is None:
            return None
        cutoff = now - self.settle
        column = self.tables.range_column
        assert column is not None  # settle needs a range column: checked at construction
        kind = self.tables.kinds[column]
        if kind == "date":
            day = cutoff.date()
            return day if cutoff.time() == datetime.min.time() else day + timedelta(days=1)
        if kind == "naive":
            return cutoff.replace(tzinfo=None)
        return cutoff

    def _write(self, fetched: list[tuple[FetchRequest, PreparedRows]], now: datetime) -> None:
        """Store fetched rows and known-empty answers in one transaction."""
        data, empty = self.tables.data, self.tables.empty
        expires = self._expiry(now)
        provisional = self._provisional_from(now)
        range_column = self.tables.range_column
        records: list[dict[str, Any]] = []
        empties: list[dict[str, Any]] = []
        stale_deletes: list[Any] = []
        empty_deletes: list[Any] = []
        for request, prepared in fetched:
            for record in prepared.records:
                record[CACHED_AT] = now
                late = (
                    provisional is not None
                    and range_column is not None
                    and record[range_column] >= provisional
                )
                record[EXPIRES_AT] = now if late else expires
            records.extend(prepared.records)
            if not request.specs:
                continue
            # Rows of this request the source no longer has: drop them if expired.
            stale_deletes.append(
                sa.and_(
                    *self._conditions(data, request.specs),
                    data.c[EXPIRES_AT].is_not(None),
                    data.c[EXPIRES_AT] <= now,
                )
            )
            new, contained = self._empties(request, prepared, now, expires, provisional)
            empties.extend(new)
            empty_deletes.extend(contained)
        try:
            with self._db.begin() as connection:
                for condition in stale_deletes:
                    connection.execute(sa.delete(data).where(condition))
                for condition in empty_deletes:
                    connection.execute(sa.delete(empty).where(condition))
                self._db.write_rows(
                    connection, data, self._upsert_rows, records, columnar=self._columnar
                )
                self._db.write_rows(
                    connection, empty, self._upsert_empty, empties, columnar=self._columnar
                )
        except (sa.exc.IntegrityError, sa.exc.DataError, sa.exc.ProgrammingError) as exc:
            raise InvalidFetchedDataError(
                f"the database refused the fetched rows of {self.tables.name!r}: {exc.orig}; "
                "nothing was stored"
            ) from exc

    def _empties(
        self,
        request: FetchRequest,
        prepared: PreparedRows,
        now: datetime,
        expires: datetime | None,
        provisional: Any,
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """Known-empty entries a request's answer implies, and the old ones it replaces."""
        empty = self.tables.empty
        keys = self.tables.primary_keys
        scope_columns = self.tables.scope_columns
        range_column = self.tables.range_column
        positions = [keys.index(column) for column in scope_columns]
        stamp = {CACHED_AT: now, EXPIRES_AT: expires}
        entries: list[dict[str, Any]] = []
        replaced: list[Any] = []
        if request.lo is not None and request.hi is not None and range_column is not None:
            assert self.axis is not None
            where = keys.index(range_column)
            hi = request.hi
            if provisional is not None:
                hi = min(hi, self.axis.ceil(provisional) - 1)
            units = self.axis.units_of([key[where] for key in prepared.keys])
            index, on_grid = self.axis.grid(units)
            rows_of: dict[tuple[Any, ...], list[int]] = {}
            for row, key in enumerate(prepared.keys):
                rows_of.setdefault(tuple(key[p] for p in positions), []).append(row)
            for chunk in _chunks(list(request.scopes)):
                replaced.append(
                    sa.and_(
                        self._scope_condition(empty, chunk),
                        empty.c[RANGE_START] >= self.axis.value(request.lo),
                        empty.c[RANGE_END] <= self.axis.value(request.hi),
                    )
                )
            for scope in request.scopes:
                rows = np.asarray(rows_of.get(scope, []), dtype=np.int64)
                points = index[rows][on_grid[rows]]
                scope_values = dict(zip(scope_columns, scope, strict=True))
                for a, b in missing_runs(request.lo, hi, points):
                    entries.append(
                        {
                            **scope_values,
                            RANGE_START: self.axis.value(a),
                            RANGE_END: self.axis.value(b),
                            **stamp,
                        }
                    )
            return entries, replaced
        returned_keys = set(prepared.keys)
        for key in request.keys:
            if key in returned_keys:
                continue
            if range_column is None:
                entries.append({**dict(zip(keys, key, strict=True)), **stamp})
                continue
            value = key[keys.index(range_column)]
            if provisional is not None and value >= provisional:
                continue
            entries.append(
                {
                    **{c: key[keys.index(c)] for c in scope_columns},
                    RANGE_START: value,
                    RANGE_END: value,
                    **stamp,
                }
            )
        return entries, replaced

    def _count(self, **amounts: int) -> None:
        with self._stats_lock:
            for name, amount in amounts.items():
                self._counters[name] += amount

    # ------------------------------------------------------------------ management
    def get_cache_stats(self) -> dict[str, Any]:
        """Figures about the table and this instance's calls.

        Returns:
            ``total_records``, ``expired_records``, ``known_empty_entries`` (negative
            cache), ``latest_cached_at``, ``table_name``, ``primary_keys``,
            ``range_column``, ``ttl_seconds``, and the counters of this instance:
            ``hits`` (calls answered from the table), ``misses`` (calls that fetched),
            ``fetch_calls``, ``rows_fetched``, ``fetch_errors``, ``stale_served``.

        Example:
            >>> import pandas as pd
            >>> cache = SqlCache.for_lookup_table(":memory:", primary_keys=["k"],
            ...     data_fetcher=lambda k: pd.DataFrame({"k": [k]}), k=sa.String)
            >>> _ = cache.get_data(k="a"), cache.get_data(k="a")
            >>> stats = cache.get_cache_stats()
            >>> stats["total_records"], stats["hits"], stats["misses"], stats["fetch_calls"]
            (1, 1, 1, 1)
            >>> cache.close()
        """
        self._check_open()
        data, empty = self.tables.data, self.tables.empty
        now = self.now()
        expired = sa.and_(data.c[EXPIRES_AT].is_not(None), data.c[EXPIRES_AT] <= now)
        with self._db.connect() as connection:
            total, stale, latest = connection.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(expired),
                    sa.func.max(data.c[CACHED_AT]),
                ).select_from(data)
            ).one()
            empties = connection.execute(sa.select(sa.func.count()).select_from(empty)).scalar()
        with self._stats_lock:
            counters = dict(self._counters)
        return {
            "table_name": self.tables.name,
            "primary_keys": list(self.tables.primary_keys),
            "range_column": self.tables.range_column,
            "ttl_seconds": self.ttl_seconds,
            "total_records": int(total),
            "expired_records": int(stale or 0),
            "known_empty_entries": int(empties or 0),
            "latest_cached_at": latest,
            **counters,
        }

    def cleanup_expired(self) -> int:
        """Delete expired rows (and expired known-empty entries); return the rows deleted.

        Example:
            >>> import datetime as dt, pandas as pd
            >>> now = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC)]
            >>> cache = SqlCache.for_lookup_table(":memory:", primary_keys=["k"],
            ...     data_fetcher=lambda k: pd.DataFrame({"k": [k]}), ttl_seconds=60,
            ...     clock=lambda: now[0], k=sa.String)
            >>> _ = cache.get_data(k="a")
            >>> now[0] += dt.timedelta(minutes=2)
            >>> cache.cleanup_expired()
            1
            >>> cache.close()
        """
        self._check_open()
        now = self.now()
        data, empty = self.tables.data, self.tables.empty
        with self._db.begin() as connection:
            removed = connection.execute(
                sa.delete(data).where(data.c[EXPIRES_AT].is_not(None), data.c[EXPIRES_AT] <= now)
            ).rowcount
            connection.execute(
                sa.delete(empty).where(empty.c[EXPIRES_AT].is_not(None), empty.c[EXPIRES_AT] <= now)
            )
        return int(removed)

    def invalidate_cache(self, **params: Any) -> int:
        """Delete the rows (and known-empty entries) matching ``params``; return the rows.

        ``params`` are like ``get_data``'s, but may leave key columns out:
        ``invalidate_cache(symbol="AAPL")`` forgets every AAPL row. The next
        ``get_data`` fetches them again.

        Raises:
            InvalidQueryError: no parameter, or parameters ``get_data`` would refuse.

        Example:
            >>> import pandas as pd
            >>> cache = SqlCache.for_lookup_table(":memory:", primary_keys=["k"],
            ...     data_fetcher=lambda k: pd.DataFrame({"k": k}), k=sa.String)
            >>> _ = cache.get_data(k=["a", "b"])
            >>> cache.invalidate_cache(k="a"), cache.clear_cache()
            (1, 1)
            >>> cache.close()
        """
        self._check_open()
        query = self._parse(params, partial=True)
        data, empty = self.tables.data, self.tables.empty
        empty_conditions = []
        for column, spec in query.specs.items():
            if column == self.tables.range_column:
                low, high = (
                    (spec.start, spec.end)
                    if isinstance(spec, Between)
                    else (min(spec.values), max(spec.values))
                    if isinstance(spec, OneOf)
                    else (spec.value, spec.value)
                )
                empty_conditions += [empty.c[RANGE_END] >= low, empty.c[RANGE_START] <= high]
            else:
                empty_conditions += self._conditions(empty, {column: spec})
        with self._db.begin() as connection:
            removed = connection.execute(
                sa.delete(data).where(*self._conditions(data, query.specs))
            ).rowcount
            connection.execute(sa.delete(empty).where(*empty_conditions))
        return int(removed)

    def clear_cache(self) -> int:
        """Delete every row and known-empty entry; return the rows deleted."""
        self._check_open()
        with self._db.begin() as connection:
            removed = connection.execute(sa.delete(self.tables.data)).rowcount
            connection.execute(sa.delete(self.tables.empty))
        return int(removed)


def _values_of(spec: Spec) -> tuple[Any, ...]:
    """The values a key column's condition names (a range names none)."""
    if isinstance(spec, OneOf):
        return spec.values
    if isinstance(spec, Equals):
        return (spec.value,)
    raise TypeError(f"a range names no values: {spec!r}")  # pragma: no cover - keys only


def _fetcher(data_fetcher: Callable[..., DataFrame] | None) -> Callable[..., DataFrame]:
    """The fetcher given (the constructor checked that exactly one source was)."""
    assert data_fetcher is not None
    return data_fetcher


class _KnownEmptyLookup:
    """Live known-empty entries of a cache's table, read on one connection (KnownEmpty)."""

    def __init__(self, cache: SqlCache, connection: sa.Connection, now: datetime) -> None:
        self._cache = cache
        self._connection = connection
        self._now = now

    def keys(self, missing: Sequence[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
        """Of ``missing`` keys, those known to be empty (a table without a range column)."""
        cache, empty = self._cache, self._cache.tables.empty
        scope_columns = cache.tables.scope_columns
        found: set[tuple[Any, ...]] = set()
        for chunk in _chunks(list(missing)):
            statement = sa.select(*(empty.c[c] for c in scope_columns)).where(
                cache._scope_condition(empty, chunk), cache._empty_live(self._now)
            )
            found.update(tuple(row) for row in self._connection.execute(statement))
        return found

    def ranges(
        self, scopes: Sequence[tuple[Any, ...]], low: Any, high: Any
    ) -> dict[tuple[Any, ...], list[tuple[Any, Any]]]:
        """The known-empty ranges of ``scopes`` overlapping ``low``..``high``."""
        cache, empty = self._cache, self._cache.tables.empty
        scope_columns = cache.tables.scope_columns
        found: dict[tuple[Any, ...], list[tuple[Any, Any]]] = {}
        for chunk in _chunks(list(scopes)):
            statement = sa.select(
                *(empty.c[c] for c in scope_columns), empty.c[RANGE_START], empty.c[RANGE_END]
            ).where(
                cache._scope_condition(empty, chunk),
                empty.c[RANGE_END] >= low,
                empty.c[RANGE_START] <= high,
                cache._empty_live(self._now),
            )
            for row in self._connection.execute(statement):
                values = tuple(row)
                found.setdefault(values[:-2], []).append((values[-2], values[-1]))
        return found
