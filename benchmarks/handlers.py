"""Handler-level speed: numpy and pandas handlers against the bare library baselines.

Run with ``python -m hatch run bench:python benchmarks/handlers.py`` (``--quick`` for a
smoke run on small data, ``--json out.json`` to keep the figures).

Side by side in one run, each case writing into a fresh temporary directory:

* numpy: a compressible float64 array of 10M elements (cumulative sum of small random
  integers). The ``numpy`` handler (Blosc2: lz4, clevel 5, shuffle, all cores, streamed
  in chunks) against a bare ``blosc2.pack_array2`` with the same settings written to a
  file, and ``blosc2.unpack_array2`` of the file's bytes.
  Targets: put and get >= 80 % of the bare speed, stored size <= 70 % of raw.
* pandas: 1M rows x 5 columns (int, float, category, datetime, bool). The ``pandas``
  handler (Arrow IPC + Blosc2 by default; Parquet as an option) against bare
  ``DataFrame.to_parquet`` / ``pandas.read_parquet``.
  Targets: put and get >= 2x the bare speed, stored size <= 70 % of raw
  (``memory_usage(deep=True)``).
* small objects: the ``plain`` handler on a ~200-byte dict (what the BlobStore stores
  inline), against ``pickle``; reported in microseconds per call.

Contenders run interleaved, round by round, so background load hits them alike;
timings are the best of ``--repeat`` rounds (the least disturbed by other work), with
the median next to it. The machine's load average is printed before and after.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cacheness.storage import SerializationOptions, get_handler
from cacheness.storage._compression import default_threads  # cores this process may use

DEFAULT_SERIALIZATION = SerializationOptions()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Return (best, median) seconds of ``repeat`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


class Case:
    """One benchmark case: puts/gets of several contenders on the same data."""

    def __init__(self, title: str, raw_bytes: int) -> None:
        self.title = title
        self.raw = raw_bytes
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, put: tuple[float, float], get: tuple[float, float], size: int) -> None:
        self.rows.append(
            {
                "name": name,
                "put_best_s": put[0],
                "put_median_s": put[1],
                "get_best_s": get[0],
                "get_median_s": get[1],
                "stored_bytes": size,
                "stored_ratio": size / self.raw,
            }
        )

    def report(self, baseline: str, target_speed: float) -> list[str]:
        base = next(row for row in self.rows if row["name"] == baseline)
        lines = [f"\n## {self.title}  (raw {self.raw / 1e6:.1f} MB)"]
        lines.append(
            f"{'contender':44} {'put ms':>8} {'(med)':>7} {'get ms':>8} {'(med)':>7} "
            f"{'put x':>6} {'get x':>6} {'size/raw':>8}"
        )
        for row in self.rows:
            put_speed = base["put_best_s"] / row["put_best_s"]
            get_speed = base["get_best_s"] / row["get_best_s"]
            row["put_speed_vs_baseline"] = put_speed
            row["get_speed_vs_baseline"] = get_speed
            lines.append(
                f"{row['name']:44} {row['put_best_s'] * 1e3:8.1f} {row['put_median_s'] * 1e3:7.1f} "
                f"{row['get_best_s'] * 1e3:8.1f} {row['get_median_s'] * 1e3:7.1f} "
                f"{put_speed:6.2f} {get_speed:6.2f} {row['stored_ratio']:8.3f}"
            )
        lines.append(
            f"(speed x = baseline time / contender time; target for the handler: >= "
            f"{target_speed:g}x, size/raw <= 0.70)"
        )
        return lines


class Contender:
    """Something that writes the case's data to ``path`` and reads it back."""

    def __init__(
        self, name: str, folder: Path, put: Callable[[Path], Any], get: Callable[[Path], Any]
    ) -> None:
        self.name = name
        self.path = folder / "blob"
        self._put = put
        self._get = get

    def put(self) -> None:
        self._put(self.path)

    def get(self) -> Any:
        return self._get(self.path)


def handler_contender(
    name: str, folder: Path, handler: Any, obj: Any, options: SerializationOptions
) -> Contender:
    infos: list[Any] = []

    def put(path: Path) -> None:
        with path.open("wb") as sink:
            infos[:] = [handler.dump(obj, sink, options)]

    def get(path: Path) -> Any:
        with path.open("rb") as source:
            return handler.load(source, infos[0], options, local_path=path)

    return Contender(name, folder, put, get)


def run_case(
    case: Case, contenders: list[Contender], repeat: int, check: Callable[[Any], None]
) -> None:
    """Time every contender's put, then every get, interleaved round by round.

    Interleaving exposes all contenders to the same background load, so the ratios
    between them hold even on a busy machine.
    """
    puts: dict[str, list[float]] = {c.name: [] for c in contenders}
    gets: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(repeat):
        for contender in contenders:
            start = time.perf_counter()
            contender.put()
            puts[contender.name].append(time.perf_counter() - start)
    for _ in range(repeat):
        for contender in contenders:
            start = time.perf_counter()
            loaded = contender.get()
            gets[contender.name].append(time.perf_counter() - start)
            check(loaded)
            del loaded
    for contender in contenders:
        put, get = puts[contender.name], gets[contender.name]
        case.add(
            contender.name,
            (min(put), statistics.median(put)),
            (min(get), statistics.median(get)),
            contender.path.stat().st_size,
        )


def bench_numpy(n: int, repeat: int) -> tuple[Case, list[str]]:
    import blosc2
    import numpy as np

    rng = np.random.default_rng(0)
    array = np.cumsum(rng.integers(-5, 6, n)).astype(np.float64)
    case = Case(f"numpy float64, {n:,} elements (compressible)", array.nbytes)
    options = DEFAULT_SERIALIZATION
    cparams = {
        "codec": blosc2.Codec.LZ4,
        "clevel": options.blosc2_clevel,
        "filters": [blosc2.Filter.SHUFFLE],
        "typesize": array.itemsize,
        "nthreads": default_threads(),
    }

    def bare_put(path: Path) -> None:
        packed = blosc2.pack_array2(array, cparams=cparams)
        with path.open("wb") as f:
            f.write(packed)

    def bare_get(path: Path) -> Any:
        with path.open("rb") as f:
            return blosc2.unpack_array2(f.read())

    def check(loaded: Any) -> None:
        assert loaded.dtype == array.dtype
        assert loaded.tobytes() == array.tobytes()

    baseline = "bare blosc2 pack_array2 + file"
    with tempfile.TemporaryDirectory() as bare, tempfile.TemporaryDirectory() as ours:
        contenders = [
            Contender(baseline, Path(bare), bare_put, bare_get),
            handler_contender(
                "numpy handler (blosc2 lz4, streamed)",
                Path(ours),
                get_handler("numpy"),
                array,
                options,
            ),
        ]
        run_case(case, contenders, repeat, check)
    return case, case.report(baseline, 0.8)


def pandas_frame(n: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "i": rng.integers(0, 1000, n),
            "f": rng.normal(size=n).round(2),
            "c": pd.Categorical(rng.choice(["red", "green", "blue", "black"], n)),
            "t": pd.date_range("2020-01-01", periods=n, freq="s"),
            "b": rng.random(n) > 0.5,
        }
    )


def bench_pandas(n: int, repeat: int) -> tuple[Case, list[str]]:
    import pandas as pd

    frame = pandas_frame(n)
    case = Case(f"pandas {n:,} rows x 5 columns", int(frame.memory_usage(deep=True).sum()))

    def check(loaded: Any) -> None:
        pd.testing.assert_frame_equal(loaded, frame)

    baseline = "bare to_parquet / read_parquet"
    parquet = SerializationOptions(dataframe_format="parquet")
    with (
        tempfile.TemporaryDirectory() as bare,
        tempfile.TemporaryDirectory() as ours,
        tempfile.TemporaryDirectory() as ours_parquet,
    ):
        contenders = [
            Contender(baseline, Path(bare), frame.to_parquet, pd.read_parquet),
            handler_contender(
                "pandas handler (arrow-ipc + blosc2)",
                Path(ours),
                get_handler("pandas"),
                frame,
                DEFAULT_SERIALIZATION,
            ),
            handler_contender(
                "pandas handler, parquet option (zstd)",
                Path(ours_parquet),
                get_handler("pandas"),
                frame,
                parquet,
            ),
        ]
        run_case(case, contenders, repeat, check)
    return case, case.report(baseline, 2.0)


def bench_small(repeat: int) -> list[str]:
    value = {
        "id": 1234,
        "name": "user_1234",
        "score": 0.8125,
        "tags": ["alpha", "beta", "gamma"],
        "active": True,
        "notes": "x" * 80,
    }
    handler = get_handler("plain")
    calls = 20_000

    def plain_dump() -> bytes:
        for _ in range(calls):
            sink = io.BytesIO()
            handler.dump(value, sink, DEFAULT_SERIALIZATION)
        return sink.getvalue()

    def pickle_dump() -> bytes:
        for _ in range(calls):
            data = pickle.dumps(value, protocol=5)
        return data

    sink = io.BytesIO()
    info = handler.dump(value, sink, DEFAULT_SERIALIZATION)
    stored = sink.getvalue()

    def plain_load() -> Any:
        for _ in range(calls):
            back = handler.load(io.BytesIO(stored), info, DEFAULT_SERIALIZATION)
        return back

    pickled = pickle.dumps(value, protocol=5)

    def pickle_load() -> Any:
        for _ in range(calls):
            back = pickle.loads(pickled)
        return back

    lines = [f"\n## small dict ({len(stored)} bytes as msgpack, {len(pickled)} as pickle)"]
    for name, fn in (
        ("plain handler dump", plain_dump),
        ("pickle.dumps", pickle_dump),
        ("plain handler load", plain_load),
        ("pickle.loads", pickle_load),
    ):
        best = timed(fn, repeat)[0]
        lines.append(f"{name:44} {best / calls * 1e6:8.2f} us/call")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per timing (best is kept)")
    parser.add_argument("--quick", action="store_true", help="small data: a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    n_array = 200_000 if args.quick else 10_000_000
    n_rows = 20_000 if args.quick else 1_000_000
    repeat = 2 if args.quick else args.repeat

    load_before = os.getloadavg()
    print(f"# handler benchmarks: {default_threads()} cores, load average {load_before}")
    numpy_case, numpy_lines = bench_numpy(n_array, repeat)
    print("\n".join(numpy_lines))
    pandas_case, pandas_lines = bench_pandas(n_rows, repeat)
    print("\n".join(pandas_lines))
    print("\n".join(bench_small(repeat)))
    load_after = os.getloadavg()
    print(f"\n# load average after: {load_after}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cores": default_threads(),
                    "load_before": load_before,
                    "load_after": load_after,
                    "numpy": numpy_case.rows,
                    "pandas": pandas_case.rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
