"""Single flight: one fetcher call per gap, however many callers and processes ask.

Before fetching, a caller takes the *fill locks* of the series it is about to fill
(series hash into :data:`BUCKETS` buckets per table, taken in sorted order, so two
callers never wait on each other in a circle), then looks at the table again: a caller
that waited finds the rows its predecessor stored and fetches nothing.

* PostgreSQL: session advisory locks (shared by every host using the database);
* SQLite and DuckDB files: OS file locks in ``<database>.sqlcache-locks/`` beside the
  database (shared by the processes of one host);
* in-memory databases: thread locks (one process sees them anyway).

A lock not had within ``timeout`` seconds is given up with a warning: the caller then
fetches on its own (the upsert keeps rows unique; only the fetch is repeated).

:func:`lock_key` is the one place lock names are made, and :func:`advisory_id` the one
place they become PostgreSQL's 64-bit keys.

Example:
    >>> locks = ThreadFillLocks()
    >>> names = bucket_names("prices", [("AAPL",), ("MSFT",)])
    >>> with locks.hold(names, timeout=1) as got:
    ...     got
    True
    >>> advisory_id(lock_key("prices", 0)) == advisory_id(lock_key("prices", 0))
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import xxhash

__all__ = [
    "BUCKETS",
    "AdvisoryFillLocks",
    "FileFillLocks",
    "FillLocks",
    "ProcessExclusive",
    "ThreadFillLocks",
    "advisory_id",
    "bucket_names",
    "lock_key",
]

log = logging.getLogger(__name__)

BUCKETS = 64
_MAX_POLL = 0.05


def lock_key(table: str, bucket: int | str) -> str:
    """The name of one fill lock of ``table`` (schema-qualified name)."""
    return f"cacheness-sqlcache:{table}:{bucket}"


def advisory_id(key: str) -> int:
    """PostgreSQL's advisory lock key (a signed 64-bit integer) for a lock name."""
    return xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass")) - 2**63


def bucket_names(table: str, scopes: Iterable[tuple[Any, ...]]) -> list[str]:
    """The sorted fill-lock names covering ``scopes`` (series) of ``table``."""
    buckets = {
        xxhash.xxh64_intdigest(repr(tuple(map(str, scope))).encode("utf-8", "surrogatepass"))
        % BUCKETS
        for scope in scopes
    }
    return sorted(lock_key(table, bucket) for bucket in buckets or {0})


def _poll(attempt: Callable[[], bool], deadline: float | None) -> bool:
    """Call ``attempt`` until it succeeds or ``deadline`` (monotonic) passes."""
    delay = 0.001
    while True:
        if attempt():
            return True
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            delay = min(delay, left)
        time.sleep(delay)
        delay = min(delay * 2, _MAX_POLL)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


class FillLocks(ABC):
    """Named locks shared as widely as the database is."""

    @abstractmethod
    def hold(
        self, names: Sequence[str], timeout: float | None
    ) -> contextlib.AbstractContextManager[bool]:
        """Hold every lock in ``names`` for the block; yield False on timeout.

        Locks are taken in sorted order; on a timeout none of them is held.
        """


class _LocksByName(FillLocks):
    """Fill locks taken one name at a time."""

    @abstractmethod
    def _acquire(self, name: str, deadline: float | None) -> Any:
        """Take lock ``name``; return a token for :meth:`_release`, or None on timeout."""

    @abstractmethod
    def _release(self, name: str, token: Any) -> None:
        """Give back a lock taken by :meth:`_acquire`."""

    @contextlib.contextmanager
    def hold(self, names: Sequence[str], timeout: float | None) -> Iterator[bool]:
        deadline = _deadline(timeout)
        held: list[tuple[str, Any]] = []
        got = True
        try:
            for name in sorted(set(names)):
                token = self._acquire(name, deadline)
                if token is None:
                    got = False
                    break
                held.append((name, token))
            if not got:
                for name, token in reversed(held):
                    self._release(name, token)
                held = []
            yield got
        finally:
            for name, token in reversed(held):
                self._release(name, token)


class ThreadFillLocks(_LocksByName):
    """Fill locks for the threads of one process (in-memory databases)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _acquire(self, name: str, deadline: float | None) -> Any:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
        return lock if lock.acquire(timeout=wait) else None

    def _release(self, name: str, token: Any) -> None:
        token.release()


class FileFillLocks(_LocksByName):
    """Fill locks as OS file locks in a directory beside the database (one host).

    One small file per lock name stays in the directory (at most :data:`BUCKETS` per
    table); a process that dies releases its locks with its open files.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / f"{xxhash.xxh3_64_hexdigest(name.encode())}.lock"

    def _acquire(self, name: str, deadline: float | None) -> Any:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o644)
        if _poll(lambda: _try_lock(fd), deadline):
            return fd
        os.close(fd)
        return None

    def _release(self, name: str, token: Any) -> None:
        try:
            _unlock(token)
        finally:
            os.close(token)


class AdvisoryFillLocks(FillLocks):
    """Fill locks as PostgreSQL session advisory locks (every host of the database).

    All the locks of one :meth:`hold` live on one connection, taken from the engine's
    pool in autocommit mode (no transaction stays open while the fetcher runs).
    """

    _TRY = sa.text("SELECT pg_try_advisory_lock(:key)")
    _UNLOCK = sa.text("SELECT pg_advisory_unlock(:key)")

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def hold(self, names: Sequence[str], timeout: float | None) -> Iterator[bool]:
        deadline = _deadline(timeout)
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        held: list[int] = []

        def attempt(key: int) -> bool:
            return bool(connection.execute(self._TRY, {"key": key}).scalar())

        try:
            got = True
            for name in sorted(set(names)):
                key = advisory_id(name)
                if not _poll(lambda key=key: attempt(key), deadline):  # type: ignore[misc]
                    got = False
                    break
                held.append(key)
            if not got:
                self._unlock(connection, held)
                held = []
            yield got
        finally:
            try:
                self._unlock(connection, held)
            finally:
                connection.close()

    def _unlock(self, connection: sa.Connection, keys: list[int]) -> None:
        for key in reversed(keys):
            connection.execute(self._UNLOCK, {"key": key})


class ProcessExclusive:
    """One holder at a time across the processes of a host (and the threads of each).

    DuckDB lets one process at a time open a database file; with ``multiprocess=True``
    SqlCache opens it for each operation while holding this lock. Re-entrant within a
    thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the block (waiting as long as it takes)."""
        with self._thread_lock:
            if self._depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                _poll(lambda: _try_lock(fd), None)
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    try:
                        _unlock(fd)
                    finally:
                        os.close(fd)


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
