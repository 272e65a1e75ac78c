"""Run every benchmark in this folder, one after the other, and save their JSON results.

``python -m hatch run bench:all`` runs them all in full (many minutes);
``python -m hatch run bench:all --quick`` runs the quick variants (benchmarks without a
quick mode are skipped then). Results go to ``benchmarks/results/<name>.json``.
Benchmarks are never part of the test suite: speed is measured here, side by side with
peers, not asserted in tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# In the order they build on each other: backends, serialization, the store, the cache.
BENCHMARKS = (
    "metadata_backends",
    "blob_backends",
    "handlers",
    "blob_store",
    "keys",
    "compare",
    "import_time",
    "observability",
    "team_cache",
    "sql_cache",
    "portability",
    "custom_metadata",
)


def supports(script: Path, option: str) -> bool:
    return f'"{option}"' in script.read_text(encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick variants only")
    parser.add_argument("names", nargs="*", help=f"run only these: {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    for name in args.names or BENCHMARKS:
        script = HERE / f"{name}.py"
        command = [sys.executable, str(script), "--json", str(results / f"{name}.json")]
        if args.quick:
            if not supports(script, "--quick"):
                print(f"== {name}: no quick mode, skipped", flush=True)
                continue
            command.append("--quick")
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, check=False).returncode
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
