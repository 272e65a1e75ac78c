"""Increments, grids and gap detection: units, then SqlCache against a model of the source."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cacheness import ConfigError, SqlCache
from cacheness._sql_cache.gaps import missing_runs
from cacheness._sql_cache.increments import (
    Axis,
    BusinessDays,
    parse_ordered_increment,
    parse_time_increment,
)


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("30s", timedelta(seconds=30)),
        ("30sec", timedelta(seconds=30)),
        ("5min", timedelta(minutes=5)),
        ("15T", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("2hours", timedelta(hours=2)),
        ("1D", timedelta(days=1)),
        ("day", timedelta(days=1)),
        ("7days", timedelta(days=7)),
        ("1W", timedelta(weeks=1)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        ("1B", BusinessDays(1)),
        ("2B", BusinessDays(2)),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (300, timedelta(minutes=5)),
        (0.5, timedelta(milliseconds=500)),
    ],
)
def test_time_increments_are_understood(text, step):
    assert parse_time_increment(text) == step


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1M", "not a fixed duration"),
        ("1MS", "not a fixed duration"),
        ("3months", "not a fixed duration"),
        ("1Y", "not a fixed duration"),
        ("5m", "write minutes as 'min'"),
        ("fortnight", "not understood"),
        ("", "not understood"),
        ("1.5B", "whole number"),
        (0, "positive"),
        (timedelta(0), "positive"),
        (True, "got bool"),
        ([5], "got list"),
    ],
)
def test_bad_time_increments_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_time_increment(text)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_ordered_increments_are_positive_integers(bad):
    with pytest.raises(ConfigError, match="positive integer"):
        parse_ordered_increment(bad)


def test_a_date_axis_rounds_to_its_grid():
    weekly = Axis.for_kind("date", timedelta(days=7))
    assert weekly.value(weekly.ceil(date(2024, 1, 1))) == date(2024, 1, 4)  # Thursdays
    assert weekly.value(weekly.floor(date(2024, 1, 1))) == date(2023, 12, 28)
    with pytest.raises(ConfigError, match="whole days"):
        Axis.for_kind("date", timedelta(hours=6))


def test_a_business_day_axis_skips_weekends():
    axis = Axis.for_kind("date", BusinessDays(1))
    friday, saturday, monday = date(2024, 1, 5), date(2024, 1, 6), date(2024, 1, 8)
    assert axis.ceil(saturday) == axis.ceil(monday) == axis.floor(friday) + 1
    assert axis.value(axis.floor(saturday)) == friday
    days = np.array([(friday - date(1970, 1, 1)).days, (saturday - date(1970, 1, 1)).days])
    index, on_grid = axis.grid(days)
    assert on_grid.tolist() == [True, False]
    assert axis.value(int(index[0])) == friday
    assert axis.steps(timedelta(days=3)) == 3
    with pytest.raises(ConfigError, match="need a Date column"):
        Axis.for_kind("utc", BusinessDays(1))


def test_a_utc_axis_is_aligned_to_the_epoch():
    axis = Axis.for_kind("utc", timedelta(minutes=5))
    at = datetime(2024, 3, 1, 9, 32, 10, tzinfo=UTC)
    assert axis.value(axis.ceil(at)) == datetime(2024, 3, 1, 9, 35, tzinfo=UTC)
    assert axis.value(axis.floor(at)) == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    assert axis.steps(timedelta(minutes=12)) == 3
    stamps = pd.Series(pd.to_datetime(["2024-03-01 09:30", "2024-03-01 09:31"], utc=True))
    index, on_grid = axis.grid(axis.series_units(stamps))
    assert on_grid.tolist() == [True, False]
    assert axis.value(int(index[0])) == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def test_an_int_axis_steps_by_its_increment():
    axis = Axis.for_kind("int", 10)
    assert (axis.ceil(11), axis.floor(19), axis.value(2)) == (2, 1, 20)
    with pytest.raises(ConfigError, match="ordered_increment"):
        Axis.for_kind("int", timedelta(days=1))
    with pytest.raises(ConfigError, match="time_increment"):
        Axis.for_kind("date", 3)


def test_missing_runs_examples():
    assert missing_runs(0, 9, np.array([], dtype=np.int64)) == [(0, 9)]
    assert missing_runs(0, 9, np.arange(10)) == []
    assert missing_runs(5, 4, np.array([], dtype=np.int64)) == []
    assert missing_runs(0, 9, np.array([3, 3, 4, 20])) == [(0, 2), (5, 9)]
    assert missing_runs(0, 9, np.array([9]), [(0, 4), (3, 6)]) == [(7, 8)]
    assert missing_runs(0, 9, np.array([], dtype=np.int64), [(-5, 100)]) == []


@given(
    lo=st.integers(-50, 50),
    span=st.integers(0, 60),
    points=st.lists(st.integers(-60, 120), max_size=40),
    intervals=st.lists(st.tuples(st.integers(-60, 120), st.integers(0, 10)), max_size=5),
)
def test_missing_runs_are_exactly_the_unknown_points(lo, span, points, intervals):
    hi = lo + span
    covered = [(a, a + w) for a, w in intervals]
    runs = missing_runs(lo, hi, np.array(points, dtype=np.int64), covered)
    known = set(points) | {p for a, b in covered for p in range(a, b + 1)}
    unknown = [p for p in range(lo, hi + 1) if p not in known]
    assert [p for a, b in runs for p in range(a, b + 1)] == unknown
    assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(runs))  # maximal


# --------------------------------------------------------------------------- against a model

START = date(2024, 1, 1)
DAYS = 40


class SourceModel(RuleBasedStateMachine):
    """SqlCache on SQLite against a model: which days it knows, and since when.

    The source has a row for every day except holidays. After each ``get_data`` the
    frame is exactly the source's rows of the range, every fetched day was unknown
    before the call (nothing is fetched twice while fresh), and every unknown day of
    the range was fetched (nothing is missed).
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2024, 6, 1, tzinfo=UTC)
        self.holidays = {START + timedelta(days=i) for i in (3, 4, 17, 30)}
        self.known: dict[date, datetime] = {}  # day -> when it was fetched
        self.calls: list[tuple[date, date]] = []
        self.ttl = timedelta(hours=1)

    def fetch(self, symbol, start_date, end_date):
        self.calls.append((start_date, end_date))
        days = [start_date + timedelta(days=i) for i in range((end_date - start_date).days + 1)]
        rows = [(day, float(day.toordinal())) for day in days if day not in self.holidays]
        return pd.DataFrame(rows, columns=["date", "close"])

    @initialize()
    def open_cache(self) -> None:
        self.cache = SqlCache.for_realtime_timeseries(
            "sqlite://",
            data_fetcher=self.fetch,
            ttl_seconds=self.ttl.total_seconds(),
            clock=lambda: self.now,
            close=sa.Float,
        )

    def teardown(self) -> None:
        if hasattr(self, "cache"):
            self.cache.close()

    def fresh(self, day: date) -> bool:
        return day in self.known and self.now < self.known[day] + self.ttl

    @rule(first=st.integers(0, DAYS - 1), length=st.integers(0, 15))
    def get(self, first: int, length: int) -> None:
        start = START + timedelta(days=first)
        end = start + timedelta(days=length)
        unknown = {
            start + timedelta(days=i)
            for i in range(length + 1)
            if not self.fresh(start + timedelta(days=i))
        }
        self.calls.clear()
        frame = self.cache.get_data(symbol="X", start_date=start, end_date=end)
        fetched = {a + timedelta(days=i) for a, b in self.calls for i in range((b - a).days + 1)}
        assert fetched == unknown  # no over-fetching, nothing missed
        for day in fetched:
            self.known[day] = self.now
        expected = [
            start + timedelta(days=i)
            for i in range(length + 1)
            if start + timedelta(days=i) not in self.holidays
        ]
        assert frame["date"].dt.date.tolist() == expected
        assert frame["close"].tolist() == [float(day.toordinal()) for day in expected]

    @rule(minutes=st.integers(1, 90))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(first=st.integers(0, DAYS - 1), length=st.integers(0, 5))
    def invalidate(self, first: int, length: int) -> None:
        start = START + timedelta(days=first)
        end = start + timedelta(days=length)
        self.cache.invalidate_cache(symbol="X", start_date=start, end_date=end)
        # Known-empty entries overlapping the range go too: the days they cover are
        # unknown again, even outside the range.
        for day in list(self.known):
            if start <= day <= end:
                del self.known[day]
        self._forget_empty_around(start, end)

    def _forget_empty_around(self, start: date, end: date) -> None:
        with self.cache.engine.connect() as connection:
            empty = self.cache.tables.empty
            left = {
                (row.range_start, row.range_end)
                for row in connection.execute(sa.select(empty.c.range_start, empty.c.range_end))
            }
        for day in list(self.known):
            if day in self.holidays and not any(a <= day <= b for a, b in left):
                del self.known[day]

    @invariant()
    def stats_add_up(self) -> None:
        if hasattr(self, "cache"):
            stats = self.cache.get_cache_stats()
            assert stats["total_records"] <= DAYS + 15


SourceModel.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_sql_cache_matches_a_model_of_its_source = SourceModel.TestCase
