"""SqlCache's behaviour, the same on SQLite, PostgreSQL and DuckDB (``db_url`` fixture)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import Boolean, Column, Date, DateTime, Float, Integer, MetaData, String, Table

from cacheness import (
    FetcherError,
    SqlCache,
    SqlCacheAdapter,
    SqlCacheResult,
    SqlCacheStatus,
    cacheness,
)


def d(day: int, month: int = 1) -> date:
    return date(2024, month, day)


def rows_of(frame: pd.DataFrame) -> list[tuple]:
    """(symbol, date, close, volume) rows of a result, for comparisons."""
    return [
        (s, t.date(), c, v)
        for s, t, c, v in frame[["symbol", "date", "close", "volume"]].itertuples(index=False)
    ]


def expected_rows(api, symbols, start, end) -> list[tuple]:
    return rows_of(api.expected(symbols, start, end))


# --------------------------------------------------------------------------- the basics


def test_first_call_fetches_the_range_and_a_second_identical_call_fetches_nothing(
    make_cache, price_api, clock
):
    cache = make_cache(data_fetcher=price_api)
    first = cache.get_result(symbol="AAPL", start_date=d(1), end_date=d(31))
    assert isinstance(first, SqlCacheResult)
    assert first.status is SqlCacheStatus.FETCHED
    assert price_api.calls == [("AAPL", d(1), d(31))]
    assert first.fetches == ({"symbol": "AAPL", "start_date": d(1), "end_date": d(31)},)
    assert rows_of(first.data) == expected_rows(price_api, ["AAPL"], d(1), d(31))
    assert first.rows_fetched == 23  # the weekdays of January 2024

    second = cache.get_result(symbol="AAPL", start_date=d(1), end_date=d(31))
    assert second.status is SqlCacheStatus.CACHED
    assert second.fetches == ()
    assert len(price_api.calls) == 1  # weekends are remembered as empty: no refetch
    pd.testing.assert_frame_equal(first.data, second.data)
    assert cache.get_data(symbol="AAPL", start_date="2024-01-01", end_date="2024-01-31").equals(
        second.data
    )


def test_rows_come_back_sorted_by_the_key_with_the_tables_dtypes(make_cache, price_api, clock):
    cache = make_cache(data_fetcher=price_api, ttl_seconds=3600)
    frame = cache.get_data(symbol=["MSFT", "AAPL"], start_date=d(2), end_date=d(5))
    assert list(frame.columns) == ["symbol", "date", "close", "volume", "cached_at", "expires_at"]
    assert frame[["symbol", "date"]].to_records(index=False).tolist() == sorted(
        frame[["symbol", "date"]].to_records(index=False).tolist()
    )
    assert frame["symbol"].tolist() == ["AAPL"] * 4 + ["MSFT"] * 4
    assert str(frame["date"].dtype) == "datetime64[ns]"
    assert str(frame["close"].dtype) == "float64"
    assert str(frame["volume"].dtype) == "Int64"  # a nullable Integer column
    assert pd.api.types.is_string_dtype(frame["symbol"])
    assert str(frame["cached_at"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["expires_at"].dtype) == "datetime64[ns, UTC]"
    assert set(frame["cached_at"]) == {pd.Timestamp(clock.now)}
    assert set(frame["expires_at"]) == {pd.Timestamp(clock.now + timedelta(hours=1))}


def test_every_column_type_reads_back_in_its_dtype(make_cache, clock):
    table = Table(
        "things",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(40)),
        Column("score", Float),
        Column("count", Integer, nullable=False),
        Column("maybe", Integer),
        Column("active", Boolean, nullable=False),
        Column("flag", Boolean),
        Column("born", Date),
        Column("seen", DateTime(timezone=True)),
        Column("local", DateTime()),
    )
    seen = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)

    def fetch(id):
        return pd.DataFrame(
            {
                "id": id,
                "name": [f"thing {i}" for i in id],
                "score": [0.5 * i for i in id],
                "count": [10 * i for i in id],
                "maybe": [None if i % 2 else i for i in id],
                "active": [i % 2 == 0 for i in id],
                "flag": [None, True, False][: len(id)],
                "born": [date(2000, 1, i) for i in id],
                "seen": [seen + timedelta(minutes=i) for i in id],
                "local": [datetime(2024, 1, 1, i) for i in id],
            }
        )

    cache = make_cache("table", table=table, data_fetcher=fetch)
    frame = cache.get_data(id=[1, 2, 3])
    dtypes = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert dtypes == {
        "id": "int64",
        "name": dtypes["name"],
        "score": "float64",
        "count": "int64",
        "maybe": "Int64",
        "active": "bool",
        "flag": "boolean",
        "born": "datetime64[ns]",
        "seen": "datetime64[ns, UTC]",
        "local": "datetime64[ns]",
        "cached_at": "datetime64[ns, UTC]",
        "expires_at": "datetime64[ns, UTC]",
    }
    assert pd.api.types.is_string_dtype(frame["name"])
    assert frame["maybe"].tolist() == [pd.NA, 2, pd.NA]
    assert frame["flag"].tolist() == [pd.NA, True, False]
    assert frame["seen"].tolist() == [pd.Timestamp(seen + timedelta(minutes=i)) for i in (1, 2, 3)]
    assert frame["born"].dt.date.tolist() == [date(2000, 1, i) for i in (1, 2, 3)]
    assert cache.get_result(id=[1, 2, 3]).status is SqlCacheStatus.CACHED


def test_an_empty_answer_has_the_columns_and_dtypes_too(make_cache, clock):
    cache = make_cache(data_fetcher=lambda **kw: pd.DataFrame())
    frame = cache.get_data(symbol="NONE", start_date=d(1), end_date=d(5))
    assert frame.empty
    assert list(frame.columns) == ["symbol", "date", "close", "volume", "cached_at", "expires_at"]
    assert str(frame["date"].dtype) == "datetime64[ns]"
    assert str(frame["expires_at"].dtype) == "datetime64[ns, UTC]"


def test_rows_stay_in_the_database_for_the_next_instance(make_cache, price_api):
    make_cache(data_fetcher=price_api).get_data(symbol="AAPL", start_date=d(1), end_date=d(12))
    again = make_cache(data_fetcher=price_api)
    result = again.get_result(symbol="AAPL", start_date=d(3), end_date=d(10))
    assert result.status is SqlCacheStatus.CACHED
    assert len(price_api.calls) == 1
    assert rows_of(result.data) == expected_rows(price_api, ["AAPL"], d(3), d(10))


# --------------------------------------------------------------------------- gaps


def test_only_the_missing_sub_ranges_are_fetched(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api)
    cache.get_data(symbol="AAPL", start_date=d(10), end_date=d(20))
    price_api.calls.clear()
    frame = cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(31))
    assert price_api.calls == [("AAPL", d(1), d(9)), ("AAPL", d(21), d(31))]
    assert rows_of(frame) == expected_rows(price_api, ["AAPL"], d(1), d(31))


def test_a_hole_in_the_middle_is_one_fetch(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api)
    cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(31))
    assert cache.invalidate_cache(symbol="AAPL", start_date=d(15), end_date=d(17)) == 3
    price_api.calls.clear()
    frame = cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(31))
    assert price_api.calls == [("AAPL", d(15), d(17))]
    assert len(frame) == 23


def test_a_list_of_symbols_missing_the_same_range_is_one_call(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api)
    frame = cache.get_data(symbol=["MSFT", "AAPL"], start_date=d(1), end_date=d(31))
    assert price_api.calls == [(["AAPL", "MSFT"], d(1), d(31))]
    assert rows_of(frame) == expected_rows(price_api, ["AAPL", "MSFT"], d(1), d(31))
    price_api.calls.clear()
    frame = cache.get_data(symbol=["AAPL", "IBM", "MSFT"], start_date=d(1), end_date=d(15, 2))
    assert sorted(price_api.calls, key=repr) == sorted(
        [(["AAPL", "MSFT"], d(1, 2), d(15, 2)), (["IBM"], d(1), d(15, 2))], key=repr
    )
    assert rows_of(frame) == expected_rows(price_api, ["AAPL", "IBM", "MSFT"], d(1), d(15, 2))


def test_lookup_tables_fetch_only_missing_keys_in_the_callers_shape(make_cache):
    calls = []

    def fetch_users(user_id):
        calls.append(user_id)
        ids = user_id if isinstance(user_id, list) else [user_id]
        return pd.DataFrame({"user_id": ids, "name": [f"user {i}" for i in ids]})

    cache = make_cache(
        "lookup",
        table_name="users",
        primary_keys=["user_id"],
        data_fetcher=fetch_users,
        user_id=Integer,
        name=String(40),
    )
    assert cache.get_data(user_id=[3, 1, 2])["user_id"].tolist() == [1, 2, 3]
    assert cache.get_data(user_id=[2, 3, 4, 5])["name"].tolist() == [
        "user 2",
        "user 3",
        "user 4",
        "user 5",
    ]
    assert cache.get_data(user_id=7)["name"].tolist() == ["user 7"]
    assert cache.get_result(user_id=[1, 4, 7]).status is SqlCacheStatus.CACHED
    assert calls == [[1, 2, 3], [4, 5], 7]


def test_composite_keys_group_missing_values_by_the_other_keys(make_cache):
    calls = []
    table = Table(
        "stock",
        MetaData(),
        Column("store", String, primary_key=True),
        Column("sku", Integer, primary_key=True),
        Column("count", Integer),
    )

    def fetch(store, sku):
        calls.append((store, sku))
        return pd.DataFrame({"store": store[0], "sku": sku, "count": [s * 10 for s in sku]})

    cache = make_cache("table", table=table, data_fetcher=fetch)
    cache.get_data(store=["north"], sku=[1, 2])
    frame = cache.get_data(store=["north", "south"], sku=[1, 2, 3])
    assert calls == [(["north"], [1, 2]), (["north"], [3]), (["south"], [1, 2, 3])]
    assert frame[["store", "sku", "count"]].iloc[0].tolist() == ["north", 1, 10]
    assert len(frame) == 6


def test_a_custom_adapter_reads_its_own_parameter_names(make_cache, price_api):
    table = Table(
        "quotes",
        MetaData(),
        Column("symbol", String, primary_key=True),
        Column("date", Date, primary_key=True),
        Column("close", Float),
        Column("volume", Integer),
    )

    class Quotes(SqlCacheAdapter):
        def get_table_definition(self):
            return table

        def parse_query_params(self, ticker, start, end):
            return {"symbol": ticker.upper(), "date": {"start": start, "end": end}}

        def fetch_data(self, symbol, start_date, end_date):
            return price_api(symbol, start_date, end_date)

    cache = make_cache("table", data_adapter=Quotes())
    frame = cache.get_data(ticker="aapl", start=d(2), end=d(5))
    assert price_api.calls == [("AAPL", d(2), d(5))]
    assert rows_of(frame) == expected_rows(price_api, ["AAPL"], d(2), d(5))
    assert cache.get_result(ticker="AAPL", start=d(3), end=d(4)).status is SqlCacheStatus.CACHED


def test_an_adapter_missing_a_method_cannot_be_made():
    class NoFetch(SqlCacheAdapter):
        def get_table_definition(self):
            return Table("t", MetaData(), Column("k", String, primary_key=True))

    with pytest.raises(TypeError, match="fetch_data"):
        NoFetch()


def test_business_day_increments_never_ask_for_weekends(make_cache, price_api):
    price_api.holidays = {d(15)}
    cache = make_cache(data_fetcher=price_api, time_increment="1B")
    cache.get_data(symbol="AAPL", start_date=d(6), end_date=d(14))  # a Saturday to a Sunday
    assert price_api.calls == [("AAPL", d(8), d(12))]
    frame = cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(19))
    assert price_api.calls[1:] == [("AAPL", d(1), d(5)), ("AAPL", d(15), d(19))]
    assert d(15) not in set(frame["date"].dt.date)
    assert cache.get_result(symbol="AAPL", start_date=d(1), end_date=d(21)).status == "cached"
    assert cache.get_result(symbol="AAPL", start_date=d(13), end_date=d(14)).fetches == ()


def test_minute_increments_on_a_utc_datetime_column(make_cache):
    calls = []
    base = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)

    def bars(symbol, start_date, end_date):
        calls.append((start_date, end_date))
        stamps = pd.date_range(start_date, end_date, freq="5min")
        return pd.DataFrame({"date": stamps, "price": range(len(stamps))})

    cache = make_cache(data_fetcher=bars, time_increment="5min", price=Float)
    assert str(cache.table.c.date.type) in ("DATETIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
    frame = cache.get_data(symbol="X", start_date=base, end_date=base + timedelta(hours=1))
    assert len(frame) == 13
    assert str(frame["date"].dtype) == "datetime64[ns, UTC]"
    start = base - timedelta(minutes=32)  # 08:58 -> the first 5-minute point is 09:00
    frame = cache.get_data(symbol="X", start_date=start, end_date=base + timedelta(minutes=7))
    assert calls[1] == (base - timedelta(minutes=30), base - timedelta(minutes=5))
    assert all(value.tzinfo is not None for pair in calls for value in pair)
    assert frame["date"].iloc[0] == pd.Timestamp(base - timedelta(minutes=30))
    assert len(frame) == 8


def test_ordered_increments_on_integer_keys(make_cache):
    calls = []
    table = Table(
        "trades",
        MetaData(),
        Column("trade_id", Integer, primary_key=True),
        Column("price", Float),
    )

    def trades(start_trade_id, end_trade_id):
        calls.append((start_trade_id, end_trade_id))
        ids = [i for i in range(start_trade_id, end_trade_id + 1) if i % 10 == 0 and i % 70]
        return pd.DataFrame({"trade_id": ids, "price": [i / 10 for i in ids]})

    cache = make_cache("table", table=table, data_fetcher=trades, ordered_increment=10)
    assert cache.get_data(start_trade_id=10, end_trade_id=100)["trade_id"].tolist() == [
        10,
        20,
        30,
        40,
        50,
        60,
        80,
        90,
        100,
    ]
    frame = cache.get_data(start_trade_id=55, end_trade_id=160)
    assert calls == [(10, 100), (110, 160)]
    assert frame["trade_id"].tolist() == [60, 80, 90, 100, 110, 120, 130, 150, 160]
    assert cache.get_result(start_trade_id=0, end_trade_id=0).fetches == (
        {
            "start_trade_id": 0,
            "end_trade_id": 0,
        },
    )


# --------------------------------------------------------------------------- TTL


def test_only_expired_rows_of_a_range_are_refetched(make_cache, price_api, clock):
    cache = make_cache(data_fetcher=price_api, ttl_seconds=3600)
    cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(10))
    clock.advance(1800)
    cache.get_data(symbol="AAPL", start_date=d(11), end_date=d(20))
    clock.advance(1900)  # the first fill has expired, the second has not
    price_api.calls.clear()
    price_api.revision = 1.0
    result = cache.get_result(symbol="AAPL", start_date=d(1), end_date=d(20))
    assert price_api.calls == [("AAPL", d(1), d(10))]
    assert result.status is SqlCacheStatus.FETCHED
    first, second = result.data.iloc[:8], result.data.iloc[8:]
    assert set(first["cached_at"]) == {pd.Timestamp(clock.now)}
    assert set(second["cached_at"]) == {pd.Timestamp(clock.now - timedelta(seconds=1900))}
    assert first["close"].tolist() == [price_api.close("AAPL", t.date()) for t in first["date"]]


@pytest.mark.parametrize("ttl", [0, None])
def test_ttl_zero_or_none_never_expires(make_cache, price_api, clock, ttl):
    cache = make_cache(data_fetcher=price_api, ttl_seconds=ttl)
    frame = cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(5))
    assert frame["expires_at"].isna().all()
    clock.advance(10 * 365 * 86400)
    assert cache.get_result(symbol="AAPL", start_date=d(1), end_date=d(5)).status == "cached"
    assert cache.cleanup_expired() == 0
    assert cache.get_cache_stats()["expired_records"] == 0


def test_unknown_ids_are_remembered_as_empty_until_the_ttl(make_cache, clock):
    calls = []

    def fetch(user_id):
        calls.append(user_id)
        known = [i for i in user_id if i < 100]
        return pd.DataFrame({"user_id": known, "name": [f"u{i}" for i in known]})

    cache = make_cache(
        "lookup",
        primary_keys=["user_id"],
        data_fetcher=fetch,
        ttl_seconds=600,
        user_id=Integer,
        name=String,
    )
    assert cache.get_data(user_id=[1, 404])["user_id"].tolist() == [1]
    assert cache.get_result(user_id=[404]).status is SqlCacheStatus.CACHED
    assert cache.get_data(user_id=[404, 1]).shape[0] == 1
    assert calls == [[1, 404]]
    assert cache.get_cache_stats()["known_empty_entries"] == 1
    clock.advance(601)
    cache.get_data(user_id=[404])
    assert calls == [[1, 404], [404]]


def test_holidays_are_not_fetched_again_on_every_call(make_cache, price_api, clock):
    price_api.holidays = {d(15)}
    cache = make_cache(data_fetcher=price_api, ttl_seconds=86400)
    cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(31))
    for _ in range(3):
        cache.get_data(symbol="AAPL", start_date=d(12), end_date=d(16))
    assert len(price_api.calls) == 1
    clock.advance(86401)
    cache.get_data(symbol="AAPL", start_date=d(12), end_date=d(16))
    assert price_api.calls[1] == ("AAPL", d(12), d(16))


# --------------------------------------------------------------------------- beyond the seeds


def test_the_newest_rows_are_provisional_during_the_settle_window(make_cache, price_api, clock):
    clock.now = datetime(2024, 3, 5, 15, 0, tzinfo=UTC)  # Tuesday afternoon: bar unfinished
    cache = make_cache(data_fetcher=price_api, time_increment="1B", settle=timedelta(days=1))
    first = cache.get_data(symbol="AAPL", start_date=d(1, 3), end_date=d(5, 3))
    assert first["date"].dt.date.tolist() == [d(1, 3), d(4, 3), d(5, 3)]
    price_api.revision = 2.5  # the unfinished bar moves
    clock.advance(60)
    second = cache.get_result(symbol="AAPL", start_date=d(1, 3), end_date=d(5, 3))
    assert price_api.calls[1] == ("AAPL", d(5, 3), d(5, 3))  # only today's bar again
    assert second.status is SqlCacheStatus.FETCHED
    assert second.data["close"].iloc[-1] == price_api.close("AAPL", d(5, 3))
    assert second.data["close"].iloc[0] == first["close"].iloc[0]  # final bars kept
    clock.now = datetime(2024, 3, 6, 16, 0, tzinfo=UTC)  # Tuesday's bar is final now
    cache.get_data(symbol="AAPL", start_date=d(1, 3), end_date=d(5, 3))
    assert len(price_api.calls) == 3
    assert cache.get_result(symbol="AAPL", start_date=d(1, 3), end_date=d(5, 3)).status == "cached"


def test_a_gap_continuing_a_series_refetches_the_tail_overlap(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api, time_increment="1B", tail_overlap=2)
    cache.get_data(symbol="AAPL", start_date=d(2), end_date=d(10))
    price_api.revision = 0.5  # the source revised recent history
    frame = cache.get_data(symbol="AAPL", start_date=d(2), end_date=d(17))
    assert price_api.calls[1] == ("AAPL", d(9), d(17))  # two business days before the 11th
    revised = frame[frame["date"].dt.date >= d(9)]
    assert revised["close"].tolist() == [price_api.close("AAPL", t.date()) for t in revised["date"]]
    older = frame[frame["date"].dt.date < d(9)]
    assert older["close"].tolist() == [
        price_api.close("AAPL", t.date()) - 0.5 for t in older["date"]
    ]


def test_stale_rows_are_served_when_the_source_fails(make_cache, price_api, clock):
    cache = make_cache(data_fetcher=price_api, ttl_seconds=60, stale_if_error=True)
    fresh = cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(10))
    clock.advance(120)
    price_api.fail = ConnectionError("the API is down")
    stale = cache.get_result(symbol="AAPL", start_date=d(1), end_date=d(10))
    assert stale.status is SqlCacheStatus.STALE
    assert stale.error is price_api.fail
    assert stale.fetches == ({"symbol": "AAPL", "start_date": d(1), "end_date": d(10)},)
    pd.testing.assert_frame_equal(stale.data, fresh)

    partial = cache.get_result(symbol="AAPL", start_date=d(1), end_date=d(20))
    assert partial.status is SqlCacheStatus.SOURCE_FAILED
    assert len(partial.data) == 8
    stats = cache.get_cache_stats()
    assert (stats["fetch_errors"], stats["stale_served"]) == (2, 2)
    assert stats["total_records"] == 8


def test_without_stale_if_error_the_fetchers_error_is_raised(make_cache, price_api, clock):
    cache = make_cache(data_fetcher=price_api, ttl_seconds=60)
    cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(10))
    clock.advance(120)
    price_api.fail = ConnectionError("the API is down")
    with pytest.raises(FetcherError, match="the API is down") as raised:
        cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(10))
    assert raised.value.__cause__ is price_api.fail
    assert cache.get_cache_stats()["total_records"] == 8  # the stale rows are still there


def test_a_custom_gap_detector_decides_what_to_fetch(make_cache, price_api):
    seen = []

    def detector(query_params, cached_frame, cache):
        seen.append((query_params, len(cached_frame)))
        gaps = cache.detect_gaps(query_params, cached_frame)
        if not gaps and query_params["symbol"] == "ALWAYS":
            return [cache.fetch_params(query_params)]
        return gaps

    cache = make_cache(data_fetcher=price_api, gap_detector=detector)
    cache.get_data(symbol="AAPL", start_date=d(2), end_date=d(5))
    assert seen[0] == ({"symbol": "AAPL", "date": {"start": d(2), "end": d(5)}}, 0)
    assert cache.get_result(symbol="AAPL", start_date=d(2), end_date=d(5)).status == "cached"
    assert seen[-1][1] == 4
    cache.get_data(symbol="ALWAYS", start_date=d(2), end_date=d(3))
    cache.get_data(symbol="ALWAYS", start_date=d(2), end_date=d(3))
    assert price_api.calls[-2:] == [("ALWAYS", d(2), d(3))] * 2


# --------------------------------------------------------------------------- management


def test_stats_cleanup_invalidate_and_clear(make_cache, price_api, clock):
    cache = make_cache(data_fetcher=price_api, ttl_seconds=3600)
    cache.get_data(symbol=["AAPL", "MSFT"], start_date=d(1), end_date=d(10))
    cache.get_data(symbol=["AAPL", "MSFT"], start_date=d(1), end_date=d(10))
    stats = cache.get_cache_stats()
    assert stats == {
        "table_name": "timeseries_cache",
        "primary_keys": ["symbol", "date"],
        "range_column": "date",
        "ttl_seconds": 3600.0,
        "total_records": 16,
        "expired_records": 0,
        "known_empty_entries": 2,  # one weekend per symbol
        "latest_cached_at": clock.now,
        "hits": 1,
        "misses": 1,
        "fetch_calls": 1,
        "rows_fetched": 16,
        "fetch_errors": 0,
        "stale_served": 0,
    }
    assert cache.invalidate_cache(symbol="MSFT") == 8
    assert cache.get_cache_stats()["known_empty_entries"] == 1
    clock.advance(1800)
    cache.get_data(symbol="MSFT", start_date=d(1), end_date=d(3))
    clock.advance(1801)  # AAPL's rows expired, MSFT's not
    assert cache.get_cache_stats()["expired_records"] == 8
    assert cache.cleanup_expired() == 8
    assert cache.get_cache_stats()["total_records"] == 3
    assert cache.clear_cache() == 3
    after = cache.get_cache_stats()
    assert (after["total_records"], after["known_empty_entries"]) == (0, 0)


def test_invalidating_a_range_refetches_just_that_range(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api)
    cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(31))
    assert cache.invalidate_cache(start_date=d(6), end_date=d(8)) == 1  # a weekend and Monday
    price_api.calls.clear()
    cache.get_data(symbol="AAPL", start_date=d(1), end_date=d(31))
    assert price_api.calls == [("AAPL", d(6), d(8))]


def test_values_are_bound_never_formatted_into_sql(make_cache, price_api):
    cache = make_cache(data_fetcher=price_api)
    hostile = "X'); DROP TABLE timeseries_cache; --"
    frame = cache.get_data(symbol=hostile, start_date=d(2), end_date=d(3))
    assert frame["symbol"].tolist() == [hostile, hostile]
    assert cache.get_result(symbol=hostile, start_date=d(2), end_date=d(3)).status == "cached"
    assert cache.get_cache_stats()["total_records"] == 2


def test_a_closed_cache_says_so(make_cache, price_api):
    from cacheness import SqlCacheError

    cache = make_cache(data_fetcher=price_api)
    cache.close()
    with pytest.raises(SqlCacheError, match="closed"):
        cache.get_data(symbol="A", start_date=d(1), end_date=d(2))


def test_the_table_can_live_beside_a_team_cache_in_postgresql(
    fresh_postgres_url, price_api, clock, tmp_path
):
    schema = f"market_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(fresh_postgres_url)
    try:
        with cacheness(
            cache_dir=str(tmp_path),
            metadata_backend="postgresql",
            metadata_backend_options={"url": fresh_postgres_url},
        ) as team:
            team.put({"model": "v3"}, experiment="beside")
            prices = SqlCache.with_postgresql(
                fresh_postgres_url,
                "prices",
                data_fetcher=price_api,
                primary_keys=["symbol", "date"],
                schema=schema,
                clock=clock,
                symbol=String,
                date=Date,
                close=Float,
                volume=Integer,
            )
            with prices:
                frame = prices.get_data(symbol="AAPL", start_date=d(2), end_date=d(5))
                assert len(frame) == 4
                assert prices.get_cache_stats()["table_name"] == f"{schema}.prices"
            assert team.get(experiment="beside") == {"model": "v3"}
        with engine.connect() as connection:
            tables = connection.execute(
                sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            ).scalars()
            assert sorted(tables) == ["prices", "prices__sqlcache_empty"]
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
