"""Fixtures of the SqlCache tests: one suite over SQLite, PostgreSQL and DuckDB.

``db_url`` is parametrized over the three databases: SQLite files, the real PostgreSQL
service (a fresh schema per test; a failure under ``CACHENESS_REQUIRE_SERVICES=1`` when
it is missing) and DuckDB files (skipped, with the reason, only when its SQLAlchemy
driver cannot be imported). ``price_api`` is a fake market-data API that counts its
calls; ``make_cache`` builds caches on ``db_url`` with the fake clock and closes them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Float, Integer

from cacheness import SqlCache

DIALECTS = ["sqlite", "postgresql", "duckdb"]
DUCKDB_MISSING = importlib.util.find_spec("duckdb_engine") is None
DUCKDB_REASON = "DuckDB's SQLAlchemy driver (duckdb_engine) is not installed: cacheness[duckdb]"


def business_days(start: date, end: date) -> list[date]:
    return [d.date() for d in pd.bdate_range(start, end)]


class PriceAPI:
    """A fake daily price API: business days only, deterministic prices, counted calls.

    ``calls`` holds ``(symbol, start_date, end_date)`` of every call. ``holidays`` are
    business days without a bar; ``fail`` is raised when set; ``revision`` shifts
    every close (a source revising its history).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, date, date]] = []
        self.holidays: set[date] = set()
        self.fail: Exception | None = None
        self.revision = 0.0

    def close(self, symbol: str, day: date) -> float:
        return round(100 + sum(map(ord, symbol)) % 50 + day.toordinal() % 37 + self.revision, 2)

    def volume(self, symbol: str, day: date) -> int:
        return 1_000 * (len(symbol) + day.day)

    def expected(self, symbols: list[str], start: date, end: date) -> pd.DataFrame:
        rows = [
            (s, pd.Timestamp(d), self.close(s, d), self.volume(s, d))
            for s in sorted(symbols)
            for d in business_days(start, end)
            if d not in self.holidays
        ]
        return pd.DataFrame(rows, columns=["symbol", "date", "close", "volume"])

    def __call__(self, symbol: Any, start_date: date, end_date: date) -> pd.DataFrame:
        self.calls.append((symbol, start_date, end_date))
        if self.fail is not None:
            raise self.fail
        symbols = symbol if isinstance(symbol, list) else [symbol]
        frame = self.expected(symbols, start_date, end_date)
        if not isinstance(symbol, list):
            frame = frame.drop(columns="symbol")  # one symbol asked: SqlCache fills it in
        return frame


@pytest.fixture
def price_api() -> PriceAPI:
    return PriceAPI()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    if request.param == "duckdb" and DUCKDB_MISSING:
        pytest.skip(DUCKDB_REASON)
    return str(request.param)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, dialect: str, tmp_path) -> str:
    if dialect == "postgresql":
        return str(request.getfixturevalue("fresh_postgres_url"))
    if dialect == "duckdb":
        return f"duckdb:///{tmp_path / 'cache.duckdb'}"
    return f"sqlite:///{tmp_path / 'cache.db'}"


@pytest.fixture
def make_cache(db_url: str, clock) -> Iterator[Callable[..., SqlCache]]:
    """``make(builder="timeseries", **kwargs)``: a SqlCache on ``db_url`` with the fake clock.

    ``builder`` is ``"timeseries"`` (``for_timeseries`` with close and volume columns
    unless columns are given), ``"lookup"`` (``for_lookup_table``) or ``"table"``
    (the constructor: ``make("table", table=..., data_fetcher=...)``).
    """
    made: list[SqlCache] = []

    def make(builder: str = "timeseries", **kwargs: Any) -> SqlCache:
        kwargs.setdefault("clock", clock)
        if builder == "timeseries":
            if not {"close", "volume"} & set(kwargs) and "columns" not in kwargs:
                kwargs.update(close=Float, volume=Integer)
            cache = SqlCache.for_timeseries(db_url, **kwargs)
        elif builder == "lookup":
            cache = SqlCache.for_lookup_table(db_url, **kwargs)
        else:
            cache = SqlCache(db_url, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()
