"""Bad input and faults: a clear typed error naming what was wrong, and nothing half-written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import CheckConstraint, Column, Date, Float, Integer, MetaData, String, Table

from cacheness import (
    BackendUnavailableError,
    ConfigError,
    FetcherError,
    FilterError,
    InvalidFetchedDataError,
    InvalidQueryError,
    MissingDependencyError,
    SqlCache,
    SqlCacheError,
)


def d(day: int) -> date:
    return date(2024, 1, day)


def snapshot(cache: SqlCache) -> tuple[list, list]:
    """Every row of the cache's two tables, read around SqlCache."""
    with cache.engine.connect() as connection:
        rows = connection.execute(
            sa.select(cache.table).order_by(*cache.table.primary_key.columns)
        ).all()
        empty = cache.tables.empty
        empties = connection.execute(sa.select(empty).order_by(*empty.primary_key.columns)).all()
    return [tuple(row) for row in rows], [tuple(row) for row in empties]


# --------------------------------------------------------------------------- query parameters


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbol": "A", "start_date": d(1), "end_date": d(2), "adjusted": True}, "'adjusted'"),
        ({"symbol": "A", "start_date": d(1), "end_date": d(2), "close": 1.0}, "not a primary-key"),
        ({"start_date": d(1), "end_date": d(2)}, "'symbol' is missing"),
        ({"symbol": "A"}, "'date' is missing .*start_date"),
        ({"symbol": "A", "start_date": d(5), "end_date": d(2)}, "is after end_date"),
        ({"symbol": "A", "start_date": d(1)}, "start_date= needs end_date="),
        ({"symbol": "A", "date": d(1), "start_date": d(1), "end_date": d(2)}, "both as date="),
        ({"symbol": 5, "start_date": d(1), "end_date": d(2)}, "'symbol' must be a string"),
        ({"symbol": "A", "start_date": "Jan 1st", "end_date": d(2)}, "'date' must be a date"),
        ({"symbol": [], "start_date": d(1), "end_date": d(2)}, "empty list"),
        ({"symbol": None, "start_date": d(1), "end_date": d(2)}, "cannot be None"),
        ({"symbol": {"start": "A", "end": "B"}, "date": d(1)}, "not the range column"),
    ],
)
def test_bad_query_parameters_are_named(make_cache, price_api, params, message):
    cache = make_cache(data_fetcher=price_api)
    with pytest.raises(InvalidQueryError, match=message) as raised:
        cache.get_data(**params)
    assert isinstance(raised.value, FilterError)
    assert isinstance(raised.value, ValueError)
    assert price_api.calls == []
    assert cache.get_cache_stats()["total_records"] == 0


def test_naive_datetimes_are_refused_for_a_utc_column(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api, time_increment="1h", close=Float)
    with pytest.raises(InvalidQueryError, match="timezone-aware"):
        cache.get_data(symbol="A", start_date=datetime(2024, 1, 1), end_date=datetime(2024, 1, 2))


def test_invalidate_needs_something_to_invalidate(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api)
    with pytest.raises(InvalidQueryError, match="clear_cache"):
        cache.invalidate_cache()
    with pytest.raises(InvalidQueryError, match="'sector'"):
        cache.invalidate_cache(sector="tech")


# --------------------------------------------------------------------------- fetched frames


def fetcher_returning(frame):
    return lambda **kw: frame() if callable(frame) else frame


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (None, "must return a pandas DataFrame"),
        ([{"date": d(2), "close": 1.0}], "must return a pandas DataFrame .*list"),
        (pd.DataFrame({"date": [d(2)], "open": [1.0]}), "column 'open' that table"),
        (pd.DataFrame({"date": [d(2)], "cached_at": [d(2)]}), "'cached_at': SqlCache sets it"),
        (pd.DataFrame({"date": [d(2)], "close": ["high"]}), "'close' holds 'high'"),
        (pd.DataFrame({"date": [d(2)], "close": [True]}), "'close' holds booleans"),
        (pd.DataFrame({"date": [d(2)], "volume": [1.5]}), "'volume' holds fractions"),
        (pd.DataFrame({"date": ["soon"], "close": [1.0]}), "'date' holds values that are not"),
        (pd.DataFrame({"date": [pd.Timestamp("2024-01-02 10:00")]}), "'date' holds times of day"),
        (
            pd.DataFrame({"date": [pd.Timestamp("2024-01-02", tz="UTC")]}),
            "'date' holds timezone-aware",
        ),
        (pd.DataFrame({"date": [d(2), d(2)], "close": [1.0, 2.0]}), "two rows with the key"),
        (pd.DataFrame({"date": [d(2), None], "close": [1.0, 2.0]}), "'date' has missing values"),
        (pd.DataFrame({"close": [1.0]}), "no 'date' column"),
        (pd.DataFrame([[d(2), 1.0, 2.0]], columns=["date", "close", "close"]), "'close' twice"),
    ],
)
def test_a_fetched_frame_that_does_not_fit_is_refused_whole(make_cache, answer, message):
    cache = make_cache(data_fetcher=fetcher_returning(answer))
    with pytest.raises(InvalidFetchedDataError, match=message) as raised:
        cache.get_data(symbol="A", start_date=d(2), end_date=d(3))
    assert isinstance(raised.value, ValueError)
    assert snapshot(cache) == ([], [])


def test_a_list_call_needs_the_listed_key_column_back(make_cache):
    cache = make_cache(data_fetcher=fetcher_returning(pd.DataFrame({"date": [d(2)]})))
    with pytest.raises(InvalidFetchedDataError, match="no 'symbol' column"):
        cache.get_data(symbol=["A", "B"], start_date=d(2), end_date=d(2))


def test_naive_timestamps_for_a_utc_column_are_refused(make_cache):
    stamps = pd.DataFrame({"date": [pd.Timestamp("2024-01-02 10:00")], "close": [1.0]})
    cache = make_cache(data_fetcher=fetcher_returning(stamps), time_increment="1h", close=Float)
    with pytest.raises(InvalidFetchedDataError, match=r"naive timestamps .*tz_localize"):
        cache.get_data(
            symbol="A",
            start_date=datetime(2024, 1, 2, 10, tzinfo=UTC),
            end_date=datetime(2024, 1, 2, 11, tzinfo=UTC),
        )


def test_a_fetcher_that_raises_caches_nothing_not_even_its_earlier_gaps(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api)
    cache.get_data(symbol="A", start_date=d(10), end_date=d(12))
    before = snapshot(cache)
    calls = 0

    def flaky(**kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise TimeoutError("the second gap timed out")
        return price_api(**kwargs)

    cache.adapter.fetcher = flaky
    with pytest.raises(FetcherError, match="second gap timed out") as raised:
        cache.get_data(symbol="A", start_date=d(1), end_date=d(20))
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert calls == 2  # the first gap (1st-9th) was fetched, then the second failed
    assert snapshot(cache) == before


def test_a_database_refusal_mid_upsert_leaves_the_table_as_before(make_cache, price_api, clock):
    table = Table(
        "checked",
        MetaData(),
        Column("symbol", String, primary_key=True),
        Column("date", Date, primary_key=True),
        Column("close", Float, CheckConstraint("close >= 0", name="close_not_negative")),
        Column("volume", Integer),
    )
    cache = make_cache("table", table=table, data_fetcher=price_api, ttl_seconds=60)
    cache.get_data(symbol="A", start_date=d(1), end_date=d(10))
    before = snapshot(cache)
    clock.advance(120)  # expired: the next call deletes and rewrites them

    def half_bad(symbol, start_date, end_date):
        frame = price_api(symbol, start_date, end_date)
        frame.loc[len(frame) - 1, "close"] = -1.0  # the last row breaks the constraint
        return frame

    cache.adapter.fetcher = half_bad
    with pytest.raises(InvalidFetchedDataError, match="refused the fetched rows"):
        cache.get_data(symbol="A", start_date=d(1), end_date=d(20))
    assert snapshot(cache) == before


CRASH = textwrap.dedent(
    """
    import os, sys
    from datetime import date, datetime
    import pandas as pd
    from sqlalchemy import Float, Integer, event
    from cacheness import SqlCache

    url, now = sys.argv[1], datetime.fromisoformat(sys.argv[2])

    def fetch(symbol, start_date, end_date):
        days = pd.bdate_range(start_date, end_date)
        return pd.DataFrame({"date": days, "close": 999.0, "volume": 1})

    cache = SqlCache.for_timeseries(url, data_fetcher=fetch, ttl_seconds=60, clock=lambda: now,
                                    multiprocess=True, close=Float, volume=Integer)

    @event.listens_for(cache.engine, "after_cursor_execute")
    def crash(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO TIMESERIES_CACHE "):
            os._exit(3)  # the process dies inside the write transaction

    cache.get_data(symbol="A", start_date=date(2024, 1, 1), end_date=date(2024, 1, 20))
    os._exit(0)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="os._exit inside a driver call")
def test_a_crash_mid_upsert_leaves_the_table_as_before(
    make_cache, price_api, clock, db_url, tmp_path
):
    cache = make_cache(data_fetcher=price_api, ttl_seconds=60)
    cache.get_data(symbol="A", start_date=d(1), end_date=d(10))
    before = snapshot(cache)
    cache.close()  # DuckDB: one process at a time
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    later = (clock.now + timedelta(seconds=120)).isoformat()
    result = subprocess.run(
        [sys.executable, str(script), db_url, later], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    reopened = make_cache(data_fetcher=price_api, ttl_seconds=60)
    assert snapshot(reopened) == before


# --------------------------------------------------------------------------- configuration


def users_table(**extra) -> Table:
    return Table(
        "users",
        MetaData(),
        Column("user_id", Integer, primary_key=True),
        Column("name", String),
        *extra.values(),
    )


def noop(**kwargs):
    return pd.DataFrame()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: SqlCache(
                "sqlite://", Table("t", MetaData(), Column("x", Integer)), data_fetcher=noop
            ),
            "has no primary key",
        ),
        (lambda: SqlCache("sqlite://", users_table()), "exactly one source of rows"),
        (
            lambda: SqlCache("sqlite://", users_table(), data_fetcher=noop, data_adapter=object()),
            "exactly one source of rows",
        ),
        (lambda: SqlCache("cache.db", users_table(), data_fetcher=noop), "SqlCache.with_sqlite"),
        (lambda: SqlCache("mysql://h/db", users_table(), data_fetcher=noop), "not 'mysql'"),
        (
            lambda: SqlCache("sqlite://", users_table(), data_fetcher=noop, time_increment="1D"),
            "has no Date, DateTime or integer key",
        ),
        (
            lambda: SqlCache.for_timeseries("sqlite://", data_fetcher=noop, time_increment="1M"),
            "not a fixed duration",
        ),
        (
            lambda: SqlCache.for_timeseries("sqlite://", data_fetcher=noop, time_increment="soon"),
            "is not understood",
        ),
        (
            lambda: SqlCache.for_timeseries("sqlite://", data_fetcher=noop, time_increment=-5),
            "must be positive",
        ),
        (
            lambda: SqlCache.for_timeseries("sqlite://", data_fetcher=noop, ordered_increment=2),
            "step it with time_increment",
        ),
        (
            lambda: SqlCache(
                "sqlite://", users_table(), data_fetcher=noop, settle=timedelta(days=1)
            ),
            "settle needs a Date or DateTime",
        ),
        (
            lambda: SqlCache(
                "sqlite://",
                users_table(),
                data_fetcher=noop,
                ordered_increment=1,
                tail_overlap=timedelta(days=1),
            ),
            "is a count, not a time",
        ),
        (
            lambda: SqlCache("sqlite://", users_table(), data_fetcher=noop, ttl_seconds=-1),
            "ttl_seconds must be >= 0",
        ),
        (
            lambda: SqlCache(
                "sqlite://",
                users_table(c=Column("cached_at", String)),
                data_fetcher=noop,
            ),
            "has a column 'cached_at'",
        ),
        (
            lambda: SqlCache("sqlite://", "t", data_fetcher=noop, primary_keys=["k"], k=str),
            "must be a SQLAlchemy type",
        ),
        (lambda: SqlCache("sqlite://", "t", data_fetcher=noop, k=String), "primary_keys="),
        (
            lambda: SqlCache("sqlite://", "t", data_fetcher=noop, primary_keys=["id"], k=String),
            "primary key 'id' of table 't' is not among its columns",
        ),
        (
            lambda: SqlCache("sqlite://", users_table(), data_fetcher=noop, schema="market"),
            "SQLite has none",
        ),
        (
            lambda: SqlCache("sqlite://", users_table(), data_fetcher=noop, range_column="name"),
            "range_column 'name' must be",
        ),
        (lambda: SqlCache.for_lookup_table("sqlite://", k=String), "needs data_fetcher"),
    ],
)
def test_configuration_mistakes_are_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_table_that_exists_with_other_columns_is_a_config_error(db_url, clock):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    key = Column("user_id", Integer, primary_key=True, autoincrement=False)
    Table("users", MetaData(), key).create(engine)
    engine.dispose()
    with pytest.raises(ConfigError, match=r"exists in .* with other columns"):
        SqlCache(db_url, users_table(), data_fetcher=noop, clock=clock)


def test_ranges_of_a_datetime_column_need_an_increment():
    table = Table(
        "events",
        MetaData(),
        Column("at", sa.DateTime(timezone=True), primary_key=True),
        Column("what", String),
    )
    with SqlCache("sqlite://", table, data_fetcher=noop) as cache:
        start = datetime(2024, 1, 1, tzinfo=UTC)
        with pytest.raises(ConfigError, match="time_increment="):
            cache.get_data(start_at=start, end_at=start + timedelta(hours=1))
        assert cache.get_data(at=start).empty  # a single value needs no increment


def test_a_clock_must_tell_aware_time():
    with (
        SqlCache("sqlite://", users_table(), data_fetcher=noop, clock=datetime.now) as cache,
        pytest.raises(ConfigError, match="timezone-aware"),
    ):
        cache.get_data(user_id=1)


def test_a_gap_detector_must_return_fetch_parameters(price_api):
    with (
        SqlCache.for_timeseries(
            "sqlite://", data_fetcher=price_api, gap_detector=lambda q, f, c: "everything"
        ) as cache,
        pytest.raises(SqlCacheError, match="list of dicts"),
    ):
        cache.get_data(symbol="A", start_date=d(1), end_date=d(2))


def test_a_missing_duckdb_driver_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "duckdb_engine", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"cacheness\[duckdb\]"):
        SqlCache.with_duckdb(tmp_path / "x.duckdb", users_table(), data_fetcher=noop)


def test_an_unreachable_database_is_backend_unavailable():
    url = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(BackendUnavailableError, match="retry later"):
        SqlCache(url, users_table(), data_fetcher=noop, engine_options={"pool_pre_ping": False})
