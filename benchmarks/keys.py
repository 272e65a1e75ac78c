"""Key derivation speed: cacheness.keys.derive_key beside hashing a pickle and joblib.hash.

Run:  python -m hatch run bench:python benchmarks/keys.py [--quick] [--json out.json]

Workloads (the same inputs for every system, measured in one run):

* ``5 scalar kwargs``   the issue's target: derive_key <= 10 us per call
* ``nested config``     a dict of 60 items with lists and sub-dicts
* ``ndarray 8 MB``      float64 array
* ``DataFrame 100k``    100,000 rows: int, float, datetime and string columns
* ``dir 200 x 64 KB``   a directory tree by content (derive_key only; stat mode beside it)

Systems: ``cacheness`` (derive_key), ``pickle+xxh3`` (XXH3-128 of ``pickle.dumps`` of the
sorted items: fast but neither order- nor type-canonical and not stable across versions),
``joblib.hash`` (MD5 over joblib's pickler, what ``joblib.Memory`` keys with).
Times are the best of several repeats, in microseconds per call.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xxhash

from cacheness.keys import derive_key

try:
    import joblib
except ImportError:  # the bench env has it; the dev env may not
    joblib = None


def pickle_xxh3(params: dict[str, Any]) -> str:
    return xxhash.xxh3_128_hexdigest(pickle.dumps(sorted(params.items()), protocol=5))


def best_us(fn: Callable[[], Any], budget_s: float) -> float:
    """Best per-call time in microseconds, spending about ``budget_s`` in total."""
    timer = timeit.Timer(fn)
    number, elapsed = timer.autorange()
    per_call = elapsed / number
    repeats = max(3, min(15, int(budget_s / max(elapsed, 1e-9))))
    runs = timer.repeat(repeat=repeats, number=number)
    return min(min(runs) / number, per_call) * 1e6


def make_tree(root: Path, files: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(files):
        path = root / f"d{i % 10}" / f"f{i:04}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(size))
    return root


def workloads(tmp: Path, quick: bool) -> dict[str, dict[str, Any]]:
    rows = 20_000 if quick else 100_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": rng.random(rows),
            "when": pd.date_range("2024-01-01", periods=rows, freq="min"),
            "label": pd.Series([f"item-{i % 1000}" for i in range(rows)], dtype=object),
        }
    )
    config = {
        f"param_{i}": (
            [i, i + 0.5, f"v{i}"] if i % 3 == 0 else {"a": i, "b": [1, 2, 3]} if i % 3 else i
        )
        for i in range(60)
    }
    tree = make_tree(tmp / "tree", 40 if quick else 200, 64 * 1024)
    return {
        "5 scalar kwargs": {
            "params": {"model": "resnet50", "epochs": 10, "lr": 0.001, "augment": True, "seed": 42}
        },
        "nested config": {"params": {"config": config, "name": "exp-7"}},
        "ndarray 8 MB": {"params": {"x": rng.random(1_000_000)}},
        f"DataFrame {rows // 1000}k rows": {"params": {"frame": frame}},
        f"dir {len(list(tree.rglob('*.bin')))} x 64 KB": {"params": {"data": tree}, "tree": True},
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure every workload on every system; return rows of the result table."""
    budget = 0.2 if quick else 1.0
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cacheness-bench-keys-") as tmp:
        for name, spec in workloads(Path(tmp), quick).items():
            params = spec["params"]
            row: dict[str, Any] = {"workload": name}
            row["cacheness"] = best_us(lambda p=params: derive_key(p), budget)
            if spec.get("tree"):
                row["cacheness (stat mode)"] = best_us(
                    lambda p=params: derive_key(p, path_mode="stat"), budget
                )
            else:
                row["pickle+xxh3"] = best_us(lambda p=params: pickle_xxh3(p), budget)
                if joblib is not None:
                    row["joblib.hash"] = best_us(lambda p=params: joblib.hash(p), budget)
            results.append(row)
    return results


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = ["cacheness", "cacheness (stat mode)", "pickle+xxh3", "joblib.hash"]
    columns = [c for c in columns if any(c in r for r in rows)]
    width = max(len(r["workload"]) for r in rows)
    lines = [f"{'workload (us/call)':<{width}}  " + "  ".join(f"{c:>21}" for c in columns)]
    for r in rows:
        cells = [f"{r[c]:>21,.2f}" if c in r else f"{'-':>21}" for c in columns]
        lines.append(f"{r['workload']:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, shorter runs")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"derive_key benchmark - Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f}"
        + ("" if joblib is not None else " (joblib not installed: column skipped)")
    )
    rows = run(quick=args.quick)
    print(format_table(rows))
    target = rows[0]["cacheness"]
    print(f"\n5 scalar kwargs: {target:.2f} us per derive_key (target <= 10 us)")
    if args.json:
        payload = {"python": sys.version, "load_average": load, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
