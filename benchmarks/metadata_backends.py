"""Metadata backend speed: memory, json, sqlite and postgresql side by side.

Run:  python -m hatch run bench:python benchmarks/metadata_backends.py [--quick] [--json out.json]
      [--entries N] [--backends sqlite,postgresql] [--postgres-url URL]

Every backend gets the same index of ``--entries`` entries (default 100,000; ``--quick``
uses 10,000) with metadata ``{"project": "p<i % 100>", "i": i, ...}``, and the same
workloads (the issue's targets are for sqlite on a local disk):

* ``get``          one entry by key, median over random keys          (target <= 30 us)
* ``put``          one new entry, one transaction per put, median     (target <= 120 us)
* ``get_many``     1,000 keys in one call, median                     (target <= 5 ms)
* ``query``        ``{"metadata.project": "p7"}`` returning 1% of the index, median
                   (1,000 of 100,000; target <= 50 ms)
* ``delete_where`` ``{"created_at": {"$lt": middle}}`` removing half the index, once
                   (50,000 of 100,000; target <= 1 s)

``diskcache`` (``Cache.get``/``Cache.set`` of a 100-byte value, SQLite as well) is shown
beside ``get`` and ``put`` as a reference point when it is installed.

The json backend rewrites its whole file on every change: its ``put`` figure is
measured on the full index and on a 1,000-entry index.

``pg-async-commit`` is postgresql with ``synchronous_commit=off`` for its sessions:
commits do not wait for the server to flush its write-ahead log, which is most of a
``put`` on a server that fsyncs (a server crash may lose the last moments of commits,
never corrupt them).

PostgreSQL is found at ``--postgres-url``, ``CACHENESS_BENCH_POSTGRES_URL`` or
``postgresql://postgres@127.0.0.1:5432/postgres``; the benchmark works in a schema of
its own and drops it afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cacheness.storage import (
    Entry,
    JsonMetadataBackend,
    MemoryMetadataBackend,
    MetadataBackend,
    PostgresMetadataBackend,
    SqliteMetadataBackend,
)

try:
    import diskcache
except ImportError:  # the bench env has it; the dev env may not
    diskcache = None

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGETS = {"get": "<= 30 us", "put": "<= 120 us", "get_many": "<= 5 ms",
           "query": "<= 50 ms", "delete_where": "<= 1 s"}  # fmt: skip


def make_entries(count: int) -> list[Entry]:
    return [
        Entry.new(
            f"runs/{i:07d}",
            now=T0 + timedelta(seconds=i),
            blob_ref=f"{i:032x}"[:2] + "/" + f"{i:032x}",
            handler="pickle" if i % 3 else "numpy",
            codec="zstd",
            size=1000 + i,
            raw_size=4000 + i,
            content_hash=f"{i:032x}",
            metadata={"project": f"p{i % 100}", "i": i, "epoch": i % 7, "tag": "nightly"},
        )
        for i in range(count)
    ]


def median_us(fn: Callable[[int], Any], repeats: int) -> float:
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    import psycopg
    import sqlalchemy as sa

    schema = f"cacheness_bench_{secrets.token_hex(4)}"
    conninfo = (
        sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def open_backend(name: str, workdir: Path, pg: tuple[str, str] | None, tag: str) -> MetadataBackend:
    if name == "memory":
        return MemoryMetadataBackend()
    if name == "json":
        return JsonMetadataBackend(workdir / f"{tag}.json")
    if name == "sqlite":
        return SqliteMetadataBackend(workdir / f"{tag}.sqlite")
    assert pg is not None
    url, schema = pg
    options: dict[str, Any] = {}
    if name == "pg-async-commit":  # commits do not wait for the server's WAL fsync
        options["engine_options"] = {"connect_args": {"options": "-c synchronous_commit=off"}}
    return PostgresMetadataBackend(url, schema=schema, table=f"bench_{tag}", **options)


def bench_backend(
    name: str, count: int, workdir: Path, pg: tuple[str, str] | None
) -> dict[str, float]:
    entries = make_entries(count)
    rng = random.Random(42)
    keys = [entry.key for entry in entries]
    slow_writes = name == "json"
    results: dict[str, float] = {}
    backend = open_backend(name, workdir, pg, "full")
    try:
        started = time.perf_counter()
        for start in range(0, count, 20_000):
            backend.put_many(entries[start : start + 20_000])
        results["load_s"] = time.perf_counter() - started
        small_index = entries[:1000]
        del entries  # measure with the index in the backend, not a copy in this process
        gc.collect()

        results["get_us"] = median_us(lambda i: backend.get(rng.choice(keys)), 3000)
        puts = 15 if slow_writes else 2000
        results["put_us"] = median_us(
            lambda i: backend.put(Entry.new(f"new/{i:06d}", size=1, metadata={"project": "x"})),
            puts,
        )
        sample = rng.sample(keys, 1000)
        results["get_many_ms"] = median_us(lambda i: backend.get_many(sample), 30) / 1000
        wanted = {"metadata.project": "p7"}
        assert sum(1 for _ in backend.query(wanted)) == count // 100
        results["query_ms"] = median_us(lambda i: list(backend.query(wanted)), 10) / 1000
        middle = T0 + timedelta(seconds=count // 2)
        started = time.perf_counter()
        removed = backend.delete_where({"created_at": {"$lt": middle}})
        results["delete_where_s"] = time.perf_counter() - started
        assert len(removed) == count // 2, len(removed)
    finally:
        backend.close()
    if slow_writes:
        small = open_backend(name, workdir, pg, "small")
        small.put_many(small_index)
        results["put_small_index_us"] = median_us(
            lambda i: small.put(Entry.new(f"new/{i:06d}", size=1)), 50
        )
        small.close()
    return results


def bench_diskcache(count: int, workdir: Path) -> dict[str, float]:
    cache = diskcache.Cache(str(workdir / "diskcache"))
    value = b"x" * 100
    for i in range(count):
        cache.set(f"runs/{i:07d}", value)
    rng = random.Random(42)
    results = {
        "get_us": median_us(lambda i: cache.get(f"runs/{rng.randrange(count):07d}"), 3000),
        "put_us": median_us(lambda i: cache.set(f"new/{i:06d}", value), 2000),
    }
    cache.close()
    return results


def cell(values: dict[str, float], key: str) -> str:
    if key not in values:
        return "-".rjust(16)
    digits = 3 if key.endswith("_s") else 1
    return f"{values[key]:>16.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 entries")
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--backends", default="memory,json,sqlite,postgresql,pg-async-commit")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "CACHENESS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    count = args.entries or (10_000 if args.quick else 100_000)
    names = [name.strip() for name in args.backends.split(",") if name.strip()]

    print(
        f"metadata backends, {count:,} entries; python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, load {os.getloadavg()[0]:.2f}"
    )
    figures: dict[str, dict[str, float]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="cacheness-bench-"))
    try:
        for name in names:
            if name in ("postgresql", "pg-async-commit"):
                try:
                    with postgres_schema(args.postgres_url) as schema:
                        figures[name] = bench_backend(
                            name, count, workdir, (args.postgres_url, schema)
                        )
                except Exception as exc:  # no server: say so and go on
                    print(f"postgresql skipped: {exc}")
                continue
            figures[name] = bench_backend(name, count, workdir, None)
        if diskcache is not None:
            figures["diskcache (ref)"] = bench_diskcache(count, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    columns = [("get_us", "get us"), ("put_us", "put us"), ("get_many_ms", "get_many ms"),
               ("query_ms", "query ms"), ("delete_where_s", "delete_where s"),
               ("load_s", "load s")]  # fmt: skip
    print(f"{'backend':<16}" + "".join(f"{title:>16}" for _, title in columns))
    for name, values in figures.items():
        cells = "".join(cell(values, key) for key, _ in columns)
        print(f"{name:<16}{cells}")
    print("targets (sqlite, local disk): " + ", ".join(f"{k} {v}" for k, v in TARGETS.items()))
    if "json" in figures and "put_small_index_us" in figures["json"]:
        print(f"json put on a 1,000-entry index: {figures['json']['put_small_index_us']:.0f} us")
    if args.json:
        args.json.write_text(json.dumps({"entries": count, "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
