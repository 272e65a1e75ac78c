"""Export, import and migrate next to the file tools: ``tar`` of the store and copying it.

Run:  python -m hatch run bench:python benchmarks/portability.py [--quick] [--json PATH]

Two stores on the local filesystem (SQLite index + blob files):

* ``small``: 10,000 entries of 8 KiB of incompressible bytes (blob files);
* ``array``: one 1 GiB float32 NumPy array (``--quick``: 128 MiB, and 1,000 entries).

For each, side by side (wall time, best of ``--rounds``):

* ``export`` (zstd, and uncompressed) next to ``tar -cf`` of the store directory
  (``tar --zstd`` too when tar has it) - both read every byte and write one file;
* ``import`` of that archive into an empty store;
* ``migrate`` to a second filesystem store next to ``cp -r`` of the directory.

The export and import also verify (hash) every byte and write an index; ``tar``/``cp``
only move files. The figures are quoted in ``docs/portability.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cacheness.storage import BlobStore, migrate


def timed(action: Callable[[], object], rounds: int, reset: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(rounds):
        reset()
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def tar_has_zstd() -> bool:
    probe = subprocess.run(["tar", "--help"], capture_output=True, text=True, check=False)
    return "--zstd" in probe.stdout


def fill_small(path: Path, count: int) -> int:
    with BlobStore(path) as store:
        for index in range(count):
            store.put(os.urandom(8192), key=f"item/{index:05d}", metadata={"i": index})
        return store.total_size()


def fill_array(path: Path, size: int) -> int:
    import numpy as np

    array = np.random.default_rng(0).random(size // 4, dtype=np.float32)
    with BlobStore(path) as store:
        store.put(array, key="array")
        return store.total_size()


def measure(name: str, source: Path, work: Path, rounds: int) -> dict[str, float]:
    archive = work / f"{name}.tar.zst"
    plain = work / f"{name}.tar"
    target = work / f"{name}-import"
    copy = work / f"{name}-copy"

    def clean(*paths: Path) -> Callable[[], None]:
        def reset() -> None:
            for path in paths:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()

        return reset

    store = BlobStore(source)
    figures = {
        "export_zstd": timed(lambda: store.export(archive), rounds, clean(archive)),
        "export_plain": timed(lambda: store.export(plain, compression=None), rounds, clean(plain)),
        "tar": timed(
            lambda: subprocess.run(
                ["tar", "-cf", str(work / "t.tar"), "-C", str(source), "."], check=True
            ),
            rounds,
            clean(work / "t.tar"),
        ),
    }
    if tar_has_zstd():
        figures["tar_zstd"] = timed(
            lambda: subprocess.run(
                ["tar", "--zstd", "-cf", str(work / "t.tar.zst"), "-C", str(source), "."],
                check=True,
            ),
            rounds,
            clean(work / "t.tar.zst"),
        )

    def do_import() -> None:
        with BlobStore(target) as into:
            into.import_(archive)

    figures["import_zstd"] = timed(do_import, rounds, clean(target))

    def do_migrate() -> None:
        with BlobStore(target) as into:
            migrate(store, into)

    figures["migrate"] = timed(do_migrate, rounds, clean(target))
    figures["cp"] = timed(
        lambda: subprocess.run(["cp", "-r", str(source), str(copy)], check=True),
        rounds,
        clean(copy),
    )
    figures["archive_bytes"] = archive.stat().st_size
    store.close()
    clean(archive, plain, target, copy, work / "t.tar", work / "t.tar.zst")()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 entries and 128 MiB")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    count, size = (1000, 128 << 20) if args.quick else (10_000, 1 << 30)
    results: dict[str, object] = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        work = Path(folder)
        stored = fill_small(work / "small", count)
        results["small"] = {
            "entries": count,
            "stored_bytes": stored,
            **measure("small", work / "small", work, args.rounds),
        }
        shutil.rmtree(work / "small")
        stored = fill_array(work / "array", size)
        results["array"] = {
            "bytes": size,
            "stored_bytes": stored,
            **measure("array", work / "array", work, args.rounds),
        }
    print(
        f"{'':10} {'export zstd':>12} {'export tar':>11} {'tar -cf':>9} {'tar --zstd':>11} "
        f"{'import':>8} {'migrate':>8} {'cp -r':>7}"
    )
    for name in ("small", "array"):
        row = results[name]
        assert isinstance(row, dict)
        cells = [
            row["export_zstd"],
            row["export_plain"],
            row["tar"],
            row.get("tar_zstd", float("nan")),
            row["import_zstd"],
            row["migrate"],
            row["cp"],
        ]
        print(f"{name:10} " + " ".join(f"{value:>10.2f}s" for value in cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
