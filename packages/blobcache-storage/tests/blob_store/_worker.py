"""Child process for the multi-process BlobStore tests (run as a script, never imported).

Usage: ``python _worker.py race ROOT SEED`` or ``python _worker.py serve``.

* ``serve``: imports everything once, then forks a crash writer for each
  ``crash ROOT SEED CA`` line on stdin (``CA`` is 1 for a content-addressed store). A
  writer opens its sqlite + filesystem store, prints ``ready PID``, then puts, updates
  and deletes self-checking payloads (inline ones and blobs of up to a few MiB) under
  ten keys, forever, until the test kills it with SIGKILL. ``wait PID`` reaps a writer
  and prints ``exited PID STATUS`` (``-9`` when SIGKILL ended it). Forking a warm
  process makes a trial cost milliseconds instead of an interpreter start.
* ``race``: prints ``ready``, waits for a line on stdin (so that all workers start
  together), then 80 rounds of putting one of three identical payloads under keys of its
  own and deleting some of them again, on a content-addressed store; prints ``done``.

Payloads check themselves: :func:`payload` rebuilds the bytes from the 12-byte header,
so the parent can tell that whatever an entry holds is complete.
"""

from __future__ import annotations

import os
import random
import sys


def payload(seed: int, size: int) -> bytes:
    """``size`` bytes (after a 12-byte header) that :func:`intact` can check."""
    body = random.Random(seed).randbytes(size)
    return seed.to_bytes(8, "big") + size.to_bytes(4, "big") + body


def intact(data: bytes) -> bool:
    """True when ``data`` is exactly what :func:`payload` made from its header."""
    if len(data) < 12:
        return False
    seed, size = int.from_bytes(data[:8], "big"), int.from_bytes(data[8:12], "big")
    return data == payload(seed, size)


def crash(store, rng: random.Random) -> None:
    sys.stdout.write(f"ready {os.getpid()}\n")
    sys.stdout.flush()
    sizes = [100, 1_000, 50_000, 500_000, 3_000_000]
    while True:
        key = f"k{rng.randrange(10)}"
        action = rng.random()
        data = payload(rng.randrange(1 << 40), rng.choice(sizes))
        if action < 0.5:
            store.put(data, key=key)
        elif action < 0.8:
            store.update_data(key, data)
        else:
            store.delete(key)


def race(store, rng: random.Random, me: int) -> None:
    shared = [payload(seed, 120_000) for seed in range(3)]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    for _ in range(80):
        key = f"p{me}-{rng.randrange(6)}"
        if rng.random() < 0.7:
            store.put(rng.choice(shared), key=key)
        else:
            store.delete(key)
    sys.stdout.write("done\n")


def writer(root: str, seed: int, content_addressable: bool) -> None:
    """The forked child: write until killed (an error of its own exits with status 1)."""
    from cacheness.storage import BlobStore

    try:
        with BlobStore(root, content_addressable=content_addressable) as store:
            crash(store, random.Random(seed))
    except BaseException as exc:
        sys.stdout.write(f"failed {os.getpid()} {exc!r}\n")
        sys.stdout.flush()
    finally:
        os._exit(1)


def serve() -> None:
    import tempfile

    from cacheness.storage import BlobStore

    # Import everything a writer needs (the SQL backend loads lazily) before forking.
    with tempfile.TemporaryDirectory() as warm, BlobStore(warm) as store:
        store.put(payload(0, 80_000), key="warm-up")
        store.update_data("warm-up", payload(1, 100))
        store.delete("warm-up")
    for line in sys.stdin:
        command, *args = line.split()
        if command == "crash":
            root, seed, content_addressable = args
            sys.stdout.flush()  # nothing buffered may be written twice
            if os.fork() == 0:
                writer(root, int(seed), content_addressable == "1")
        elif command == "wait":
            pid, status = os.waitpid(int(args[0]), 0)
            sys.stdout.write(f"exited {pid} {os.waitstatus_to_exitcode(status)}\n")
            sys.stdout.flush()
        else:
            raise SystemExit(f"unknown command {command!r}")


def main(argv: list[str]) -> None:
    from cacheness.storage import BlobStore

    mode = argv[0]
    if mode == "serve":
        serve()
        return
    if mode != "race":
        raise SystemExit(f"unknown mode {mode!r}")
    root, seed = argv[1], int(argv[2])
    with BlobStore(root, content_addressable=True) as store:
        race(store, random.Random(seed), seed)


if __name__ == "__main__":
    main(sys.argv[1:])
