"""Where cacheness stands next to its peers: diskcache, joblib.Memory, lru_cache, a bare call.

Run:  python -m hatch run bench:python benchmarks/compare.py [--quick] [--rounds N]
      [--json PATH] [--png PATH] [--strict]

The issue's "Speed" targets, measured side by side in one run on the embedded default
(cacheness: SQLite index + files under the cache directory, default settings; diskcache:
``diskcache.Cache``, default settings; joblib: ``joblib.Memory(dir, verbose=0)``). Every
system works in a fresh temporary directory of its own.

Workloads (what each system does exactly is printed under the table and kept in the JSON):

* ``decorator hit``    a cached ``f(x: int)``: 100 arguments computed once, then called
                       again and again (hits only, checked): microseconds per call for
                       ``@cached``, ``joblib.Memory.cache``, ``diskcache.Cache.memoize``,
                       ``functools.lru_cache`` and the bare function.
                       Targets: <= 1.5x diskcache memoize, <= 0.25x joblib.Memory.
* ``put`` / ``get``    2,000 dicts of ~200 bytes (pickled), each put, then each read back
                       (and compared) in a fresh cache every round: operations per second
                       of ``cacheness.put/get`` (key parameters ``item=i``) and
                       ``diskcache.Cache.set/get`` (key ``"item-i"``).
                       Target: >= 1.0x diskcache's operations per second.
* ``memory hit``       the decorator hit again, cacheness with ``enable_memory_cache=True``.
                       Target: <= 1/3 of diskcache memoize's time per hit.
* ``hot get``          100 keys of 200-byte dicts read again and again: ``cache.get`` with
                       the memory layer on against ``diskcache.Cache.get``.
                       Target: >= 3x diskcache's operations per second.
* ``put mixed`` / ``get mixed``  1,000 dicts holding 512 B .. 64 KB of bytes (half random,
                       half a repeated pattern), put then read back, as ``put``/``get``.
                       Target: >= 1.0x diskcache's operations per second.
* ``4 processes``      4 processes (spawned, timed from a barrier once every one has its
                       cache open) each doing 3,000 operations, half ``put`` half ``get``
                       of 200 shared keys, on one cache directory. Target: total
                       operations per second >= 1.0x diskcache's.
* ``list entries``     10,000 entries: ``cacheness.list_entries()`` (each entry's key
                       parameters, size, dates and expiry; no values) against diskcache
                       iterating its bare keys (``list(cache)``, the issue's wording).
                       Diskcache reading each key's expiry time and tag as well
                       (``Cache.get(key, expire_time=True, tag=True)``) is shown beside as
                       ``keys + metadata``. Target: <= 2x diskcache's bare keys.
* ``frame put`` / ``frame get``  a pandas frame of 1M rows x 5 columns (int, float,
                       category, datetime, bool; ``benchmarks/handlers.py``'s): ``cache.put``
                       / ``cache.get`` against the first (compute and store) and second
                       (load) call of a ``joblib.Memory``-cached function returning it.
                       Targets: put >= 1.0x and get >= 0.6x joblib's speed; stored at <= 0.7
                       of the frame's size in memory, by the pandas handler (no pickle),
                       dtypes preserved (checked with ``assert_frame_equal``).
* ``array put`` / ``array get``  10M float64 (compressible): ``cache.put`` / ``cache.get``
                       against ``blosc2.pack_array2`` (LZ4, shuffle, the same level and
                       threads) written to a file, and read + ``unpack_array2``
                       (``benchmarks/handlers.py``'s bare row, no fsync). Target: >= 1.0x
                       bare Blosc2's speed both ways.
* ``cleanup expired``  100,000 entries put through each API, half with a 60 s TTL and
                       half with a day; the clock then moves 2 minutes on (cacheness: an
                       injected clock; diskcache: ``Cache.expire(now=...)``): seconds to
                       remove the 50,000 expired ones. Target: <= 1 s.
* ``derive_key``       5 scalar keyword arguments (the row of ``benchmarks/keys.py``,
                       timed with its ``best_us``): cacheness ``derive_key``,
                       ``joblib.hash`` (what joblib.Memory keys with) and diskcache
                       memoize's key (``args_to_key`` plus the pickling of the key tuple
                       its lookup does). Target: <= 10 us. (``keys.run()`` itself also
                       hashes arrays, frames and directory trees, which take a minute and
                       have no place here.)

Rounds are interleaved (round 1 of every system, then round 2..., the order of systems
rotated each round), so background load hits every system alike; before each timed
section garbage is collected and dirty pages are flushed, and the collector is off while
it runs. The table shows the **median** of the rounds (derive_key: median of per-round
bests). Wall-clock time is what the table and the targets use; the process's CPU time
is recorded beside it (JSON, and one line under the table), as a cross-check that does
not move with the load of a shared machine.

Output: one table (workload x system) on stdout, the JSON (``--json``, default
``benchmarks/results/compare.json``, with the load average before and after) and a PNG
bar chart (``--png``, default ``benchmarks/results/compare.png``): each workload's time
relative to diskcache on a log scale with the targets drawn as lines, and each target's
figure divided by its limit. ``--strict`` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

from cacheness.cache import cacheness
from cacheness.decorators import cached
from cacheness.keys import derive_key

try:  # the bench environment has them; the dev environment may not
    import diskcache
    from diskcache.core import args_to_key
except ImportError:
    diskcache = None
try:
    import joblib
except ImportError:
    joblib = None

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SYSTEMS = ("cacheness", "diskcache", "joblib.Memory", "bare blosc2", "lru_cache", "bare call")
REFERENCE = "diskcache"
ARGUMENTS = 100
"""The decorated function is called with x in range(ARGUMENTS), over and over."""
KWARGS = {"model": "resnet50", "epochs": 10, "lr": 0.001, "augment": True, "seed": 42}
"""The 5 scalar keyword arguments of benchmarks/keys.py's first row."""
SHORT_TTL, LONG_TTL, LATER = 60.0, 86_400.0, timedelta(minutes=2)


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does (``--quick`` shrinks everything)."""

    rounds: int
    hit_calls: int  # per round: cacheness, diskcache
    slow_hit_calls: int  # per round: joblib.Memory
    fast_hit_calls: int  # per round: lru_cache, the bare call
    put_get: int
    listed: int
    expiring: int
    cleanup_rounds: int
    key_budget_s: float
    mixed: int  # values of 512 B .. 64 KB put and got per round
    hot_gets: int  # gets of 100 hot keys per round (memory layer on)
    process_ops: int  # mixed put/get operations of each of the 4 processes
    frame_rows: int  # pandas rows
    array_items: int  # numpy float64 items
    big_rounds: int  # rounds of the frame and array workloads

    @classmethod
    def pick(cls, quick: bool, rounds: int | None) -> Sizes:
        if quick:
            return cls(
                rounds or 2, 1_000, 100, 20_000, 300, 1_000, 2_000, 1, 0.05,
                100, 2_000, 500, 50_000, 500_000, 1,
            )  # fmt: skip
        return cls(
            rounds or 5, 10_000, 1_000, 500_000, 2_000, 10_000, 100_000, 3, 0.3,
            1_000, 20_000, 3_000, 1_000_000, 10_000_000, 3,
        )  # fmt: skip


def small_dict(i: int) -> dict[str, Any]:
    """A dict of about 200 bytes pickled (the shape of benchmarks/blob_store.py's)."""
    return {
        "id": i,
        "name": f"user_{i}",
        "email": f"user_{i}@example.org",
        "score": round(i / 7, 4),
        "tags": ["alpha", "beta", "gamma"],
        "active": i % 2 == 0,
        "notes": "x" * 60,
    }


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Timing:
    """Seconds of one timed section: wall clock, and this process's CPU time."""

    wall: float
    cpu: float

    def per(self, count: int, scale: float = 1.0) -> Timing:
        """Time per operation (times ``scale``: 1e6 for microseconds)."""
        return Timing(self.wall / count * scale, self.cpu / count * scale)

    def rate(self, count: int) -> Timing:
        """Operations per second (a rate, not a time: higher is faster)."""
        return Timing(count / self.wall, count / self.cpu)


def timed(action: Callable[[], Any]) -> Timing:
    """Time ``action`` with nothing left over from before: no garbage, no dirty pages."""
    gc.collect()
    if hasattr(os, "sync"):
        os.sync()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        return Timing(time.perf_counter() - wall, time.process_time() - cpu)
    finally:
        gc.enable()


Round = Callable[[], dict[str, Timing]]
"""One timed round of a system: ``{workload: figure}``."""


@dataclass
class Contender:
    """One system in one group of workloads.

    ``open(folder)`` prepares the system in an empty folder of its own (untimed) and
    returns the function that runs one round and the one that releases the system.
    """

    system: str
    does: dict[str, str]
    open: Callable[[Path], tuple[Round, Callable[[], None]]]


def no_cleanup() -> None:
    """Nothing to release (every round cleaned up after itself)."""


@dataclass
class Workload:
    """One row of the table: a figure per system and round (wall clock and CPU time)."""

    name: str
    unit: str
    higher_is_better: bool
    rounds: dict[str, list[Timing]] = field(default_factory=dict)
    does: dict[str, str] = field(default_factory=dict)

    def value(self, system: str, clock: str = "wall") -> float | None:
        """The median over rounds, or None when the system was not measured."""
        figures = self.rounds.get(system)
        if not figures:
            return None
        return statistics.median(getattr(figure, clock) for figure in figures)

    def seconds(self, system: str, clock: str = "wall") -> float | None:
        """The figure as a time per operation (rates are inverted), for ratios."""
        value = self.value(system, clock)
        if value is None:
            return None
        return 1 / value if self.higher_is_better else value


def run_group(contenders: list[Contender], rounds: int) -> dict[str, dict[str, list[Timing]]]:
    """Open every contender, then run ``rounds`` interleaved rounds: the figures."""
    figures: dict[str, dict[str, list[Timing]]] = {}
    with tempfile.TemporaryDirectory(prefix="cacheness-compare-") as tmp:
        opened: list[tuple[str, Round, Callable[[], None]]] = []
        try:
            for contender in contenders:
                folder = Path(tmp) / contender.system.replace(" ", "_")
                folder.mkdir()
                one_round, close = contender.open(folder)
                opened.append((contender.system, one_round, close))
            for number in range(rounds):
                shift = number % len(opened)
                for system, one_round, _ in opened[shift:] + opened[:shift]:
                    for workload, figure in one_round().items():
                        figures.setdefault(workload, {}).setdefault(system, []).append(figure)
        finally:
            for _, _, close in opened:
                close()
    return figures


def fresh_folders(folder: Path) -> Callable[[], Path]:
    """A new empty sub-folder of ``folder`` on each call (one per round)."""
    counter = iter(range(1_000_000))

    def make() -> Path:
        where = folder / f"round-{next(counter)}"
        where.mkdir()
        return where

    return make


# --------------------------------------------------------------------------- decorator hit

Decorate = Callable[[Path, Callable[[int], int], list[Callable[[], None]]], Callable[[int], int]]


def hit_contender(
    system: str,
    does: str,
    decorate: Decorate | None,
    calls: int,
    workload: str = "decorator hit",
) -> Contender:
    """A decorated ``f(x)``: every argument computed once, then timed on hits only."""

    def open_(folder: Path) -> tuple[Round, Callable[[], None]]:
        computed: list[int] = []
        closers: list[Callable[[], None]] = []

        def f(x: int) -> int:
            computed.append(x)
            return x * x

        f.__qualname__ = f"f_{system.replace(' ', '_').replace('.', '_')}"
        wrapped = f if decorate is None else decorate(folder, f, closers)
        for x in range(ARGUMENTS):
            assert wrapped(x) == x * x
        warmed = len(computed)
        xs = list(range(ARGUMENTS)) * (calls // ARGUMENTS)

        def loop() -> None:
            for x in xs:
                wrapped(x)

        def one_round() -> dict[str, Timing]:
            timing = timed(loop)
            if decorate is not None and len(computed) != warmed:
                raise AssertionError(f"{system}: {len(computed) - warmed} hits were recomputed")
            return {workload: timing.per(len(xs), 1e6)}

        def close() -> None:
            for closer in closers:
                closer()

        return one_round, close

    return Contender(system, {workload: does}, open_)


def with_cacheness(folder: Path, f: Callable[[int], int], closers: list) -> Callable[[int], int]:
    cache = cacheness(cache_dir=folder)
    closers.append(cache.close)
    return cached(cache_instance=cache)(f)


def with_cacheness_memory(
    folder: Path, f: Callable[[int], int], closers: list
) -> Callable[[int], int]:
    cache = cacheness(cache_dir=folder, enable_memory_cache=True)
    closers.append(cache.close)
    return cached(cache_instance=cache)(f)


def with_diskcache(folder: Path, f: Callable[[int], int], closers: list) -> Callable[[int], int]:
    cache = diskcache.Cache(str(folder))
    closers.append(cache.close)
    return cache.memoize()(f)


def with_joblib(folder: Path, f: Callable[[int], int], closers: list) -> Callable[[int], int]:
    return joblib.Memory(str(folder), verbose=0).cache(f)


def with_lru_cache(folder: Path, f: Callable[[int], int], closers: list) -> Callable[[int], int]:
    return functools.lru_cache(maxsize=None)(f)


def decorator_contenders(sizes: Sizes) -> list[Contender]:
    contenders = [
        hit_contender(
            "cacheness",
            "@cached(cache_instance=cacheness(cache_dir=dir)) def f(x); default settings",
            with_cacheness,
            sizes.hit_calls,
        )
    ]
    if diskcache is not None:
        contenders.append(
            hit_contender(
                "diskcache",
                "@diskcache.Cache(dir).memoize() def f(x)",
                with_diskcache,
                sizes.hit_calls,
            )
        )
    if joblib is not None:
        contenders.append(
            hit_contender(
                "joblib.Memory",
                "joblib.Memory(dir, verbose=0).cache(f)",
                with_joblib,
                sizes.slow_hit_calls,
            )
        )
    contenders.append(
        hit_contender(
            "lru_cache",
            "@functools.lru_cache(maxsize=None) def f(x) (in memory, no copy)",
            with_lru_cache,
            sizes.fast_hit_calls,
        )
    )
    contenders.append(hit_contender("bare call", "f(x), no cache", None, sizes.fast_hit_calls))
    return contenders


# --------------------------------------------------------------------------- put / get

Opened = tuple[Callable[[int, Any], Any], Callable[[int], Any], Callable[[], None]]
"""``(put(i, value), get(i), close())`` of a cache opened in a folder."""


def put_get_contender(
    system: str,
    does: dict[str, str],
    count: int,
    open_cache: Callable[[Path], Opened],
    make: Callable[[int], Any] = small_dict,
    rows: tuple[str, str] = ("put", "get"),
) -> Contender:
    """Put ``count`` values (``make(i)``), then get each back, in a fresh folder every round;
    the two figures are the rows named ``rows``."""
    values = [make(i) for i in range(count)]

    def open_(folder: Path) -> tuple[Round, Callable[[], None]]:
        next_folder = fresh_folders(folder)

        def one_round() -> dict[str, Timing]:
            where = next_folder()
            put, get, close = open_cache(where)
            loaded: list[Any] = []
            try:
                put_time = timed(lambda: [put(i, value) for i, value in enumerate(values)])
                get_time = timed(lambda: loaded.extend(get(i) for i in range(count)))
            finally:
                close()
            if loaded != values:
                raise AssertionError(f"{system}: get did not return what was put")
            shutil.rmtree(where)
            return {rows[0]: put_time.rate(count), rows[1]: get_time.rate(count)}

        return one_round, no_cleanup

    return Contender(system, does, open_)


def cacheness_put_get(folder: Path) -> Opened:
    cache = cacheness(cache_dir=folder)
    return (lambda i, value: cache.put(value, item=i)), (lambda i: cache.get(item=i)), cache.close


def diskcache_put_get(folder: Path) -> Opened:
    cache = diskcache.Cache(str(folder))
    return (
        (lambda i, value: cache.set(f"item-{i}", value)),
        (lambda i: cache.get(f"item-{i}")),
        cache.close,
    )


def put_get_contenders(
    sizes: Sizes,
    make: Callable[[int], Any] = small_dict,
    rows: tuple[str, str] = ("put", "get"),
) -> list[Contender]:
    """cacheness put/get against diskcache set/get of ``make(i)`` values."""
    count = sizes.put_get if make is small_dict else sizes.mixed
    contenders = [
        put_get_contender(
            "cacheness",
            {rows[0]: "cache.put(v, item=i)", rows[1]: "cache.get(item=i)"},
            count,
            cacheness_put_get,
            make,
            rows,
        )
    ]
    if diskcache is not None:
        contenders.append(
            put_get_contender(
                "diskcache",
                {rows[0]: "cache.set(f'item-{i}', v)", rows[1]: "cache.get(f'item-{i}')"},
                count,
                diskcache_put_get,
                make,
                rows,
            )
        )
    return contenders


# --------------------------------------------------------------------------- memory layer


def memory_hit_contenders(sizes: Sizes) -> list[Contender]:
    """The decorated hit with the memory layer on, against diskcache's memoize hit."""
    contenders = [
        hit_contender(
            "cacheness",
            "@cached(cache_instance=cacheness(cache_dir=dir, enable_memory_cache=True))",
            with_cacheness_memory,
            sizes.hit_calls,
            "memory hit",
        )
    ]
    if diskcache is not None:
        contenders.append(
            hit_contender(
                "diskcache",
                "@diskcache.Cache(dir).memoize() def f(x)",
                with_diskcache,
                sizes.hit_calls,
                "memory hit",
            )
        )
    return contenders


HOT_KEYS = 100


def hot_get_contenders(sizes: Sizes) -> list[Contender]:
    """Repeated gets of 100 hot keys (200-byte dicts): the memory layer against diskcache."""
    values = [small_dict(i) for i in range(HOT_KEYS)]
    order = [i % HOT_KEYS for i in range(sizes.hot_gets)]

    def contender(system: str, does: str, open_cache: Callable[[Path], Opened]) -> Contender:
        def open_(folder: Path) -> tuple[Round, Callable[[], None]]:
            put, get, close = open_cache(folder)
            for i, value in enumerate(values):
                put(i, value)
            for i in range(HOT_KEYS):
                assert get(i) == values[i]

            def one_round() -> dict[str, Timing]:
                loaded: list[Any] = []
                timing = timed(lambda: loaded.extend(get(i) for i in order))
                if loaded[-HOT_KEYS:] != values:
                    raise AssertionError(f"{system}: a hot get returned another value")
                return {"hot get": timing.rate(len(order))}

            return one_round, close

        return Contender(system, {"hot get": does}, open_)

    def cacheness_memory(folder: Path) -> Opened:
        cache = cacheness(cache_dir=folder, enable_memory_cache=True)
        return (
            (lambda i, value: cache.put(value, item=i)),
            (lambda i: cache.get(item=i)),
            cache.close,
        )

    contenders = [
        contender("cacheness", "cache.get(item=i), enable_memory_cache=True", cacheness_memory)
    ]
    if diskcache is not None:
        contenders.append(contender("diskcache", "cache.get(f'item-{i}')", diskcache_put_get))
    return contenders


# --------------------------------------------------------------------------- mixed sizes

MIXED_SIZES = (512, 2_048, 8_192, 32_768, 65_536)


def mixed_value(i: int) -> dict[str, Any]:
    """A dict holding 512 B .. 64 KB of bytes, half random, half a repeated pattern."""
    size = MIXED_SIZES[i % len(MIXED_SIZES)]
    noise = random_bytes(i, size // 2)
    return {"id": i, "kind": "mixed", "payload": noise + b"abcd" * (size // 8)}


def random_bytes(seed: int, size: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def mixed_contenders(sizes: Sizes) -> list[Contender]:
    return put_get_contenders(sizes, mixed_value, ("put mixed", "get mixed"))


# --------------------------------------------------------------------------- 4 processes

PROCESSES = 4
SHARED_KEYS = 200


def process_worker(system: str, folder: str, seed: int, ops: int, barrier: Any) -> None:
    """One of the processes: opens the cache, waits for the others, then mixes puts/gets."""
    import random

    rng = random.Random(seed)
    plan = [(rng.random() < 0.5, rng.randrange(SHARED_KEYS)) for _ in range(ops)]
    value = small_dict(seed)
    if system == "cacheness":
        cache = cacheness(cache_dir=folder)
        put = lambda i: cache.put(value, item=i)  # noqa: E731
        get = lambda i: cache.get(item=i)  # noqa: E731
    else:
        cache = diskcache.Cache(folder)
        put = lambda i: cache.set(f"item-{i}", value)  # noqa: E731
        get = lambda i: cache.get(f"item-{i}")  # noqa: E731
    get(0)  # connected
    barrier.wait()
    for writes, i in plan:
        if writes:
            put(i)
        else:
            get(i)
    cache.close()


def process_contenders(sizes: Sizes) -> list[Contender]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")

    def contender(system: str, does: str) -> Contender:
        def open_(folder: Path) -> tuple[Round, Callable[[], None]]:
            next_folder = fresh_folders(folder)

            def one_round() -> dict[str, Timing]:
                where = str(next_folder())
                barrier = context.Barrier(PROCESSES + 1)
                workers = [
                    context.Process(
                        target=process_worker,
                        args=(system, where, seed, sizes.process_ops, barrier),
                    )
                    for seed in range(PROCESSES)
                ]
                for worker in workers:
                    worker.start()
                barrier.wait()
                wall, cpu = time.perf_counter(), time.process_time()
                for worker in workers:
                    worker.join()
                elapsed = Timing(time.perf_counter() - wall, time.process_time() - cpu)
                if any(worker.exitcode != 0 for worker in workers):
                    raise AssertionError(f"{system}: a worker process failed")
                shutil.rmtree(where)
                return {"4 processes": elapsed.rate(PROCESSES * sizes.process_ops)}

            return one_round, no_cleanup

        return Contender(system, {"4 processes": does}, open_)

    contenders = [
        contender("cacheness", "4 processes, 50 % put / 50 % get of 200 keys, one cache dir")
    ]
    if diskcache is not None:
        contenders.append(contender("diskcache", "the same with diskcache.Cache(dir)"))
    return contenders


# --------------------------------------------------------------------------- frames, arrays


def sibling(name: str) -> Any:
    """Import ``benchmarks/NAME.py`` (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {HERE / f'{name}.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FRAME_FACTS: dict[str, Any] = {}
"""What the frame workload found about cacheness's stored frame (size, handler, dtypes)."""


def one_value_contender(
    system: str,
    does: dict[str, str],
    rows: tuple[str, str],
    value: Any,
    open_store: Callable[[Path], Opened],
    check: Callable[[Any], None],
) -> Contender:
    """Store one large ``value`` and read it back, in a fresh folder every round:
    milliseconds of the put and of the get (the rows named ``rows``)."""

    def open_(folder: Path) -> tuple[Round, Callable[[], None]]:
        next_folder = fresh_folders(folder)

        def one_round() -> dict[str, Timing]:
            where = next_folder()
            put, get, close = open_store(where)
            loaded: list[Any] = []
            try:
                put_time = timed(lambda: put(0, value))
                get_time = timed(lambda: loaded.append(get(0)))
            finally:
                close()
            check(loaded[0])
            shutil.rmtree(where)
            return {rows[0]: put_time.per(1, 1e3), rows[1]: get_time.per(1, 1e3)}

        return one_round, no_cleanup

    return Contender(system, does, open_)


def frame_contenders(sizes: Sizes) -> list[Contender]:
    """pandas, 1M rows x 5 columns (int, float, category, datetime, bool): put and get."""
    import pandas as pd

    frame = sibling("handlers").pandas_frame(sizes.frame_rows)
    raw = int(frame.memory_usage(deep=True, index=True).sum())
    rows = ("frame put", "frame get")

    def check(loaded: Any) -> None:
        pd.testing.assert_frame_equal(loaded, frame)  # values and dtypes

    def cacheness_recording(folder: Path) -> Opened:
        """The default cache; on close, what it stored is recorded for the size target."""
        cache = cacheness(cache_dir=folder)

        def close() -> None:
            entry = cache.get_metadata(item=0)
            assert entry is not None
            FRAME_FACTS.update(
                stored=entry.size, raw=raw, handler=entry.handler, format=entry.format
            )
            cache.close()

        return (lambda i, value: cache.put(value, item=i)), (lambda i: cache.get(item=i)), close

    def joblib_memory(folder: Path) -> Opened:
        def make(i: int) -> Any:
            return frame

        cached_make = joblib.Memory(str(folder), verbose=0).cache(make)
        # put: the first call computes (returns the frame) and stores; get: the second loads
        return (lambda i, value: cached_make(i)), cached_make, no_cleanup

    contenders = [
        one_value_contender(
            "cacheness",
            {"frame put": "cache.put(df, item=0)", "frame get": "cache.get(item=0)"},
            rows,
            frame,
            cacheness_recording,
            check,
        )
    ]
    if joblib is not None:
        contenders.append(
            one_value_contender(
                "joblib.Memory",
                {"frame put": "first call of Memory.cache(f)", "frame get": "second call"},
                rows,
                frame,
                joblib_memory,
                check,
            )
        )
    return contenders


def array_contenders(sizes: Sizes) -> list[Contender]:
    """numpy, 10M float64 (compressible): cacheness against a bare Blosc2 pack to a file."""
    import blosc2
    import numpy as np

    rng = np.random.default_rng(0)
    array = np.cumsum(rng.integers(-5, 6, sizes.array_items)).astype(np.float64)
    defaults = cacheness_defaults()
    cparams = {
        "codec": blosc2.Codec.LZ4,
        "clevel": defaults.blosc2_clevel,
        "filters": [blosc2.Filter.SHUFFLE],
        "typesize": array.itemsize,
        "nthreads": sibling("handlers").default_threads(),
    }
    rows = ("array put", "array get")

    def check(loaded: Any) -> None:
        if loaded.dtype != array.dtype or loaded.tobytes() != array.tobytes():
            raise AssertionError("the array did not come back as it was")

    def bare_blosc2(folder: Path) -> Opened:
        path = folder / "a.b2"

        def write(i: int, value: Any) -> None:
            packed = blosc2.pack_array2(value, cparams=cparams)
            with path.open("wb") as file:
                file.write(packed)  # no fsync, as benchmarks/handlers.py's bare row

        def read(i: int) -> Any:
            with path.open("rb") as file:
                return blosc2.unpack_array2(file.read())

        return write, read, no_cleanup

    return [
        one_value_contender(
            "cacheness",
            {"array put": "cache.put(a, item=0)", "array get": "cache.get(item=0)"},
            rows,
            array,
            cacheness_put_get,
            check,
        ),
        one_value_contender(
            "bare blosc2",
            {
                "array put": "blosc2.pack_array2 (lz4, shuffle) + write (no fsync)",
                "array get": "read + blosc2.unpack_array2",
            },
            rows,
            array,
            bare_blosc2,
            check,
        ),
    ]


def cacheness_defaults() -> Any:
    from cacheness.storage import SerializationOptions

    return SerializationOptions()


# --------------------------------------------------------------------------- list entries


def list_contenders(sizes: Sizes) -> list[Contender]:
    count = sizes.listed

    def open_cacheness(folder: Path) -> tuple[Round, Callable[[], None]]:
        cache = cacheness(cache_dir=folder)
        for i in range(count):
            cache.put(small_dict(i), item=i)

        def one_round() -> dict[str, Timing]:
            listed: list[Any] = []
            timing = timed(lambda: listed.extend(cache.list_entries()))
            if len(listed) != count or listed[-1].params != {"item": count - 1}:
                raise AssertionError(f"cacheness listed {len(listed)} of {count} entries")
            return {"list entries": timing.per(1, 1e3)}

        return one_round, cache.close

    def open_diskcache(folder: Path) -> tuple[Round, Callable[[], None]]:
        cache = diskcache.Cache(str(folder))
        for i in range(count):
            cache.set(f"item-{i}", small_dict(i))

        def with_metadata() -> list[Any]:
            return [(key, cache.get(key, expire_time=True, tag=True)) for key in cache]

        def one_round() -> dict[str, Timing]:
            listed: list[Any] = []
            keys: list[Any] = []
            timing = timed(lambda: listed.extend(with_metadata()))
            keys_only = timed(lambda: keys.extend(cache))
            if len(listed) != count or len(keys) != count:
                raise AssertionError(f"diskcache listed {len(listed)} of {count} entries")
            return {"list entries": keys_only.per(1, 1e3), "keys + metadata": timing.per(1, 1e3)}

        return one_round, cache.close

    contenders = [
        Contender(
            "cacheness",
            {"list entries": "cache.list_entries(): CacheEntry objects (params, size, dates)"},
            open_cacheness,
        )
    ]
    if diskcache is not None:
        contenders.append(
            Contender(
                "diskcache",
                {
                    "list entries": "list(cache): the keys only, nothing about them",
                    "keys + metadata": "for key in cache: cache.get(key, expire_time=True, "
                    "tag=True)",
                },
                open_diskcache,
            )
        )
    return contenders


# --------------------------------------------------------------------------- cleanup expired


def ttl_of(i: int) -> float:
    """Half the entries expire within the benchmark's 2 minutes, half live a day."""
    return SHORT_TTL if i % 2 == 0 else LONG_TTL


def cleanup_contenders(sizes: Sizes) -> list[Contender]:
    count, half = sizes.expiring, sizes.expiring // 2
    value = small_dict(0)

    def open_cacheness(folder: Path) -> tuple[Round, Callable[[], None]]:
        next_folder = fresh_folders(folder)

        def one_round() -> dict[str, Timing]:
            now = [datetime.now(UTC)]
            where = next_folder()
            with cacheness(cache_dir=where, clock=lambda: now[0]) as cache:
                for i in range(count):
                    cache.put(value, ttl_seconds=ttl_of(i), item=i)
                now[0] += LATER
                removed: list[int] = []
                timing = timed(lambda: removed.append(cache.cleanup_expired()))
                left = cache.count(include_expired=True)
            if removed != [half] or left != count - half:
                raise AssertionError(f"cacheness removed {removed} and left {left}")
            shutil.rmtree(where)
            return {"cleanup expired": timing}

        return one_round, no_cleanup

    def open_diskcache(folder: Path) -> tuple[Round, Callable[[], None]]:
        next_folder = fresh_folders(folder)

        def one_round() -> dict[str, Timing]:
            where = next_folder()
            with diskcache.Cache(str(where)) as cache:
                for i in range(count):
                    cache.set(f"item-{i}", value, expire=ttl_of(i))
                later = time.time() + LATER.total_seconds()
                removed: list[int] = []
                timing = timed(lambda: removed.append(cache.expire(now=later)))
                left = len(cache)
            if removed != [half] or left != count - half:
                raise AssertionError(f"diskcache removed {removed} and left {left}")
            shutil.rmtree(where)
            return {"cleanup expired": timing}

        return one_round, no_cleanup

    contenders = [
        Contender(
            "cacheness",
            {"cleanup expired": "cache.cleanup_expired(): one DELETE ... WHERE expiry <= now"},
            open_cacheness,
        )
    ]
    if diskcache is not None:
        contenders.append(
            Contender("diskcache", {"cleanup expired": "cache.expire(now=later)"}, open_diskcache)
        )
    return contenders


# --------------------------------------------------------------------------- derive_key


def key_benchmark() -> Any:
    """Import ``benchmarks/keys.py`` (a script, not a package module) for its ``best_us``."""
    spec = importlib.util.spec_from_file_location("bench_keys", HERE / "keys.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {HERE / 'keys.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def memoize_key() -> bytes:
    """What diskcache's memoize does to turn the arguments into its index key."""
    key = args_to_key(("compare.f",), (), KWARGS, False, set())
    return pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL)


def key_contenders(sizes: Sizes) -> list[Contender]:
    best_us = key_benchmark().best_us
    assert len(derive_key(KWARGS)) == 32

    def contender(system: str, does: str, fn: Callable[[], Any]) -> Contender:
        def open_(folder: Path) -> tuple[Round, Callable[[], None]]:
            def one_round() -> dict[str, Timing]:
                best = best_us(fn, sizes.key_budget_s)  # best of timeit repeats, us
                return {"derive_key": Timing(best, best)}  # no separate CPU figure

            return one_round, no_cleanup

        return Contender(system, {"derive_key": does}, open_)

    contenders = [
        contender("cacheness", "derive_key(5 kwargs)", lambda: derive_key(KWARGS)),
    ]
    if diskcache is not None:
        contenders.append(
            contender("diskcache", "memoize: args_to_key + pickle.dumps(key)", memoize_key)
        )
    if joblib is not None:
        contenders.append(
            contender("joblib.Memory", "joblib.hash(5 kwargs)", lambda: joblib.hash(KWARGS))
        )
    return contenders


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One of the issue's targets; ``score`` <= 1 means it is met."""

    workload: str
    goal: str
    figure: float
    limit: float
    higher_is_better: bool
    shown: str
    chart_level: float | None  # the limit as time relative to diskcache, for the chart

    @property
    def score(self) -> float:
        return self.limit / self.figure if self.higher_is_better else self.figure / self.limit

    @property
    def met(self) -> bool:
        return self.score <= 1.0


RELATIVE_TARGETS = (
    # workload, compared with, goal, limit on cacheness's time over theirs, shown as a share
    ("decorator hit", "diskcache", "<= 1.5x diskcache memoize", 1.5, False),
    ("decorator hit", "joblib.Memory", "<= 0.25x joblib.Memory", 0.25, False),
    ("put", "diskcache", ">= 1.0x diskcache ops/s", 1.0, True),
    ("get", "diskcache", ">= 1.0x diskcache ops/s", 1.0, True),
    ("put mixed", "diskcache", ">= 1.0x diskcache ops/s", 1.0, True),
    ("get mixed", "diskcache", ">= 1.0x diskcache ops/s", 1.0, True),
    ("hot get", "diskcache", ">= 3x diskcache get (memory layer)", 1 / 3, True),
    ("memory hit", "diskcache", "<= 1/3 of diskcache memoize (memory layer)", 1 / 3, False),
    ("list entries", "diskcache", "<= 2x diskcache iterating its keys", 2.0, False),
    ("4 processes", "diskcache", ">= 1.0x diskcache total ops/s", 1.0, True),
    ("frame put", "joblib.Memory", ">= 1.0x joblib.Memory's speed", 1.0, True),
    ("frame get", "joblib.Memory", ">= 0.6x joblib.Memory's speed", 1 / 0.6, True),
    ("array put", "bare blosc2", ">= 1.0x bare Blosc2's speed", 1.0, True),
    ("array get", "bare blosc2", ">= 1.0x bare Blosc2's speed", 1.0, True),
)
ABSOLUTE_TARGETS = (
    # workload, limit on cacheness's figure (in the row's unit), digits shown
    ("cleanup expired", 1.0, 3),
    ("derive_key", 10.0, 2),
)
FRAME_SIZE_LIMIT = 0.7
"""The stored frame at most this share of its size in memory, data-only (no pickle)."""


def targets_of(rows: dict[str, Workload], clock: str = "wall") -> list[Target]:
    """Check the issue's targets against the figures of ``clock`` ("wall" or "cpu")."""
    targets: list[Target] = []
    for workload, other, goal, limit, as_share in RELATIVE_TARGETS:
        row = rows.get(workload)
        mine = None if row is None else row.seconds("cacheness", clock)
        theirs = None if row is None else row.seconds(other, clock)
        if mine is None or theirs is None:
            continue
        ratio = mine / theirs
        # the limit as a time relative to the chart's baseline of the row
        base = baseline(row)
        reference = None if base is None else row.seconds(base, clock)
        level = None if reference is None else limit * theirs / reference
        if as_share:
            targets.append(
                Target(
                    workload, goal, 1 / ratio, 1 / limit, True, f"{1 / ratio:.2f}x {other}", level
                )
            )
        else:
            targets.append(
                Target(workload, goal, ratio, limit, False, f"{ratio:.2f}x {other}", level)
            )
    for workload, limit, digits in ABSOLUTE_TARGETS:
        row = rows.get(workload)
        mine = None if row is None else row.value("cacheness", clock)
        if mine is None:
            continue
        reference = row.value(REFERENCE, clock)
        level = None if reference is None else limit / reference
        shown = f"{mine:.{digits}f} {row.unit}"
        targets.append(
            Target(workload, f"<= {limit:g} {row.unit}", mine, limit, False, shown, level)
        )
    if FRAME_FACTS and "frame put" in rows:
        share = FRAME_FACTS["stored"] / FRAME_FACTS["raw"]
        data_only = FRAME_FACTS["handler"] == "pandas"  # Arrow IPC or Parquet, never pickle
        targets.append(
            Target(
                "frame put",
                f"stored <= {FRAME_SIZE_LIMIT} of raw, data-only",
                share if data_only else float("inf"),
                FRAME_SIZE_LIMIT,
                False,
                f"{share:.2f} of raw, {FRAME_FACTS['handler']}/{FRAME_FACTS['format']}",
                None,
            )
        )
    return targets


# --------------------------------------------------------------------------- reporting


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ops/s" or value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def literal_listing(rows: dict[str, Workload]) -> float | None:
    """cacheness's listing time over diskcache reading each key's expiry and tag."""
    listed, keys = rows.get("list entries"), rows.get("keys + metadata")
    if listed is None or keys is None:
        return None
    mine, theirs = listed.value("cacheness"), keys.value("diskcache")
    return None if mine is None or theirs is None else mine / theirs


def format_table(rows: dict[str, Workload], targets: list[Target], sizes: Sizes) -> str:
    systems = [s for s in SYSTEMS if any(s in row.rounds for row in rows.values())]
    first, width = 24, 14
    header = f"{'workload (unit)':<{first}}" + "".join(f"{s:>{width}}" for s in systems)
    rule = "-" * (len(header) + 48)
    lines = [header + "   target (cacheness)", rule]
    notes: dict[str, list[str]] = {}
    for target in targets:
        verdict = "ok" if target.met else "MISSED"
        notes.setdefault(target.workload, []).append(f"{target.goal}: {target.shown}  {verdict}")
    literal = literal_listing(rows)
    if literal is not None:
        notes["keys + metadata"] = [f"(list entries is {literal:.2f}x this; no target)"]
    for row in rows.values():
        cells = "".join(f"{cell(row.value(s), row.unit):>{width}}" for s in systems)
        comments = notes.get(row.name, [""])
        lines.append(f"{f'{row.name} ({row.unit})':<{first}}{cells}   {comments[0]}")
        lines.extend(f"{'':<{first + width * len(systems)}}   {more}" for more in comments[1:])
    lines.append(rule)
    lines.append(
        f"median of {sizes.rounds} interleaved rounds (cleanup expired: {sizes.cleanup_rounds}; "
        "derive_key: median of per-round timeit bests); wall-clock time"
    )
    cpu = targets_of(rows, "cpu")
    lines.append(
        "the targets in CPU time: "
        + "; ".join(f"{t.workload} {t.shown} {'ok' if t.met else 'MISSED'}" for t in cpu)
    )
    lines.append("\nwhat each system does:")
    for row in rows.values():
        for system in systems:
            if system in row.does:
                lines.append(f"  {row.name:<16} {system:<14} {row.does[system]}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {}
    for name in ("cacheness", "blobcache-storage", "diskcache", "joblib"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def to_json(
    rows: dict[str, Workload], sizes: Sizes, quick: bool, load: dict[str, list[float]]
) -> dict[str, Any]:
    def target_dict(target: Target) -> dict[str, Any]:
        return {**asdict(target), "met": target.met}

    wall, cpu = targets_of(rows, "wall"), targets_of(rows, "cpu")
    return {
        "benchmark": "benchmarks/compare.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "load_average": load,
        "quick": quick,
        "sizes": asdict(sizes),
        "aggregate": "median of interleaved rounds (derive_key: median of per-round bests)",
        "versions": versions(),
        "workloads": [
            {
                "name": row.name,
                "unit": row.unit,
                "higher_is_better": row.higher_is_better,
                "median": {s: row.value(s) for s in row.rounds},
                "median_cpu": {s: row.value(s, "cpu") for s in row.rounds},
                "rounds": {s: [t.wall for t in figures] for s, figures in row.rounds.items()},
                "rounds_cpu": {s: [t.cpu for t in figures] for s, figures in row.rounds.items()},
                "does": row.does,
            }
            for row in rows.values()
        ],
        "targets": [target_dict(target) for target in wall],
        "targets_cpu": [target_dict(target) for target in cpu],
        "all_targets_met": all(target.met for target in wall),
        "list_entries_vs_bare_keys": literal_listing(rows),
    }


COLORS = {
    "cacheness": "#1f77b4",
    "diskcache": "#7f7f7f",
    "joblib.Memory": "#ff7f0e",
    "bare blosc2": "#9467bd",
    "lru_cache": "#2ca02c",
    "bare call": "#bcbd22",
}


def baseline(row: Workload) -> str | None:
    """The system a row's bars are drawn relative to: diskcache, else the peer measured."""
    if row.seconds(REFERENCE) is not None:
        return REFERENCE
    return next((s for s in row.rounds if s != "cacheness"), None)


def draw_chart(rows: dict[str, Workload], targets: list[Target], path: Path, title: str) -> None:
    """Left: time relative to diskcache per workload (log), targets as red lines.
    Right: each target's figure over its limit (<= 1: met)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    # "keys + metadata" is diskcache alone: drawn as a mark in the "list entries" group.
    shown = [row for row in rows.values() if baseline(row) is not None and len(row.rounds) > 1]
    systems = [s for s in SYSTEMS if any(row.seconds(s) is not None for row in shown)]
    fig, (bars, scores) = plt.subplots(
        1, 2, figsize=(20, 7), gridspec_kw={"width_ratios": [2.2, 1]}, layout="constrained"
    )
    for index, row in enumerate(shown):
        reference = cast(float, row.seconds(cast(str, baseline(row))))
        present = [s for s in systems if row.seconds(s) is not None]
        width = min(0.8 / len(present), 0.3)
        start = index - width * (len(present) - 1) / 2
        for offset, system in enumerate(present):
            relative = row.seconds(system) / reference
            x = start + offset * width
            bars.bar(x, relative, width * 0.9, color=COLORS[system])
            bars.annotate(
                cell(row.value(system), row.unit),
                (x, relative),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
                bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        keys = rows.get("keys + metadata")
        if row.name == "list entries" and keys is not None and keys.seconds(REFERENCE):
            level = keys.seconds(REFERENCE) / reference
            bars.hlines(level, index - 0.4, index + 0.4, colors="#7f7f7f", linestyles=":")
            bars.annotate(
                "diskcache, keys + expiry + tag",
                (index, level),
                xytext=(0, -10),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color="#555555",
            )
        for target in targets:
            if target.workload == row.name and target.chart_level is not None:
                bars.hlines(
                    target.chart_level,
                    index - 0.45,
                    index + 0.45,
                    colors="crimson",
                    linestyles="--",
                    linewidth=1.3,
                )
    bars.set_yscale("log")
    bars.axhline(1.0, color="#7f7f7f", linewidth=0.8)
    bars.set_xticks(range(len(shown)))
    bars.set_xticklabels([f"{row.name}\n({row.unit})" for row in shown], fontsize=8, rotation=30)
    bars.set_ylabel(
        "time per operation relative to diskcache, or to the row's other system "
        "(log scale; lower is faster)",
        fontsize=8,
    )
    bars.set_title("Side by side; the figure on each bar is in the row's unit", fontsize=10)
    handles = [Patch(color=COLORS[s], label=s) for s in systems]
    handles.append(Line2D([], [], color="crimson", linestyle="--", label="target (see the right)"))
    bars.legend(handles=handles, fontsize=8, loc="upper center", ncol=3)
    low, high = bars.get_ylim()
    bars.set_ylim(low, high * 30)  # room for the legend above the tallest bar

    positions = list(range(len(targets)))
    scores.barh(
        positions,
        [target.score for target in targets],
        color=["#2ca02c" if target.met else "crimson" for target in targets],
    )
    scores.axvline(1.0, color="crimson", linestyle="--", linewidth=1.3)
    for position, target in zip(positions, targets, strict=True):
        scores.annotate(f" {target.shown}", (target.score, position), va="center", fontsize=8)
    scores.set_yticks(positions)
    scores.set_yticklabels([f"{t.workload}\n{t.goal}" for t in targets], fontsize=8)
    scores.invert_yaxis()
    scores.set_xlim(0, max([1.2, *(t.score for t in targets)]) * 1.7)
    scores.set_xlabel("cacheness's figure / the target's limit (<= 1: met)")
    scores.set_title("cacheness against the issue's targets (green: met)", fontsize=10)
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main

UNITS = {
    "decorator hit": ("us/call", False),
    "put": ("ops/s", True),
    "get": ("ops/s", True),
    "memory hit": ("us/call", False),
    "hot get": ("ops/s", True),
    "put mixed": ("ops/s", True),
    "get mixed": ("ops/s", True),
    "4 processes": ("ops/s", True),
    "frame put": ("ms", False),
    "frame get": ("ms", False),
    "array put": ("ms", False),
    "array get": ("ms", False),
    "list entries": ("ms", False),
    "keys + metadata": ("ms", False),
    "cleanup expired": ("s", False),
    "derive_key": ("us", False),
}


GROUPS: dict[str, tuple[Callable[[Sizes], list[Contender]], Callable[[Sizes], int]]] = {
    "decorator hit": (decorator_contenders, lambda sizes: sizes.rounds),
    "memory hit": (memory_hit_contenders, lambda sizes: sizes.rounds),
    "put/get": (put_get_contenders, lambda sizes: sizes.rounds),
    "hot get": (hot_get_contenders, lambda sizes: sizes.rounds),
    "mixed": (mixed_contenders, lambda sizes: sizes.rounds),
    "4 processes": (process_contenders, lambda sizes: sizes.rounds),
    "list entries": (list_contenders, lambda sizes: sizes.rounds),
    "cleanup expired": (cleanup_contenders, lambda sizes: sizes.cleanup_rounds),
    "derive_key": (key_contenders, lambda sizes: sizes.rounds),
    "frame": (frame_contenders, lambda sizes: sizes.big_rounds),
    "array": (array_contenders, lambda sizes: sizes.big_rounds),
}
"""The groups of workloads, in the order they run (``--only`` picks some)."""


def measure(sizes: Sizes, only: list[str] | None = None) -> dict[str, Workload]:
    groups = [
        (title, make(sizes), rounds(sizes))
        for title, (make, rounds) in GROUPS.items()
        if not only or title in only
    ]
    rows: dict[str, Workload] = {}
    for title, contenders, rounds in groups:
        started = time.perf_counter()
        print(f"  {title}: {', '.join(c.system for c in contenders)} ...", end="", flush=True)
        for workload, per_system in run_group(contenders, rounds).items():
            unit, higher = UNITS[workload]
            row = rows.setdefault(workload, Workload(workload, unit, higher))
            row.rounds.update(per_system)
            row.does.update({c.system: c.does[workload] for c in contenders if workload in c.does})
        print(f" {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def load_results(path: Path) -> tuple[dict[str, Workload], dict[str, Any]]:
    """The rows of a saved run (its JSON), to print and draw again without measuring."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows: dict[str, Workload] = {}
    for saved in data["workloads"]:
        row = Workload(saved["name"], saved["unit"], saved["higher_is_better"])
        row.does = saved["does"]
        row.rounds = {
            system: [Timing(w, c) for w, c in zip(walls, saved["rounds_cpu"][system], strict=True)]
            for system, walls in saved["rounds"].items()
        }
        rows[row.name] = row
    frame = next((t for t in data["targets"] if t["goal"].startswith("stored <=")), None)
    if frame is not None and not FRAME_FACTS:
        handler, _, format_ = frame["shown"].rpartition(", ")[2].partition("/")
        FRAME_FACTS.update(stored=frame["figure"], raw=1.0, handler=handler, format=format_)
    return rows, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: small sizes")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (5)")
    parser.add_argument("--json", type=Path, default=RESULTS / "compare.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "compare.png")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--only", action="append", choices=list(GROUPS), help="run only these groups (repeat)"
    )
    parser.add_argument(
        "--redraw", type=Path, default=None, help="print and draw a saved JSON, measure nothing"
    )
    args = parser.parse_args(argv)
    if args.redraw is not None:
        rows, saved = load_results(args.redraw)
        targets = targets_of(rows)
        print(format_table(rows, targets, Sizes(**saved["sizes"])))
        load = saved["load_average"]
        print(f"\nload average before {load['before'][0]:.2f}, after {load['after'][0]:.2f}")
        found = saved["versions"]
        draw_chart(
            rows,
            targets,
            args.png,
            f"cacheness {found['cacheness']} vs diskcache {found['diskcache']}, joblib "
            f"{found['joblib']}: {saved['date'][:10]}, Python {saved['python']}, "
            f"{saved['cpus']} CPUs, load average {load['before'][0]:.1f}",
        )
        return 1 if args.strict and any(not t.met for t in targets) else 0
    sizes = Sizes.pick(args.quick, args.rounds)
    absent = [name for name, module in (("diskcache", diskcache), ("joblib", joblib)) if not module]

    before = list(os.getloadavg())
    print(
        f"cacheness vs peers - Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{before[0]:.2f} {before[1]:.2f} {before[2]:.2f}" + (" (quick)" if args.quick else "")
    )
    if absent:
        print(f"not installed, left out: {', '.join(absent)} (run in the bench environment)")
    rows = measure(sizes, args.only)
    after = list(os.getloadavg())
    targets = targets_of(rows)
    print()
    print(format_table(rows, targets, sizes))
    print(f"\nload average before {before[0]:.2f}, after {after[0]:.2f}")

    payload = to_json(rows, sizes, args.quick, {"before": before, "after": after})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    found = payload["versions"]
    title = (
        f"cacheness {found['cacheness']} vs diskcache {found['diskcache']}, "
        f"joblib {found['joblib']}: {payload['date'][:10]}, Python {payload['python']}, "
        f"{os.cpu_count()} CPUs, load average {before[0]:.1f}"
        + (" (quick run)" if args.quick else "")
    )
    try:
        draw_chart(rows, targets, args.png, title)
    except ImportError:
        print(f"matplotlib is not installed: no chart; wrote {args.json}")
    else:
        print(f"wrote {args.json} and {args.png}")
    missed = [t for t in targets if not t.met]
    if missed:
        print("targets missed: " + "; ".join(f"{t.workload} {t.goal} ({t.shown})" for t in missed))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
