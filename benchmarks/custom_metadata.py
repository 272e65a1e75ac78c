"""Custom metadata tables: what a row costs a put, and how fast an indexed column answers.

Run:  python -m hatch run bench:python benchmarks/custom_metadata.py [--quick] [--json out.json]
      [--entries N] [--rounds R]

On the embedded default (SQLite index + files), in one run, interleaved round by round:

* ``put``            ``BlobStore.put`` of a small dict, one transaction each, median of a
                     round's puts: without custom metadata, and with one custom row (the
                     entry and its row committed together);
* ``cache.put``      the same through the cache (``cacheness.put`` with key parameters);
* ``query``          over ``--entries`` entries (default 100,000; ``--quick`` 10,000), each
                     with one custom row: ``query_custom(Run, Run.bucket == b)`` on an
                     indexed column selecting 1 % of them (target <= 50 ms on SQLite),
                     ``query_custom_entries`` (the same 1 % joined back to entries) and, for
                     reference, the JSON metadata filter ``{"metadata.bucket": b}`` over
                     the same entries (the way without custom tables).

Every figure is the median of ``--rounds`` rounds; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cacheness import CustomMetadataBase, cacheness, custom_metadata_model
from cacheness.storage import BlobStore, Entry

BUCKETS = 100  # an equality on ``bucket`` selects 1 % of the entries


@custom_metadata_model("bench_runs")
class Run(CustomMetadataBase):
    __tablename__ = "custom_bench_runs"
    run_id: Mapped[str] = mapped_column(String(40))
    bucket: Mapped[int] = mapped_column(Integer, index=True)
    accuracy: Mapped[float]


def row(n: int) -> Run:
    return Run(run_id=str(n), bucket=n % BUCKETS, accuracy=0.5)


def timed(work: Callable[[], Any]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start
    finally:
        gc.enable()


def bench_puts(root: Path, puts: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median microseconds per put, with and without one custom row, interleaved."""
    store = BlobStore(root / "store")
    cache = cacheness(cache_dir=str(root / "cache"))
    value = {"lr": 0.01, "layers": [64, 64], "name": "run"}
    samples: dict[str, list[float]] = {
        "BlobStore.put": [],
        "BlobStore.put + 1 custom row": [],
        "cache.put": [],
        "cache.put + 1 custom row": [],
    }
    # create the tables before timing: the first use of a model creates its table
    store.put(value, key="warm", custom_metadata=Run(run_id="w", bucket=0, accuracy=0.5))
    cache.put(value, custom_metadata=Run(run_id="w", bucket=0, accuracy=0.5), warm=1)
    counter = iter(range(10**9))

    def store_plain() -> None:
        for _ in range(puts):
            store.put(value, key=f"p/{next(counter)}")

    def store_custom() -> None:
        for _ in range(puts):
            n = next(counter)
            store.put(value, key=f"c/{n}", custom_metadata=row(n))

    def cache_plain() -> None:
        for _ in range(puts):
            cache.put(value, run=next(counter))

    def cache_custom() -> None:
        for _ in range(puts):
            n = next(counter)
            cache.put(value, custom_metadata=row(n), run=n)

    workloads = {
        "BlobStore.put": store_plain,
        "BlobStore.put + 1 custom row": store_custom,
        "cache.put": cache_plain,
        "cache.put + 1 custom row": cache_custom,
    }
    names = list(workloads)
    for round_number in range(rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in order:
            samples[name].append(timed(workloads[name]) / puts * 1e6)
    store.close()
    cache.close()
    return {name: {"median_us": statistics.median(values)} for name, values in samples.items()}


def bench_query(root: Path, entries: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median milliseconds of 1 % selections over ``entries`` entries with one row each."""
    store = BlobStore(root / "query-store")
    store.put(0, key="warm", custom_metadata=Run(run_id="w", bucket=-1, accuracy=0.0))
    store.delete("warm")
    index = store.metadata
    batch = 10_000
    for start in range(0, entries, batch):
        index.put_many(
            Entry.new(
                f"runs/{i:07d}",
                handler="raw",
                format="bytes",
                inline=b"x",
                size=1,
                metadata={"bucket": i % BUCKETS},
            )
            for i in range(start, min(start + batch, entries))
        )
    engine: sa.Engine = index.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Run.__table__),
            [
                {
                    "cache_key": f"runs/{i:07d}",
                    "run_id": f"r{i}",
                    "bucket": i % BUCKETS,
                    "accuracy": i / entries,
                }
                for i in range(entries)
            ],
        )
        conn.exec_driver_sql("ANALYZE")
    expected = entries // BUCKETS
    checks = {
        "query_custom (1 %)": lambda b: store.query_custom(Run, Run.bucket == b),
        "query_custom_entries (1 %)": lambda b: store.query_custom_entries(Run, Run.bucket == b),
        "JSON metadata filter (1 %, reference)": lambda b: list(
            store.iter_entries(filter={"metadata.bucket": b})
        ),
    }
    for name, run in checks.items():
        found = len(run(7))
        if found != expected:
            raise SystemExit(f"{name} found {found} entries, expected {expected}")
    samples: dict[str, list[float]] = {name: [] for name in checks}
    for round_number in range(rounds):
        bucket = (round_number * 37) % BUCKETS
        for name, run in checks.items():
            samples[name].append(timed(lambda run=run, b=bucket: run(b)) * 1e3)
    store.close()
    return {name: {"median_ms": statistics.median(values)} for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (a smoke run)")
    parser.add_argument("--entries", type=int, default=None, help="entries for the query")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per workload")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    entries = args.entries or (10_000 if args.quick else 100_000)
    rounds = args.rounds or (3 if args.quick else 9)
    puts = 100 if args.quick else 500
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-custom-") as tmp:
        root = Path(tmp)
        put_results = bench_puts(root, puts, rounds)
        query_results = bench_query(root, entries, rounds)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"{'workload':48} median")
    for name, result in put_results.items():
        print(f"{name:48} {result['median_us']:8.1f} us/put")
    for name, result in query_results.items():
        print(f"{name:48} {result['median_ms']:8.2f} ms  ({entries // BUCKETS} of {entries:,})")
    target = query_results["query_custom (1 %)"]["median_ms"]
    print(f"target: query_custom of 1 % <= 50 ms on SQLite: {'met' if target <= 50 else 'MISSED'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "entries": entries,
                    "rounds": rounds,
                    "puts_per_round": puts,
                    "put": put_results,
                    "query": query_results,
                    "load_average": [load_before[0], load_after[0]],
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
