"""SqlCache's cached path against ``pandas.read_sql`` and a Parquet read of the same rows.

Run with ``python -m hatch run bench:python benchmarks/sql_cache.py`` (``--quick`` for a
smoke run on small data, ``--json out.json`` to keep the figures, ``--backends
sqlite,postgresql,duckdb`` to choose, ``--postgres-url URL``).

The data: 500 symbols x 252 business days of 2023 (126,000 rows of symbol, date, open,
high, low, close, volume), in a ``SqlCache.for_timeseries`` table with
``time_increment="1B"``. For each database (SQLite file; PostgreSQL at
``--postgres-url``, ``CACHENESS_BENCH_POSTGRES_URL`` or the local server, in a schema of
its own dropped afterwards; DuckDB file when its driver is installed):

* ``first fill``: one ``get_data`` of all 500 symbols for the year on an empty table.
  The fetcher hands back a prepared frame at once, so this is SqlCache's own cost:
  reading the (empty) request, gap detection, checking 126,000 rows, the upsert in one
  transaction and reading them back. Beside it: ``DataFrame.to_sql`` of the same rows
  into a plain table (the bare write) and ``DataFrame.to_parquet`` to a file.
* ``one symbol-year`` (252 rows) and ``50 symbols`` (12,600 rows), fully cached:
  ``get_data(symbol=..., start_date=..., end_date=...)`` (status ``cached``: one indexed
  query, gap detection in memory, dtypes set) against ``pandas.read_sql`` of the very
  SELECT SqlCache runs (its compiled SQL as text, the same bound parameters, the same
  engine) and ``pandas.read_parquet`` of a file holding the same rows, sorted by the key,
  with a ``symbol`` filter. Each call asks for other symbols than the previous one.

Contenders run interleaved, round by round (their order rotated), so background load
hits them alike; a figure is the median over ``--repeat`` rounds (best beside it) of the
mean time per call within a round. The target: the cached path <= 1.5x read_sql's time.
The machine's load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Float, Integer

from cacheness import SqlCache, SqlCacheStatus

START, END = date(2023, 1, 2), date(2023, 12, 19)  # 252 business days
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_prices(symbols: int, days: int) -> pd.DataFrame:
    """``symbols`` x ``days`` daily bars, sorted by (symbol, date)."""
    rng = np.random.default_rng(0)
    names = [f"S{i:04d}" for i in range(symbols)]
    dates = pd.bdate_range(START, periods=days)
    n = symbols * days
    close = np.round(100 + np.cumsum(rng.normal(0, 1, n)), 2)
    return pd.DataFrame(
        {
            "symbol": np.repeat(names, days),
            "date": np.tile(dates.to_numpy(), symbols),
            "open": np.round(close + rng.normal(0, 0.5, n), 2),
            "high": np.round(close + 1, 2),
            "low": np.round(close - 1, 2),
            "close": close,
            "volume": rng.integers(1_000, 1_000_000, n),
        }
    )


class Source:
    """A fetcher over a prepared frame: answers at once, counts its calls."""

    def __init__(self, prices: pd.DataFrame) -> None:
        self.prices = prices
        self.calls = 0

    def __call__(self, symbol: Any, start_date: date, end_date: date) -> pd.DataFrame:
        self.calls += 1
        symbols = symbol if isinstance(symbol, list) else [symbol]
        dates = self.prices["date"]
        rows = self.prices[
            self.prices["symbol"].isin(symbols)
            & (dates >= pd.Timestamp(start_date))
            & (dates <= pd.Timestamp(end_date))
        ]
        return rows.reset_index(drop=True)


def open_cache(url: str, source: Source, table: str, schema: str | None) -> SqlCache:
    return SqlCache.for_timeseries(
        url,
        table_name=table,
        data_fetcher=source,
        time_increment="1B",
        ttl_seconds=None,
        schema=schema,
        open=Float,
        high=Float,
        low=Float,
        close=Float,
        volume=Integer,
    )


def read_sql_of(cache: SqlCache, symbols: list[str]) -> Callable[[], pd.DataFrame]:
    """``pandas.read_sql`` of the SELECT SqlCache runs for ``symbols``, as text."""
    table = cache.table
    where = table.c.symbol == symbols[0] if len(symbols) == 1 else table.c.symbol.in_(symbols)
    statement = (
        sa.select(*table.columns)
        .where(where, table.c.date.between(START, END))
        .order_by(table.c.symbol, table.c.date)
    )
    compiled = statement.compile(
        dialect=cache.engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    values = compiled.construct_params()
    processors = compiled._bind_processors  # the stored form of dates (SQLite: ISO text)
    values = {k: processors[k](v) if k in processors else v for k, v in values.items()}
    sql = str(compiled)
    params: Any = (
        tuple(values[name] for name in compiled.positiontup or ())
        if compiled.positional
        else values
    )
    engine = cache.engine

    def run() -> pd.DataFrame:
        with engine.connect() as connection:
            return pd.read_sql(sql, connection, params=params)

    return run


def timed_rounds(
    contenders: dict[str, Callable[[int], Any]], calls: int, repeat: int
) -> dict[str, dict[str, float]]:
    """Per contender: median and best of the rounds' mean seconds per call."""
    names = list(contenders)
    rounds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = contenders[name]
            start = time.perf_counter()
            for i in range(calls):
                fn(r * calls + i)
            rounds[name].append((time.perf_counter() - start) / calls)
    return {
        name: {"median_s": statistics.median(values), "best_s": min(values)}
        for name, values in rounds.items()
    }


@contextlib.contextmanager
def database(name: str, workdir: Path, postgres_url: str) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty database of kind ``name``."""
    if name == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}", None
    elif name == "duckdb":
        yield f"duckdb:///{workdir / 'bench.duckdb'}", None
    else:
        schema = f"sqlcache_bench_{secrets.token_hex(4)}"
        engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            yield postgres_url, schema
        finally:
            with engine.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()


def bench_backend(
    name: str, prices: pd.DataFrame, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    symbols = sorted(prices["symbol"].unique())
    out: dict[str, Any] = {}
    with database(name, workdir, args.postgres_url) as (url, schema):
        # -- first fill ------------------------------------------------------------
        fills, to_sql, to_parquet = [], [], []
        plain = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        for r in range(args.fill_repeat):
            source = Source(prices)
            cache = open_cache(url, source, f"fill_{r}", schema)
            start = time.perf_counter()
            result = cache.get_result(symbol=symbols, start_date=START, end_date=END)
            fills.append(time.perf_counter() - start)
            assert result.status is SqlCacheStatus.FETCHED
            assert len(result.data) == len(prices)
            cache.close()
            start = time.perf_counter()
            with plain.begin() as connection:
                prices.to_sql(
                    f"plain_{r}", connection, schema=schema, index=False, chunksize=10_000
                )
            to_sql.append(time.perf_counter() - start)
            start = time.perf_counter()
            prices.to_parquet(workdir / f"fill_{r}.parquet", index=False)
            to_parquet.append(time.perf_counter() - start)
        plain.dispose()
        out["first_fill"] = {
            "rows": len(prices),
            "sqlcache_s": statistics.median(fills),
            "to_sql_s": statistics.median(to_sql),
            "to_parquet_s": statistics.median(to_parquet),
        }

        # -- the cached path ---------------------------------------------------------
        source = Source(prices)
        cache = open_cache(url, source, "prices", schema)
        cache.get_data(symbol=symbols, start_date=START, end_date=END)
        stored = cache.get_data(symbol=symbols, start_date=START, end_date=END)
        parquet = workdir / "prices.parquet"
        stored.to_parquet(parquet, index=False, row_group_size=10_000)  # lets filters skip
        calls_before = source.calls
        for label, width in (("one symbol-year", 1), ("50 symbols", 50)):
            groups = [
                [symbols[(i * width + j) % len(symbols)] for j in range(width)]
                for i in range(len(symbols))
            ]
            readers = [read_sql_of(cache, group) for group in groups]

            def cached(i: int, groups: list[list[str]] = groups) -> pd.DataFrame:
                group = groups[i % len(groups)]
                symbol: Any = group[0] if len(group) == 1 else group
                return cache.get_data(symbol=symbol, start_date=START, end_date=END)

            def read_sql(i: int, readers: list[Any] = readers) -> pd.DataFrame:
                return readers[i % len(readers)]()

            def read_parquet(i: int, groups: list[list[str]] = groups) -> pd.DataFrame:
                return pd.read_parquet(parquet, filters=[("symbol", "in", groups[i % len(groups)])])

            sample = cached(0)
            assert len(sample) == 252 * width
            assert len(read_sql(0)) == len(sample) == len(read_parquet(0))
            figures = timed_rounds(
                {
                    "SqlCache.get_data": cached,
                    "pandas.read_sql": read_sql,
                    "read_parquet": read_parquet,
                },
                args.calls if width == 1 else max(args.calls // 5, 1),
                args.repeat,
            )
            base = figures["pandas.read_sql"]["median_s"]
            for figure in figures.values():
                figure["vs_read_sql"] = figure["median_s"] / base
            out[label] = figures
        assert source.calls == calls_before, "the cached path must not fetch"
        cache.close()
    return out


def report(name: str, figures: dict[str, Any]) -> list[str]:
    fill = figures["first_fill"]
    lines = [
        f"\n## {name}",
        f"first fill of {fill['rows']:,} rows: SqlCache {fill['sqlcache_s']:.2f} s "
        f"(to_sql {fill['to_sql_s']:.2f} s, to_parquet {fill['to_parquet_s']:.2f} s)",
        f"{'workload':18} {'contender':20} {'ms/call':>9} {'(best)':>8} {'x read_sql':>11}",
    ]
    for label in ("one symbol-year", "50 symbols"):
        for contender, figure in figures[label].items():
            lines.append(
                f"{label:18} {contender:20} {figure['median_s'] * 1e3:9.2f} "
                f"{figure['best_s'] * 1e3:8.2f} {figure['vs_read_sql']:11.2f}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data: a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--repeat", type=int, default=7, help="rounds per workload")
    parser.add_argument("--calls", type=int, default=50, help="calls per round (one symbol)")
    parser.add_argument("--fill-repeat", type=int, default=3, help="first fills to time")
    parser.add_argument("--backends", default="sqlite,postgresql,duckdb")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CACHENESS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    args = parser.parse_args()
    symbols, days = (60, 252) if args.quick else (500, 252)
    if args.quick:
        args.repeat, args.calls, args.fill_repeat = 2, 10, 1
    prices = make_prices(symbols, days)
    load_before = os.getloadavg()
    print(f"# SqlCache benchmark: {symbols} symbols x {days} days, load average {load_before}")
    results: dict[str, Any] = {}
    for name in args.backends.split(","):
        if name == "duckdb" and importlib.util.find_spec("duckdb_engine") is None:
            print("\n## duckdb skipped: duckdb_engine is not installed")
            continue
        with tempfile.TemporaryDirectory() as scratch:
            try:
                results[name] = bench_backend(name, prices, Path(scratch), args)
            except sa.exc.OperationalError as exc:
                print(f"\n## {name} skipped: {exc.orig}")
                continue
        print("\n".join(report(name, results[name])))
    load_after = os.getloadavg()
    print(f"\n# load average after: {load_after}  (target: SqlCache <= 1.5x read_sql)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": symbols * days,
                    "load_before": load_before,
                    "load_after": load_after,
                    "versions": {
                        "pandas": pd.__version__,
                        "sqlalchemy": sa.__version__,
                        "numpy": np.__version__,
                    },
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
