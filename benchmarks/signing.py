"""What signed entries cost: BlobStore with signing on and off, side by side.

Run with ``python -m hatch run bench:python benchmarks/signing.py`` (``--quick`` for a
smoke run, ``--json out.json`` to keep the figures, ``--strict`` to exit with status 1
when a target is missed).

* **small**: ``put`` and ``get`` of a ~200-byte dict (inline in the index), on the
  default pairing (sqlite + filesystem) and on memory + memory (where the signature is
  the largest share). Target: signing adds at most 2 µs to a put and to a get.
* **signer**: ``EntrySigner.sign`` and ``check`` of one entry, bare.
* **80 MB array**: ``put`` and ``get`` of a float64 array of 10M elements (sqlite +
  filesystem). Target: no measurable difference (the signature covers the hash, not
  the bytes; the bytes are hashed as they are written and read either way).

The two contenders run interleaved, round by round, in fresh directories, after a
warm-up round; times are CPU time of the benchmark process (signing adds CPU work; CPU
time holds better than wall time on a shared machine), the best round beside the median.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cacheness.storage import BlobStore, Entry, EntrySigner

KEY = bytes(range(32))


def small_value(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"], "score": i / 7, "x" * 8: 1}


def per_op(run: Callable[[], None], count: int) -> float:
    """CPU seconds of this process per operation: what signing adds is CPU work, and
    CPU time holds better than wall time on a shared, loaded machine."""
    gc.collect()
    start = time.process_time()
    run()
    return (time.process_time() - start) / count


Figures = dict[str, dict[str, list[float]]]


def side_by_side(
    rounds: int,
    options: Callable[[str], dict[str, Any]],
    ops: dict[str, Callable[[BlobStore], None]],
    count: int,
) -> Figures:
    """Run ``ops`` on a fresh store with signing off and on, interleaved round by round;
    return seconds per operation, per mode and op, one figure per round."""
    figures: Figures = {mode: {op: [] for op in ops} for mode in ("off", "on")}
    for round_ in range(-1, rounds):  # round -1 warms up (imports, caches): not kept
        for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            signing: dict[str, Any] = {"signing_key": KEY} if mode == "on" else {"signing": False}
            with (
                tempfile.TemporaryDirectory() as folder,
                BlobStore(**options(folder), **signing) as store,
            ):
                for op, run in ops.items():
                    seconds = per_op(lambda s=store, r=run: r(s), count)
                    if round_ >= 0:
                        figures[mode][op].append(seconds)
    return figures


def bench_small(pairing: str, count: int, rounds: int) -> Figures:
    values = [small_value(i) for i in range(count)]
    keys = [f"key-{i}" for i in range(count)]

    def put_all(store: BlobStore) -> None:
        for key, value in zip(keys, values, strict=True):
            store.put(value, key=key)

    def get_all(store: BlobStore) -> None:
        for key in keys:
            store.get(key)

    def options(folder: str) -> dict[str, Any]:
        if pairing == "memory":
            return {"metadata_backend": "memory", "blob_backend": "memory"}
        return {"path": folder}

    return side_by_side(rounds, options, {"put": put_all, "get": get_all}, count)


def bench_signer(count: int) -> dict[str, float]:
    signer = EntrySigner(KEY)
    entry = Entry.new(
        "key-1", handler="plain", format="msgpack", size=180, raw_size=180,
        content_hash="0" * 32, inline=b"x" * 180, metadata={"owner": "me"},
    )  # fmt: skip
    signed = entry.replace(signature=signer.sign(entry))

    def sign() -> None:
        for _ in range(count):
            signer.sign(entry)

    def check() -> None:
        for _ in range(count):
            signer.check(signed)

    best_sign = min(per_op(sign, count) for _ in range(5))
    best_check = min(per_op(check, count) for _ in range(5))
    return {"sign_us": best_sign * 1e6, "check_us": best_check * 1e6}


def bench_array(n: int, rounds: int) -> Figures:
    import numpy as np

    array = np.cumsum(np.random.default_rng(0).integers(0, 8, n)).astype("float64")

    def put(store: BlobStore) -> None:
        store.put(array, key="a")

    def get(store: BlobStore) -> None:
        store.get("a")

    ops: dict[str, Callable[[BlobStore], None]] = {"put": put, "get": get}
    return side_by_side(rounds, lambda folder: {"path": folder}, ops, 1)


def summary(figures: dict[str, dict[str, list[float]]], unit: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in ("put", "get"):
        off, on = min(figures["off"][op]), min(figures["on"][op])
        out[op] = {
            "off": off * unit,
            "on": on * unit,
            "added": (on - off) * unit,
            "median_off": statistics.median(figures["off"][op]) * unit,
            "median_on": statistics.median(figures["on"][op]) * unit,
        }
    return out


def show(label: str, figures: dict[str, Any], unit: str, limit: float | None = None) -> list[str]:
    """Print one line per op; return the ops whose added time exceeds ``limit``."""
    missed = []
    for op in ("put", "get"):
        row = figures[op]
        target = f" (target <= {limit:g} {unit})" if limit is not None else ""
        print(
            f"{label:26} {op}: off {row['off']:8.2f} {unit}, on {row['on']:8.2f} {unit}, "
            f"added {row['added']:+.2f} {unit} ({row['added'] / row['off']:+.1%}){target}"
        )
        if limit is not None and row["added"] > limit:
            missed.append(f"{label} {op}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data: a smoke run")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    count, rounds, n = (300, 3, 1_000_000) if args.quick else (3000, 9, 10_000_000)
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()}")
    results: dict[str, Any] = {"signer": bench_signer(count * 10)}
    print(
        f"signer: sign {results['signer']['sign_us']:.2f} µs, "
        f"check {results['signer']['check_us']:.2f} µs"
    )
    missed = []
    for pairing in ("memory", "sqlite+filesystem"):
        small = summary(bench_small(pairing, count, rounds), 1e6)
        results[f"small {pairing}"] = small
        missed += show(f"small {pairing}", small, "µs", limit=2.0)
    array = summary(bench_array(n, max(3, rounds // 3)), 1e3)
    results[f"array {n * 8 // 1_000_000} MB"] = array
    show(f"array {n * 8 // 1_000_000} MB", array, "ms")
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if missed:
        print("targets missed: " + ", ".join(missed))
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
