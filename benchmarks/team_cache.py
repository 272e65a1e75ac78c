"""The team cache (PostgreSQL + S3) against the embedded default (SQLite + files), by clients.

Run:  python -m hatch run bench:python benchmarks/team_cache.py [--quick] [--json out.json]
      [--clients 1,4,8] [--sizes 1024,1048576] [--seconds 3] [--postgres-url URL]

Two caches, measured in the same run with the same workloads:

* ``team``: ``cacheness`` on the ``postgresql`` metadata backend (the local server, a
  schema of its own, dropped afterwards) and the ``s3`` blob backend against a moto
  server started in its own process on loopback (real HTTP, no network latency);
* ``embedded``: the default ``cacheness(cache_dir=...)``: a SQLite index and blob files
  in one local directory.

For each value size (default 1 KB and 1 MB) and each number of client processes
(default 1, 4 and 8), every client is a separate process with its own cache object,
running for ``--seconds`` (default 3; ``--quick``: 0.5):

* ``put``: each client stores new values under keys of its own;
* ``get``: each client reads random keys of a set stored beforehand (every read is a
  hit, and the bytes are checked against their hash by the cache).

The figure is the operations of all clients divided by the wall time from the moment
they all start (a barrier, once every client is connected) to the moment the last one
finishes. Values are
random bytes (incompressible), so 1 MB really moves 1 MB. Payloads under the cache's
``inline_threshold`` (64 KiB by default) live in the index row itself: the 1 KB team
figures are PostgreSQL round trips only, no S3 request.

Both caches sign their entries (the default): the run sets ``CACHENESS_SIGNING_KEY`` to
a key of its own when it is not set, as a team would give every machine the same key.

The machine's load average is printed at the start and the end: on a shared machine,
compare the two caches side by side in one run rather than figures across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KB = 1024
MB = 1 << 20
BUCKET = "team-cache-bench"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------- services


def team_config(scratch: Path, postgres_url: str, schema: str, endpoint: str) -> dict[str, Any]:
    """The team cache's configuration, in the sections form of the docs."""
    return {
        "cache_dir": str(scratch / "team"),
        "metadata": {
            "backend": "postgresql",
            "connection_url": postgres_url,
            "schema": schema,
            "options": {"pool_size": 2},
        },
        "blob": {
            "backend": "s3",
            "bucket": BUCKET,
            "prefix": "bench/",
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "options": {
                "aws_access_key_id": "bench",
                "aws_secret_access_key": "bench",
                "addressing_style": "path",
                "create_bucket": True,
            },
        },
    }


def embedded_config(scratch: Path) -> dict[str, Any]:
    """The embedded default: a SQLite index and blob files under one directory."""
    return {"cache_dir": str(scratch / "embedded")}


# --------------------------------------------------------------------------- clients


def value(size: int, seed: str) -> bytes:
    return random.Random(seed).randbytes(size)


def client(spec: dict[str, Any]) -> None:
    """One client process: open the cache, wait for "go" on stdin, run, report."""
    from cacheness.cache import MISS, cacheness

    rng = random.Random(f"{spec['client']}/{spec['op']}")
    payload = bytearray(value(spec["size"], f"client-{spec['client']}"))
    with cacheness(spec["config"]) as cache:
        blobs = cache.store.blobs  # connections and the bucket check are not measured
        cache.get(bench="warm-up")
        blobs.exists(blobs.ref_for("warm-up"))
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.monotonic()
        stop = started + spec["seconds"]
        done = 0
        while time.monotonic() < stop:
            if spec["op"] == "put":
                payload[:8] = done.to_bytes(8, "little")  # a new value each time
                cache.put(bytes(payload), bench="put", client=spec["client"], i=done)
            else:
                got = cache.get(bench="get", size=spec["size"], i=rng.randrange(spec["keys"]))
                if got is MISS or got is None:
                    raise RuntimeError("a stored key was missing")
            done += 1
        ended = time.monotonic()
    print(json.dumps({"started": started, "ended": ended, "ops": done}), flush=True)


def run_clients(
    config: dict[str, Any], op: str, size: int, clients: int, seconds: float, keys: int
) -> float:
    """Run ``clients`` processes for ``seconds`` each; return their total ops/s."""
    processes = []
    for index in range(clients):
        spec = {"config": config, "op": op, "size": size, "client": index, "keys": keys}
        spec["seconds"] = seconds
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--client", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {op} client failed to start (exit {process.wait()})")
        for process in processes:  # the barrier: every client is connected and waiting
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        times = []
        for process in processes:
            out, _ = process.communicate(timeout=600)
            if process.returncode:
                raise RuntimeError(f"a {op} client failed (exit {process.returncode})")
            times.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    wall = max(t["ended"] for t in times) - min(t["started"] for t in times)
    return sum(t["ops"] for t in times) / wall


def populate(config: dict[str, Any], size: int, keys: int) -> None:
    """Store the values the ``get`` clients read (``bench="get"``, one per key)."""
    from cacheness.cache import cacheness

    with cacheness(config) as cache:
        for i in range(keys):
            cache.put(value(size, f"{size}/{i}"), bench="get", size=size, i=i)


def bench(
    caches: dict[str, dict[str, Any]],
    sizes: list[int],
    clients: list[int],
    seconds: float,
    repeat: int,
) -> list[dict[str, Any]]:
    rows = []
    keys = 50
    for name, config in caches.items():
        for size in sizes:
            populate(config, size, keys)
            for op in ("put", "get"):
                row: dict[str, Any] = {"cache": name, "op": op, "size": size}
                for count in clients:
                    figures = [
                        run_clients(config, op, size, count, seconds, keys) for _ in range(repeat)
                    ]
                    row[str(count)] = statistics.median(figures)
                rows.append(row)
                print(f"  {name:8} {op:3} {label(size):>5}: " + ", ".join(
                    f"{count} clients {row[str(count)]:,.0f} ops/s" for count in clients
                ), flush=True)  # fmt: skip
    return rows


def label(size: int) -> str:
    return f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def table(rows: list[dict[str, Any]], clients: list[int]) -> str:
    header = "| cache | op | value | " + " | ".join(f"{c} client{'s' * (c > 1)}" for c in clients)
    lines = [header + " |", "|---|---|---:|" + "---:|" * len(clients)]
    for row in rows:
        cells = []
        for count in clients:
            ops = row[str(count)]
            cell = f"{ops:,.0f}"
            if row["size"] >= MB:
                cell += f" ({ops * row['size'] / MB:,.0f} MB/s)"
            cells.append(cell)
        lines.append(f"| {row['cache']} | {row['op']} | {label(row['size'])} | " + " | ".join(
            cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,8", help="client process counts")
    parser.add_argument("--sizes", default=f"{KB},{MB}", help="value sizes in bytes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (median)")
    parser.add_argument("--seconds", type=float, default=3.0, help="run time of each figure")
    parser.add_argument("--quick", action="store_true", help="0.5 s per figure")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CACHENESS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
    )
    parser.add_argument("--skip-team", action="store_true", help="only the embedded cache")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="scratch directory")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client(json.loads(args.client))
        return 0

    clients = [int(part) for part in args.clients.split(",") if part]
    sizes = [int(part) for part in args.sizes.split(",") if part]
    # a team cache signs entries with a key every machine shares: here one for the run,
    # inherited by every client process (as CACHENESS_SIGNING_KEY would be in a team)
    os.environ.setdefault("CACHENESS_SIGNING_KEY", secrets.token_hex(32))
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.2f} at start")
    # the sibling benchmarks' service helpers (this file's folder is on sys.path)
    from blob_backends import moto_server  # moto in a process of its own
    from metadata_backends import postgres_schema  # a schema of our own, dropped after

    scratch = Path(tempfile.mkdtemp(prefix="cacheness-team-bench-", dir=args.dir))
    results: dict[str, Any] = {"load_average_start": load, "clients": clients, "sizes": sizes}
    results["seconds"] = 0.5 if args.quick else args.seconds
    try:
        with contextlib.ExitStack() as stack:
            caches = {"embedded": embedded_config(scratch)}
            if not args.skip_team:
                endpoint = stack.enter_context(moto_server())
                schema = stack.enter_context(postgres_schema(args.postgres_url))
                caches["team"] = team_config(scratch, args.postgres_url, schema, endpoint)
            seconds = 0.5 if args.quick else args.seconds
            rows = bench(caches, sizes, clients, seconds, args.repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["rows"] = rows
    results["load_average_end"] = os.getloadavg()[0]
    print("\nops/s of all clients together (each client a process with its own cache)")
    print(table(rows, clients))
    print(f"\nload average at the end: {results['load_average_end']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
