"""What observability costs: a small get and put with telemetry off, idle and recording.

Run:  python -m hatch run bench:python benchmarks/observability.py [--rounds N] [--quick]
      [--baseline REF] [--json PATH]

Side by side in one run, each in fresh processes, rounds interleaved:

* ``before``: the code of git ``REF`` (default ``main``; exported with ``git archive``
  into a temporary directory and put first on ``PYTHONPATH``): the same operations
  without the instrumentation hooks. Skipped when git or the ref is not available;
* ``no extra``: this code, ``opentelemetry`` cannot be imported (as when the ``otel``
  extra is not installed);
* ``api, no provider``: ``opentelemetry-api`` imported, no provider configured (a
  service that loads the API through another library and exports nothing);
* ``sdk recording``: SDK tracer and meter providers installed (spans to a batch
  processor whose exporter drops them, metrics to an in-memory reader): the price of
  recording everything.

Operations (µs per call, the median of ``--rounds`` rounds of the best of 5 repeats):
``hook (ns)`` is the cost of one instrumentation check (``instrumentation()``), measured
alone because on a loaded machine the process-to-process noise of the operations is
larger than the hooks (a ``cache.get`` passes 3 hooks, a ``BlobStore.get`` 1);
``cache.get`` of a small value (a hit, SQLite + files), ``BlobStore.get`` of a small
value (memory + memory: pure CPU, where the hooks weigh most), ``cache.put`` of a small
value. Target (the issue's): idle or absent telemetry costs a small get <= 0.5 µs more
than ``before``. The figures are quoted in ``docs/observability.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

CHILD = r"""
import json, sys, tempfile, timeit
mode, loops = sys.argv[1], int(sys.argv[2])
if mode == "sdk recording":
    loops = max(loops // 20, 100)  # each call records spans: slower by far
if mode == "no extra":
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError("blocked: the otel extra is not installed")
            return None
    sys.meta_path.insert(0, Block())
elif mode == "api, no provider":
    import opentelemetry.trace, opentelemetry.metrics
elif mode == "sdk recording":
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

from cacheness import cacheness
from cacheness.storage import BlobStore
import cacheness.storage as storage

cache = cacheness(cache_dir=tempfile.mkdtemp())
cache.put({"a": 1, "b": [1, 2, 3]}, item=1)
store = BlobStore(metadata_backend="memory", blob_backend="memory")
store.put({"a": 1}, key="k")
counter = iter(range(10**9))

def best(fn, number=loops):
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

result = {
    "cache.get (hit)": best(lambda: cache.get(item=1)),
    "BlobStore.get": best(lambda: store.get("k")),
    "cache.put": best(lambda: cache.put({"a": 1}, item=next(counter)), max(loops // 20, 100)),
    "instrumented": hasattr(storage, "instrumentation"),
}
if result["instrumented"]:  # the hook itself, free of the operations' noise
    result["hook (ns)"] = best(storage.instrumentation, loops * 20) * 1000
print(json.dumps(result))
"""

OPERATIONS = ("cache.get (hit)", "BlobStore.get", "cache.put")


def export_baseline(ref: str, into: Path) -> str | None:
    """Extract the packages of git ``ref`` into ``into``; return a PYTHONPATH, or None."""
    archive = into / "baseline.tar"
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), ref, "packages"],
        capture_output=True,
        check=False,
    )
    if done.returncode:
        print(f"baseline {ref!r} not available: {done.stderr.decode().strip()}")
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    packages = into / "packages"
    sources = [packages / "cacheness" / "src", packages / "blobcache-storage" / "src"]
    return os.pathsep.join(str(path) for path in sources)


def run(mode: str, loops: int, pythonpath: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    child_mode = "no extra" if mode == "before" else mode
    done = subprocess.run(
        [sys.executable, "-c", CHILD, child_mode, str(loops)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds of fewer loops")
    parser.add_argument("--baseline", default="main", help="git ref of 'before' (default main)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    loops = 2000 if args.quick else 10_000
    print(f"{platform.python_version()} on {platform.machine()}, load {os.getloadavg()}")

    with tempfile.TemporaryDirectory() as scratch:
        baseline = export_baseline(args.baseline, Path(scratch))
        modes = ["no extra", "api, no provider", "sdk recording"]
        if baseline is not None:
            modes.insert(0, "before")
        hooks: dict[str, list[float]] = {}
        samples: dict[str, dict[str, list[float]]] = {
            mode: {op: [] for op in OPERATIONS} for mode in modes
        }
        for index in range(rounds):
            order = modes[index % len(modes) :] + modes[: index % len(modes)]
            for mode in order:
                result = run(mode, loops, baseline if mode == "before" else None)
                print(f"round {index + 1}/{rounds} {mode}: {result}", flush=True)
                if mode == "before" and result["instrumented"]:
                    raise SystemExit("the baseline already has instrumentation: pick another ref")
                for op in OPERATIONS:
                    samples[mode][op].append(result[op])
                if "hook (ns)" in result:
                    hooks.setdefault(mode, []).append(result["hook (ns)"])

    medians = {
        mode: {op: statistics.median(values) for op, values in ops.items()}
        for mode, ops in samples.items()
    }
    reference = medians.get("before", medians["no extra"])
    print(f"\n{'µs per call':<20}" + "".join(f"{op:>22}" for op in OPERATIONS))
    for mode in modes:
        cells = []
        for op in OPERATIONS:
            value, delta = medians[mode][op], medians[mode][op] - reference[op]
            cells.append(f"{value:9.2f} ({delta:+6.2f})")
        print(f"{mode:<20}" + "".join(f"{cell:>22}" for cell in cells))
    print("(in brackets: the difference to 'before', or to 'no extra' without a baseline)")
    hook_ns = {mode: statistics.median(values) for mode, values in hooks.items()}
    for mode, value in hook_ns.items():
        print(f"one hook, {mode}: {value:.0f} ns")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {"rounds": rounds, "loops": loops, "median_us": medians, "hook_ns": hook_ns}
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
