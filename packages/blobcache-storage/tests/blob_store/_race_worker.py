"""Child process of the read-race stress tests (run as a script, never imported).

Usage:

* ``python _race_worker.py write ROOT CA SEED``: prints ``ready``, then puts, rewrites
  and deletes self-checking payloads under a few keys of the sqlite + filesystem store
  at ROOT (content-addressed when CA is 1) until the file ``ROOT/stop`` exists.
* ``python _race_worker.py read ROOT CA SEED GETS``: prints ``ready``, waits for a line
  on stdin (so that every reader starts together), reads the keys GETS times through
  every read path, and prints one JSON line: how many reads, hits, misses, and every
  error (there must be none) or payload that did not check out.

Payloads check themselves (:func:`payload` / :func:`intact`): a reader can tell that
whatever it got is exactly one value a writer stored.
"""

from __future__ import annotations

import json
import os
import random
import sys

KEYS = ["k0", "k1", "k2"]
SHARED_SEEDS = 6  # content-addressed writers reuse payloads, so entries share blobs


def payload(seed: int, size: int = 100_000) -> bytes:
    """``size`` bytes (after a 12-byte header) that :func:`intact` can check."""
    body = random.Random(seed).randbytes(size)
    return seed.to_bytes(8, "big") + size.to_bytes(4, "big") + body


def intact(data: object) -> bool:
    """True when ``data`` is exactly what :func:`payload` made from its header."""
    if not isinstance(data, bytes) or len(data) < 12:
        return False
    seed, size = int.from_bytes(data[:8], "big"), int.from_bytes(data[8:12], "big")
    return data == payload(seed, size)


def write(store, rng: random.Random, stop: str, content_addressable: bool) -> None:  # type: ignore[no-untyped-def]
    while not os.path.exists(stop):
        key = rng.choice(KEYS)
        seed = rng.randrange(SHARED_SEEDS) if content_addressable else rng.randrange(1 << 40)
        action = rng.random()
        if action < 0.6:
            store.put(payload(seed), key=key)
        elif action < 0.8:
            store.update_data(key, payload(seed))
        else:
            store.delete(key)


def read(store, rng: random.Random, gets: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    counts = {"gets": 0, "hits": 0, "misses": 0}
    errors: list[str] = []

    def seen(value: object) -> None:
        counts["gets"] += 1
        if value is None:
            counts["misses"] += 1
        elif intact(value):
            counts["hits"] += 1
        else:
            errors.append(f"a payload that does not check out: {value!r:.60}")

    paths = ["get", "get_with_metadata", "get_batch", "lookup", "read_current"]
    while counts["gets"] < gets:
        key = rng.choice(KEYS)
        path = rng.choice(paths)
        try:
            if path == "get":
                seen(store.get(key))
            elif path == "get_with_metadata":
                found = store.get_with_metadata(key)
                seen(None if found is None else found[0])
            elif path == "get_batch":
                for value in store.get_batch(KEYS).values():
                    seen(value)
            elif path == "lookup":
                found = store.lookup(key)
                seen(None if found is None else found.value)
            else:
                entry = store.get_metadata(key)
                found = None if entry is None else store.read_current(entry)
                seen(None if found is None else found.value)
        except Exception as exc:
            counts["gets"] += 1
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
    return {**counts, "errors": errors}


def main(argv: list[str]) -> None:
    from cacheness.storage import BlobStore

    mode, root, content_addressable, seed = argv[0], argv[1], argv[2] == "1", int(argv[3])
    rng = random.Random(seed)
    with BlobStore(root, content_addressable=content_addressable, inline_threshold=0) as store:
        store.get("warm-up")  # open the index before telling the test we are ready
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        if mode == "write":
            write(store, rng, os.path.join(root, "stop"), content_addressable)
        elif mode == "read":
            sys.stdin.readline()
            sys.stdout.write(json.dumps(read(store, rng, int(argv[4]))) + "\n")
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
