"""Child process of the cache's read-race stress tests (run as a script, never imported).

Usage:

* ``python _race_worker.py write DIR SEED``: prints ``ready``, then puts, rewrites and
  invalidates self-checking values of three key parameter sets in the cache at DIR
  until the file ``DIR/stop`` exists.
* ``python _race_worker.py read DIR SEED GETS``: prints ``ready``, waits for a line on
  stdin, reads GETS values through ``get``, ``get_with_metadata`` and ``get_batch`` of
  a ``strict`` cache, and prints one JSON line: reads, hits, misses, every error and
  the cache's own ``errors`` statistic (all must be zero).
"""

from __future__ import annotations

import json
import os
import random
import sys

ITEMS = [0, 1, 2]


def payload(seed: int, size: int = 100_000) -> bytes:
    body = random.Random(seed).randbytes(size)
    return seed.to_bytes(8, "big") + size.to_bytes(4, "big") + body


def intact(data: object) -> bool:
    if not isinstance(data, bytes) or len(data) < 12:
        return False
    seed, size = int.from_bytes(data[:8], "big"), int.from_bytes(data[8:12], "big")
    return data == payload(seed, size)


def write(cache, rng: random.Random, stop: str) -> None:  # type: ignore[no-untyped-def]
    while not os.path.exists(stop):
        item = rng.choice(ITEMS)
        action = rng.random()
        if action < 0.6:
            cache.put(payload(rng.randrange(1 << 40)), item=item)
        elif action < 0.8:
            cache.update_data(payload(rng.randrange(1 << 40)), item=item)
        else:
            cache.invalidate(item=item)


def read(cache, rng: random.Random, gets: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    counts = {"gets": 0, "hits": 0, "misses": 0}
    errors: list[str] = []

    def seen(value: object) -> None:
        counts["gets"] += 1
        if value is None:
            counts["misses"] += 1
        elif intact(value):
            counts["hits"] += 1
        else:
            errors.append(f"a value that does not check out: {value!r:.60}")

    while counts["gets"] < gets:
        item = rng.choice(ITEMS)
        path = rng.choice(["get", "get_with_metadata", "get_batch"])
        try:
            if path == "get":
                seen(cache.get(item=item))
            elif path == "get_with_metadata":
                found = cache.get_with_metadata(item=item)
                seen(None if found is None else found[0])
            else:
                for value in cache.get_batch([{"item": i} for i in ITEMS]):
                    seen(value)
        except Exception as exc:
            counts["gets"] += 1
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
    return {**counts, "errors": errors}


def main(argv: list[str]) -> None:
    from cacheness import cacheness

    mode, directory, seed = argv[0], argv[1], int(argv[2])
    rng = random.Random(seed)
    options = {"cache_dir": directory, "strict": True, "serialization": {"inline_threshold": 0}}
    with cacheness(**options) as cache:
        cache.get(item="warm-up")
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        if mode == "write":
            write(cache, rng, os.path.join(directory, "stop"))
        elif mode == "read":
            sys.stdin.readline()
            result = read(cache, rng, int(argv[3]))
            result["stats_errors"] = cache.get_stats()["errors"]
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
