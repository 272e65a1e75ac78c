"""What a short script pays before its first hit: cacheness next to diskcache, whole processes.

Run:  python -m hatch run bench:python benchmarks/import_time.py [--rounds N] [--quick]
      [--json PATH] [--strict]

Each scenario is a fresh Python process (``sys.executable -c ...``), timed from the
outside with ``time.perf_counter`` around ``subprocess.run``; bytecode is compiled and
cached by a first untimed run of each (``PYTHONDONTWRITEBYTECODE`` is dropped from the
children's environment: installed packages have their bytecode cached). Rounds are
interleaved (the order of scenarios rotated each round) so background load hits every
one alike; the table shows the median of the
rounds and, as a cross-check that does not move with the load of a shared machine, the
median CPU time (user + system) of the child process.

Scenarios:

* ``python -c pass``             the interpreter alone (a floor under everything else);
* ``import diskcache`` / ``import cacheness`` / ``import cacheness.storage``;
* ``open + hit``: open the default cache in an existing directory and call a decorated
  function whose value is stored there (a hit), for cacheness
  (``@cached(cache_instance=cacheness(cache_dir=...))``) and diskcache
  (``@diskcache.Cache(dir).memoize()``). The directories are filled by a first run.

Targets (the issue's): ``import cacheness`` <= 1.5x ``import diskcache``; open + hit
<= 2.5x diskcache's. ``--strict`` exits with status 1 when one is missed. The figures
and this command are quoted in ``docs/speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

HIT_CACHENESS = """
import sys
from cacheness import cached, cacheness
cache = cacheness(cache_dir=sys.argv[1])
@cached(cache_instance=cache)
def double(x: int) -> int:
    return 2 * x
assert double(x=21) == 42
cache.close()
"""
HIT_DISKCACHE = """
import sys
import diskcache
cache = diskcache.Cache(sys.argv[1])
@cache.memoize()
def double(x: int) -> int:
    return 2 * x
assert double(x=21) == 42
cache.close()
"""
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TARGETS = {  # scenario: (reference, limit as a multiple of the reference)
    "import cacheness": ("import diskcache", 1.5),
    "open + hit: cacheness": ("open + hit: diskcache", 2.5),
}


@dataclass
class Scenario:
    name: str
    args: list[str]
    wall_ms: list[float]
    cpu_ms: list[float]

    def run(self) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *self.args], check=True, env=CHILD_ENV)
        self.wall_ms.append((time.perf_counter() - start) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.cpu_ms.append(cpu * 1000)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_ms)


def scenarios(workdir: Path) -> list[Scenario]:
    hit_cacheness, hit_diskcache = workdir / "hit_cacheness.py", workdir / "hit_diskcache.py"
    hit_cacheness.write_text(HIT_CACHENESS)
    hit_diskcache.write_text(HIT_DISKCACHE)
    commands = {
        "python -c pass": ["-c", "pass"],
        "import diskcache": ["-c", "import diskcache"],
        "import cacheness": ["-c", "import cacheness"],
        "import cacheness.storage": ["-c", "import cacheness.storage"],
        "open + hit: diskcache": [str(hit_diskcache), str(workdir / "diskcache")],
        "open + hit: cacheness": [str(hit_cacheness), str(workdir / "cacheness")],
    }
    return [Scenario(name, args, [], []) for name, args in commands.items()]


def measure(rounds: int) -> list[Scenario]:
    with tempfile.TemporaryDirectory(prefix="import-time-") as tmp:
        found = scenarios(Path(tmp))
        for scenario in found:  # compile bytecode, fill the caches: not timed
            scenario.run()
            scenario.wall_ms.clear()
            scenario.cpu_ms.clear()
        for round_number in range(rounds):
            shift = round_number % len(found)
            for scenario in found[shift:] + found[:shift]:
                scenario.run()
    return found


def report(found: list[Scenario], rounds: int) -> tuple[list[str], dict[str, object]]:
    by_name = {scenario.name: scenario for scenario in found}
    print(f"{'scenario':<28}{'wall ms':>10}{'min':>8}{'cpu ms':>10}   target")
    print("-" * 80)
    missed = []
    verdicts = {}
    for scenario in found:
        target = ""
        if scenario.name in TARGETS:
            reference, limit = TARGETS[scenario.name]
            ratio = scenario.wall / by_name[reference].wall
            cpu_ratio = scenario.cpu / by_name[reference].cpu
            met = ratio <= limit
            target = (
                f"<= {limit}x {reference}: {ratio:.2f}x ({'ok' if met else 'MISSED'}; "
                f"cpu {cpu_ratio:.2f}x)"
            )
            verdicts[scenario.name] = {"ratio": ratio, "cpu_ratio": cpu_ratio, "limit": limit}
            if not met:
                missed.append(f"{scenario.name} {target}")
        print(
            f"{scenario.name:<28}{scenario.wall:>10.1f}{min(scenario.wall_ms):>8.1f}"
            f"{scenario.cpu:>10.1f}   {target}"
        )
    print("-" * 80)
    print(f"median of {rounds} interleaved rounds; wall-clock and child CPU time per process")
    return missed, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 30; quick 8)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", type=Path, default=RESULTS / "import_time.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    rounds = args.rounds or (8 if args.quick else 30)
    load_before = os.getloadavg()[0]
    found = measure(rounds)
    missed, verdicts = report(found, rounds)
    load_after = os.getloadavg()[0]
    print(f"load average before {load_before:.2f}, after {load_after:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "versions": {
                    name: version(name) for name in ("cacheness", "blobcache-storage", "diskcache")
                },
                "rounds": rounds,
                "load_average": [load_before, load_after],
                "scenarios": [
                    {**asdict(s), "median_wall_ms": s.wall, "median_cpu_ms": s.cpu} for s in found
                ],
                "targets": verdicts,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    if missed:
        print("targets missed: " + "; ".join(missed))
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
