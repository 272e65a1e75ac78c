"""BlobStore speed, side by side with diskcache, joblib.Memory and bare baselines.

Run with ``python -m hatch run bench:python benchmarks/blob_store.py`` (``--quick`` for a
smoke run on small data, ``--json out.json`` to keep the figures, ``--strict`` to exit
with status 1 when a target is missed).

``BlobStore`` runs on its default pairing, sqlite + filesystem. Every contender works in
a fresh temporary directory in every round; contenders run interleaved, round by round
(their order rotated each round), so background load hits them alike. Before each timed
section garbage is collected and dirty pages are flushed (``os.sync``), so no contender
pays for another's writeback. Speeds are the best of ``--repeat`` rounds (the least
disturbed by other work), with the median beside it; the machine's load average is
printed before and after.

* **small objects**: 2,000 dicts of ~200 bytes, one ``put`` and one ``get`` per dict.
  Contenders: ``diskcache.Cache``; ``joblib.Memory`` (a cached function returning the
  dict: the first call stores, the second loads); bare pickle files, one per key (what
  joblib's store does underneath). Target: BlobStore put and get >= 80 % of diskcache's
  operations per second.
* **numpy**: a float64 array of 10M elements, compressible (cumulative sum of small
  random integers). Baseline: a bare ``blosc2.pack_array2`` with the same settings as
  the store (lz4, shuffle, all cores) written to a file, and ``blosc2.unpack_array2``
  of the file's bytes. Targets: put >= 80 % of the bare speed, get >= 80 %, stored size
  <= 70 % of the raw bytes.
* **pandas**: 1M rows x 5 columns (int, float, category, datetime, bool). Baseline:
  bare ``DataFrame.to_parquet`` / ``pandas.read_parquet``. Targets: put and get >= 2x
  the bare speed, stored size <= 70 % of raw (``memory_usage(deep=True)``), in a
  data-only format (Arrow IPC by default; the Parquet option is shown too).

diskcache (pickle) and joblib.Memory (joblib's pickler, arrays uncompressed) are shown
in the large cases as well, for reference.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers import pandas_frame  # benchmarks/handlers.py, beside this script

from cacheness.storage import BlobStore, SerializationOptions
from cacheness.storage._compression import default_threads  # cores this process may use

DEFAULT_SERIALIZATION = SerializationOptions()

try:  # the bench environment has both; the dev environment may not
    import diskcache
except ImportError:
    diskcache = None
try:
    import joblib
except ImportError:
    joblib = None

# --------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """A system under test: opens a store in a fresh directory, puts and gets by key.

    ``open(folder)`` returns a handle; ``put(handle, key, obj)`` and ``get(handle, key)``
    work on it; ``close(handle)`` releases it; ``payload(handle, keys)`` returns the
    stored bytes of the payloads (None: count the files in the folder).
    """

    name: str
    open: Callable[[Path], Any]
    put: Callable[[Any, str, Any], None]
    get: Callable[[Any, str], Any]
    close: Callable[[Any], None] = lambda handle: None
    payload: Callable[[Any, list[str]], int | None] = lambda handle, keys: None


def blob_store(name: str = "BlobStore (sqlite + filesystem)", **options: Any) -> Contender:
    def put(store: BlobStore, key: str, obj: Any) -> None:
        store.put(obj, key=key)

    def payload(store: BlobStore, keys: list[str]) -> int:
        return sum(entry.size for entry in store.metadata.get_many(keys).values())

    return Contender(
        name,
        open=lambda folder: BlobStore(folder, **options),
        put=put,
        get=lambda store, key: store.get(key),
        close=lambda store: store.close(),
        payload=payload,
    )


def disk_cache() -> Contender | None:
    if diskcache is None:
        return None
    return Contender(
        "diskcache.Cache",
        open=lambda folder: diskcache.Cache(str(folder)),
        put=lambda cache, key, obj: cache.set(key, obj),
        get=lambda cache, key: cache.get(key),
        close=lambda cache: cache.close(),
    )


_OBJECTS: dict[str, Any] = {}
"""What the joblib-cached function returns, by key (computing it costs nothing)."""


def produce(key: str) -> Any:
    """The function joblib.Memory caches: returns the object to store for ``key``."""
    return _OBJECTS[key]


def joblib_memory() -> Contender | None:
    if joblib is None:
        return None

    def open_memory(folder: Path) -> Any:
        return joblib.Memory(str(folder), verbose=0).cache(produce)

    return Contender(
        "joblib.Memory (cached function)",
        open=open_memory,
        put=lambda cached, key, obj: cached(key),  # a miss: computes and stores
        get=lambda cached, key: cached(key),  # a hit: loads
    )


def pickle_files() -> Contender:
    def put(folder: Path, key: str, obj: Any) -> None:
        with (folder / f"{key}.pkl").open("wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)

    def get(folder: Path, key: str) -> Any:
        with (folder / f"{key}.pkl").open("rb") as f:
            return pickle.load(f)

    return Contender(
        "bare pickle files (one per key)", open=lambda folder: folder, put=put, get=get
    )


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    """One contender's figures in one case."""

    name: str
    put_s: list[float] = field(default_factory=list)
    get_s: list[float] = field(default_factory=list)
    stored_bytes: int = 0
    disk_bytes: int = 0

    def best(self, op: str) -> float:
        return min(self.put_s if op == "put" else self.get_s)

    def median(self, op: str) -> float:
        return statistics.median(self.put_s if op == "put" else self.get_s)


@dataclass
class Case:
    """One workload: the same objects stored and loaded by every contender."""

    title: str
    objects: dict[str, Any]
    raw_bytes: int
    check: Callable[[Any, Any], None]
    rows: list[Row] = field(default_factory=list)

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@contextmanager
def settled() -> Iterator[None]:
    """Start a timed section with nothing left over from the previous one.

    Garbage is collected, and dirty pages are flushed (``os.sync``): otherwise a
    contender that fsyncs (BlobStore) would wait behind the writeback of what the
    contenders before it left in the page cache, and one that does not would be
    throttled by it.
    """
    gc.collect()
    if hasattr(os, "sync"):
        os.sync()
    yield


def run_case(case: Case, contenders: list[Contender], repeat: int) -> None:
    """Put every object, then get every object, for each contender, ``repeat`` rounds."""
    keys = list(case.objects)
    _OBJECTS.clear()
    _OBJECTS.update(case.objects)
    case.rows = [Row(contender.name) for contender in contenders]
    pairs = list(zip(contenders, case.rows, strict=True))
    for turn in range(repeat):
        # Rotate the order each round: no contender always runs right after the same one.
        shift = turn % len(pairs)
        for contender, row in pairs[shift:] + pairs[:shift]:
            with tempfile.TemporaryDirectory(prefix="bench-blob-store-") as tmp:
                folder = Path(tmp)
                handle = contender.open(folder)
                try:
                    with settled():
                        start = time.perf_counter()
                        for key, obj in case.objects.items():
                            contender.put(handle, key, obj)
                        row.put_s.append(time.perf_counter() - start)
                    with settled():
                        start = time.perf_counter()
                        loaded = [contender.get(handle, key) for key in keys]
                        row.get_s.append(time.perf_counter() - start)
                    for key, value in zip(keys, loaded, strict=True):
                        case.check(value, case.objects[key])
                    del loaded
                    stored = contender.payload(handle, keys)
                finally:
                    contender.close(handle)
                row.disk_bytes = folder_bytes(folder)
                row.stored_bytes = row.disk_bytes if stored is None else stored


# --------------------------------------------------------------------------- reporting


@dataclass
class Target:
    case: str
    what: str
    value: float
    goal: str
    met: bool


def speed_targets(
    case: Case, ours: str, baseline: str, factor: float, per_op: int
) -> tuple[list[str], list[Target]]:
    """Print rows relative to ``baseline`` and check ``ours`` is >= ``factor`` x as fast."""
    base = case.row(baseline)
    lines = [
        f"\n## {case.title}",
        f"{'contender':40} {'put best':>10} {'(median)':>10} {'get best':>10} {'(median)':>10}"
        f" {'put x':>6} {'get x':>6} {'stored':>7} {'on disk':>7}",
    ]
    unit = "ops/s" if per_op > 1 else "s"
    for row in case.rows:

        def show(op: str, row: Row = row) -> tuple[str, str]:
            if per_op > 1:
                return f"{per_op / row.best(op):10,.0f}", f"{per_op / row.median(op):10,.0f}"
            return f"{row.best(op):10.4f}", f"{row.median(op):10.4f}"

        put_best, put_median = show("put")
        get_best, get_median = show("get")
        lines.append(
            f"{row.name:40} {put_best} {put_median} {get_best} {get_median}"
            f" {base.best('put') / row.best('put'):6.2f} {base.best('get') / row.best('get'):6.2f}"
            f" {row.stored_bytes / case.raw_bytes:7.1%} {row.disk_bytes / case.raw_bytes:7.1%}"
        )
    lines.append(
        f"(speeds in {unit}; 'x' = speed relative to {baseline}; stored = payload bytes / raw; "
        "on disk = every file in the folder / raw, index included)"
    )
    mine = case.row(ours)
    targets = [
        Target(
            case.title,
            f"{op} speed vs {baseline}",
            base.best(op) / mine.best(op),
            f">= {factor:g}x",
            base.best(op) / mine.best(op) >= factor,
        )
        for op in ("put", "get")
    ]
    return lines, targets


def size_target(case: Case, ours: str, limit: float) -> Target:
    ratio = case.row(ours).stored_bytes / case.raw_bytes
    return Target(case.title, "stored size / raw", ratio, f"<= {limit:.0%}", ratio <= limit)


# --------------------------------------------------------------------------- cases


def small_values(count: int) -> dict[str, Any]:
    return {
        f"user_{i:05d}": {
            "id": i,
            "name": f"user_{i}",
            "email": f"user_{i}@example.org",
            "score": round(i / 7, 4),
            "tags": ["alpha", "beta", "gamma"],
            "active": i % 2 == 0,
            "notes": "x" * 60,
        }
        for i in range(count)
    }


def bench_small(count: int, repeat: int) -> tuple[Case, list[str], list[Target]]:
    values = small_values(count)
    raw = sum(len(pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)) for v in values.values())

    def check(loaded: Any, expected: Any) -> None:
        assert loaded == expected, (loaded, expected)

    title = f"small objects: {count:,} dicts of ~{raw // count} bytes (pickled)"
    case = Case(title, values, raw, check)
    ours = blob_store()
    contenders = [c for c in (ours, disk_cache(), joblib_memory(), pickle_files()) if c]
    run_case(case, contenders, repeat)
    if diskcache is None:
        lines, _ = speed_targets(case, ours.name, ours.name, 0.8, count)
        return case, [*lines, "diskcache is not installed: run in the bench environment"], []
    lines, targets = speed_targets(case, ours.name, "diskcache.Cache", 0.8, count)
    return case, lines, targets


def compressible_array(n: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    return np.cumsum(rng.integers(-5, 6, n)).astype(np.float64)


def bench_numpy(n: int, repeat: int) -> tuple[Case, list[str], list[Target]]:
    import blosc2
    import numpy as np

    array = compressible_array(n)
    cparams = {
        "codec": blosc2.Codec.LZ4,
        "clevel": DEFAULT_SERIALIZATION.blosc2_clevel,
        "filters": [blosc2.Filter.SHUFFLE],
        "typesize": array.itemsize,
        "nthreads": default_threads(),
    }

    def bare_put(folder: Path, key: str, obj: Any) -> None:
        packed = blosc2.pack_array2(obj, cparams=cparams)
        with (folder / key).open("wb") as f:
            f.write(packed)

    def bare_get(folder: Path, key: str) -> Any:
        with (folder / key).open("rb") as f:
            return blosc2.unpack_array2(f.read())

    def check(loaded: Any, expected: Any) -> None:
        assert loaded.dtype == expected.dtype
        assert loaded.shape == expected.shape
        assert np.array_equal(loaded, expected)

    title = f"numpy float64, {n:,} elements (compressible)"
    case = Case(title, {"array": array}, array.nbytes, check)
    baseline = "bare blosc2 pack_array2 + file"
    ours = blob_store()
    contenders = [
        ours,
        Contender(baseline, open=lambda folder: folder, put=bare_put, get=bare_get),
        *(c for c in (disk_cache(), joblib_memory()) if c),
    ]
    run_case(case, contenders, repeat)
    lines, targets = speed_targets(case, ours.name, baseline, 0.8, 1)
    return case, lines, [*targets, size_target(case, ours.name, 0.7)]


def bench_pandas(n: int, repeat: int) -> tuple[Case, list[str], list[Target]]:
    import pandas as pd

    data = pandas_frame(n)  # the handler benchmark's frame: the same case

    def bare_put(folder: Path, key: str, obj: Any) -> None:
        obj.to_parquet(folder / key)

    def bare_get(folder: Path, key: str) -> Any:
        return pd.read_parquet(folder / key)

    def check(loaded: Any, expected: Any) -> None:
        pd.testing.assert_frame_equal(loaded, expected)

    raw = int(data.memory_usage(deep=True).sum())
    case = Case(f"pandas {n:,} rows x 5 columns", {"frame": data}, raw, check)
    baseline = "bare to_parquet / read_parquet"
    ours = blob_store("BlobStore (arrow-ipc + blosc2, default)")
    contenders = [
        ours,
        blob_store("BlobStore (parquet option)", serialization={"dataframe_format": "parquet"}),
        Contender(baseline, open=lambda folder: folder, put=bare_put, get=bare_get),
        *(c for c in (disk_cache(), joblib_memory()) if c),
    ]
    run_case(case, contenders, repeat)
    lines, targets = speed_targets(case, ours.name, baseline, 2.0, 1)
    return case, lines, [*targets, size_target(case, ours.name, 0.7)]


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="rounds per case (best is kept)")
    parser.add_argument("--quick", action="store_true", help="small data: a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--cases", default="small,numpy,pandas", help="comma-separated: small, numpy, pandas"
    )
    args = parser.parse_args()
    count = 200 if args.quick else 2_000
    n_array = 200_000 if args.quick else 10_000_000
    n_rows = 20_000 if args.quick else 1_000_000
    repeat = 2 if args.quick else args.repeat
    wanted = {name.strip() for name in args.cases.split(",") if name.strip()}

    load_before = os.getloadavg()
    print(
        f"# BlobStore benchmark: {default_threads()} cores, Python {platform.python_version()}, "
        f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
    )
    targets: list[Target] = []
    cases: dict[str, Case] = {}
    runs = {
        "small": lambda: bench_small(count, repeat),
        "numpy": lambda: bench_numpy(n_array, repeat),
        "pandas": lambda: bench_pandas(n_rows, repeat),
    }
    for name, run in runs.items():
        if name not in wanted:
            continue
        case, lines, found = run()
        print("\n".join(lines))
        targets += found
        cases[name] = case
    load_after = os.getloadavg()
    print("\n## targets")
    for target in targets:
        verdict = "met" if target.met else "MISSED"
        print(f"{verdict:6} {target.case}: {target.what} = {target.value:.2f} ({target.goal})")
    print(f"\n# load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cores": default_threads(),
                    "python": platform.python_version(),
                    "load_before": load_before,
                    "load_after": load_after,
                    "quick": args.quick,
                    "repeat": repeat,
                    "cases": {
                        name: {
                            "title": case.title,
                            "raw_bytes": case.raw_bytes,
                            "rows": [vars(row) for row in case.rows],
                        }
                        for name, case in cases.items()
                    },
                    "targets": [vars(target) for target in targets],
                },
                indent=2,
            )
        )
    missed = [target for target in targets if not target.met]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
