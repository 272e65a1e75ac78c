"""Worker process of the team-cache tests: one OS process with its own cache object.

Usage: ``python _team_worker.py MODE SPEC_JSON``. ``SPEC_JSON`` holds ``config`` (a
``CacheConfig`` mapping; None builds the cache from ``CACHENESS_*`` variables alone) and
the mode's settings. Modes:

``serve``
    Reads one JSON command per line on stdin (``{"op": "put", ...}``) and answers one
    JSON line on stdout: ``{"ok": true, "result": ...}``, or ``{"ok": false, "error":
    "BackendUnavailableError", "message": ...}`` for a ``CacheError``. Any other
    exception escapes (traceback on stderr, exit status 1): the test sees the crash.
``mixed``
    ``ops`` random operations (put, get, update_data, touch, delete, get_batch) on
    ``keys`` overlapping keys; prints a JSON summary (and, with ``announce``, a line
    once its cache is open). Only the error classes named in ``tolerate`` are caught
    (and counted); anything else escapes.
``stampede``
    Calls one ``@cached(lock=True)`` function on a cold key; its body records each run
    in a PostgreSQL table, then holds the key until ``hold`` is satisfied. Prints the
    result and how many waiters it saw.
``group``
    Forks ``count`` processes of mode ``run`` (numbered by ``worker``) after importing the
    libraries once; exits 1 if any of them failed.

Values are bytes that carry their own identity: ``item:version:<xxh3 of the body>|``
followed by a body of pseudo-random bytes, so a reader proves that what it got is the
value some writer stored under that key (never another key's, never torn).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from typing import Any

HEADER_SIZE = 64
KiB = 1024
MiB = 1 << 20
OPERATIONS = ("put", "get", "update_data", "touch", "delete", "get_batch")
WEIGHTS = (25, 30, 15, 10, 10, 10)
# (share of operations, smallest, largest size): mostly small, some inline, a few MB
SIZE_CLASSES = ((0.50, 1 * KiB, 4 * KiB), (0.35, 4 * KiB, 64 * KiB),
                (0.135, 64 * KiB, 512 * KiB), (0.015, 1 * MiB, 5 * MiB))  # fmt: skip


# --------------------------------------------------------------------------- values


def make_value(item: str, version: int, size: int) -> bytes:
    """Return ``size`` bytes (at least the header) identifying ``item`` and ``version``."""
    from cacheness.storage import hash_bytes

    body = random.Random(f"{item}/{version}").randbytes(max(0, size - HEADER_SIZE))
    header = f"{item}:{version}:{hash_bytes(body)}|".encode()
    if len(header) > HEADER_SIZE:
        raise ValueError(f"item name {item!r} is too long for the value header")
    return header.ljust(HEADER_SIZE, b" ") + body


def check_value(item: str, value: Any) -> int:
    """Return the version of a value read under ``item``; raise if it is not intact."""
    from cacheness.storage import hash_bytes

    if not isinstance(value, bytes) or len(value) < HEADER_SIZE:
        raise AssertionError(f"{item}: got {type(value).__name__} of {len(value or b'')} bytes")
    owner, version, digest = value[:HEADER_SIZE].decode().rstrip().rstrip("|").rsplit(":", 2)
    if owner != item:
        raise AssertionError(f"read {item!r} but got the value of {owner!r}")
    if hash_bytes(value[HEADER_SIZE:]) != digest:
        raise AssertionError(f"{item}: version {version} is torn or corrupt")
    return int(version)


def draw_size(rng: random.Random) -> int:
    """A value size from :data:`SIZE_CLASSES`."""
    pick = rng.random()
    for share, low, high in SIZE_CLASSES:
        if pick < share:
            return rng.randint(low, high)
        pick -= share
    return SIZE_CLASSES[-1][2]


def item_name(key: dict[str, Any]) -> str:
    """The item name a value stored under key parameters ``key`` carries."""
    return ",".join(f"{name}={key[name]}" for name in sorted(key))[:40]


def libpq(url: str) -> str:
    """A libpq connection string for psycopg from a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --------------------------------------------------------------------------- the cache


def open_cache(spec: dict[str, Any]) -> Any:
    from cacheness.cache import cacheness

    config = spec.get("config")
    return cacheness() if config is None else cacheness(config)


def error_reply(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": type(exc).__name__, "message": str(exc)}


class Server:
    """The ``serve`` mode: one cache, commands from stdin."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def op_put(self, key: dict[str, Any], size: int, version: int, **options: Any) -> str:
        value = make_value(item_name(key), version, size)
        return self.cache.put(value, key_params=key, **options)

    def op_get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        from cacheness.cache import MISS

        value = self.cache.get(key_params=key, default=MISS)
        if value is MISS:
            return None
        return {"version": check_value(item_name(key), value)}

    def op_update_data(self, key: dict[str, Any], size: int, version: int) -> bool:
        value = make_value(item_name(key), version, size)
        return self.cache.update_data(value, key_params=key)

    def op_touch(self, key: dict[str, Any], ttl_seconds: float | None = None) -> bool:
        return self.cache.touch(key_params=key, ttl_seconds=ttl_seconds)

    def op_invalidate(self, key: dict[str, Any]) -> bool:
        return self.cache.invalidate(key_params=key)

    def op_delete_by_prefix(self, **prefixes: Any) -> int:
        return self.cache.delete_by_prefix(**prefixes)

    def op_metadata(self, key: dict[str, Any]) -> dict[str, Any] | None:
        entry = self.cache.get_metadata(key_params=key)
        if entry is None:
            return None
        return {
            "cache_key": entry.cache_key,
            "params": entry.params,
            "metadata": entry.metadata,
            "ttl_seconds": entry.ttl_seconds,
            "size": entry.size,
            "blob_ref": entry.blob_ref,
            "location": entry.location,
            "updated_at": entry.updated_at.isoformat(),
        }

    def op_count(self) -> int:
        return self.cache.count()

    def op_keys(self) -> list[dict[str, Any] | None]:
        return [entry.params for entry in self.cache.list_entries(order_by="key")]

    def op_stats(self) -> dict[str, Any]:
        return self.cache.get_stats()

    def op_config(self) -> dict[str, Any]:
        store = self.cache.store
        return {
            "metadata": store.metadata.name,
            "table": store.metadata.table.fullname,
            "blobs": store.blobs.name,
            "bucket": store.blobs.bucket,
            "prefix": store.blobs.prefix,
            "endpoint": store.blobs.endpoint,
            "shard_chars": store.blobs.shard_chars,
        }

    def op_pid(self) -> int:
        return os.getpid()

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        from cacheness.storage.errors import CacheError

        op = command.pop("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ValueError(f"unknown op {op!r}")
        try:
            return {"ok": True, "result": handler(**command)}
        except CacheError as exc:
            return error_reply(exc)


def serve(spec: dict[str, Any]) -> None:
    with open_cache(spec) as cache:
        server = Server(cache)
        reply({"ok": True, "result": "ready"})
        for line in sys.stdin:
            if line.strip():
                reply(server.handle(json.loads(line)))


_reply_lock: Any = None  # a file the processes of a group lock (POSIX locks: per process)


def reply(message: dict[str, Any]) -> None:
    """Write one JSON line to stdout, whole (the processes of a group share the pipe)."""
    data = (json.dumps(message, default=str) + "\n").encode()
    sys.stdout.flush()
    if _reply_lock is not None:
        fcntl.lockf(_reply_lock, fcntl.LOCK_EX)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]
    finally:
        if _reply_lock is not None:
            fcntl.lockf(_reply_lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- mixed load


def mixed(spec: dict[str, Any]) -> None:
    """Random operations on overlapping keys; every value read is checked."""
    from cacheness.cache import MISS
    from cacheness.storage import errors

    worker = int(spec["worker"])
    rng = random.Random(f"{spec['seed']}/{worker}")
    keys = int(spec["keys"])
    tolerated = tuple(getattr(errors, name) for name in spec.get("tolerate", ()))
    counts = dict.fromkeys(OPERATIONS, 0)
    failed = dict.fromkeys(OPERATIONS, 0)
    failures: list[str] = []
    reads = hits = 0
    version = worker * 1_000_000
    streak = longest = 0
    with open_cache(spec) as cache:
        if spec.get("announce"):
            reply({"started": os.getpid()})
        for _ in range(int(spec["ops"])):
            op = rng.choices(OPERATIONS, WEIGHTS)[0]
            item = f"k{rng.randrange(keys):03d}"
            name = item_name({"item": item})
            version += 1
            try:
                if op == "put":
                    cache.put(make_value(name, version, draw_size(rng)), item=item)
                elif op == "get":
                    value = cache.get(item=item, default=MISS)
                    reads += 1
                    if value is not MISS:
                        hits += 1
                        check_value(name, value)
                elif op == "update_data":
                    cache.update_data(make_value(name, version, draw_size(rng)), item=item)
                elif op == "touch":
                    cache.touch(item=item, ttl_seconds=3600)
                elif op == "delete":
                    cache.invalidate(item=item)
                else:
                    items = [f"k{rng.randrange(keys):03d}" for _ in range(rng.randint(2, 6))]
                    values = cache.get_batch([{"item": i} for i in items], default=MISS)
                    reads += len(items)
                    for other, value in zip(items, values, strict=True):
                        if value is not MISS:
                            hits += 1
                            check_value(item_name({"item": other}), value)
            except tolerated as exc:
                failed[op] += 1
                streak += 1
                longest = max(longest, streak)
                if len(failures) < 20:
                    failures.append(f"{op} {item}: {type(exc).__name__}: {exc}")
                continue
            counts[op] += 1
            streak = 0
        stats = cache.get_stats()
    reply({
        "worker": worker, "pid": os.getpid(), "ops": counts, "failed": failed,
        "failures": failures, "longest_failure_streak": longest, "reads": reads,
        "hits": hits, "read_errors": stats["errors"],
    })  # fmt: skip


# --------------------------------------------------------------------------- stampede


def stampede(spec: dict[str, Any]) -> None:
    """Call one cold ``@cached(lock=True)`` function; its body counts runs in PostgreSQL."""
    import psycopg

    from cacheness.decorators import cached

    dsn = libpq(spec["runs_url"])
    hold = spec["hold"]
    seen = {"waiters": 0}

    def runs(conn: Any) -> int:
        return conn.execute("SELECT count(*) FROM stampede_runs").fetchone()[0]

    def waiters(conn: Any) -> int:
        query = (
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
        )
        return conn.execute(query).fetchone()[0]

    cache = open_cache(spec)

    @cached(
        cache_instance=cache,
        key_prefix="team.stampede",
        lock=True,
        lock_timeout=spec.get("lock_timeout"),
    )
    def expensive(x: int) -> dict[str, Any]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO stampede_runs (pid) VALUES (%s)", (os.getpid(),))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if hold == "waiters":  # every other process queues on the advisory lock
                    seen["waiters"] = waiters(conn)
                    if seen["waiters"] >= spec["processes"] - 1:
                        break
                elif hold == "runs":  # until someone else ran the body too
                    if runs(conn) >= spec["runs"]:
                        break
                elif hold != "forever":
                    raise ValueError(f"unknown hold {hold!r}")
                time.sleep(0.02)
        return {"x": x, "by": os.getpid()}

    result = expensive(42)
    info = expensive.cache_info()
    cache.close()
    reply({"worker": spec.get("worker"), "pid": os.getpid(), "result": result,
           "waiters_seen": seen["waiters"], "misses": info.misses, "hits": info.hits,
           "errors": info.errors})  # fmt: skip


def group(spec: dict[str, Any]) -> None:
    """Fork ``count`` processes running ``mode`` (``worker`` = 0, 1, ...); fail if one did.

    The libraries are imported once, here, before the fork, so the processes start in
    milliseconds instead of each paying a second of imports; each then opens its own
    cache (connections, clients) after the fork, as separate OS processes do.
    """
    import boto3  # noqa: F401
    import psycopg  # noqa: F401

    import cacheness.decorators  # noqa: F401
    from cacheness.storage._blob import s3  # noqa: F401
    from cacheness.storage._metadata import postgresql  # noqa: F401

    global _reply_lock
    _reply_lock = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the group
    mode, count = spec.pop("run"), int(spec.pop("count"))
    children = []
    for index in range(count):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: run and leave without returning into the parent's code
            code = run(mode, {**spec, "worker": index})
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children.append(pid)
    failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} {mode} processes failed: {failed}")


MODES = {"serve": serve, "mixed": mixed, "stampede": stampede, "group": group}


def run(mode: str, spec: dict[str, Any]) -> int:
    try:
        MODES[mode](spec)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run(argv[0], json.loads(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
