"""Single flight: one fetcher call per gap, however many callers and processes ask.

Before fetching, a caller takes the *fill locks* of the series it is about to fill
(series hash into :data:`BUCKETS` buckets per table, taken in sorted order, so two
callers never wait on each other in a circle), then looks at the table again: a caller
that waited finds the rows its predecessor stored and fetches nothing.

* PostgreSQL: session advisory locks (shared by every host using the database);
* SQLite and DuckDB files: OS file locks in ``<database>.sqlcache-locks/`` beside the
  database (shared by the processes of one host; a lock file goes when it is released);
* in-memory databases: thread locks (one process sees them anyway).

The locks themselves are storage's (:class:`~cacheness.storage.FileLocks`,
:class:`~cacheness.storage.ThreadLocks`, :func:`~cacheness.storage.advisory_lock_id`,
:func:`~cacheness.storage.poll_until`), the same family as ``named_lock``.

A lock not had within ``timeout`` seconds is given up with a warning: the caller then
fetches on its own (the upsert keeps rows unique; only the fetch is repeated).

:func:`lock_key` is the one place lock names are made.

Example:
    >>> locks = ThreadFillLocks()
    >>> names = bucket_names("prices", [("AAPL",), ("MSFT",)])
    >>> with locks.hold(names, timeout=1) as got:
    ...     got
    True
    >>> lock_key("prices", 0)
    'cacheness-sqlcache:prices:0'
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
import xxhash

from cacheness.storage import FileLocks, ThreadLocks, advisory_lock_id, poll_until

__all__ = [
    "BUCKETS",
    "AdvisoryFillLocks",
    "FileFillLocks",
    "FillLocks",
    "ProcessExclusive",
    "ThreadFillLocks",
    "bucket_names",
    "lock_key",
]

BUCKETS = 64


def lock_key(table: str, bucket: int | str) -> str:
    """The name of one fill lock of ``table`` (schema-qualified name)."""
    return f"cacheness-sqlcache:{table}:{bucket}"


def bucket_names(table: str, scopes: Iterable[tuple[Any, ...]]) -> list[str]:
    """The sorted fill-lock names covering ``scopes`` (series) of ``table``."""
    buckets = {
        xxhash.xxh64_intdigest(repr(tuple(map(str, scope))).encode("utf-8", "surrogatepass"))
        % BUCKETS
        for scope in scopes
    }
    return sorted(lock_key(table, bucket) for bucket in buckets or {0})


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class FillLocks(ABC):
    """Named locks shared as widely as the database is."""

    @abstractmethod
    def hold(
        self, names: Sequence[str], timeout: float | None
    ) -> contextlib.AbstractContextManager[bool]:
        """Hold every lock in ``names`` for the block; yield False on timeout.

        Locks are taken in sorted order; on a timeout none of them is held.
        """


class _NamedLocks(Protocol):
    def hold(self, name: str, timeout: float | None) -> contextlib.AbstractContextManager[bool]:
        """Hold one named lock; yield False when ``timeout`` ran out."""


class _EachName(FillLocks):
    """Fill locks taken one name at a time from storage's named locks."""

    def __init__(self, locks: _NamedLocks) -> None:
        self._locks = locks

    @contextlib.contextmanager
    def hold(self, names: Sequence[str], timeout: float | None) -> Iterator[bool]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with contextlib.ExitStack() as held:
            for name in sorted(set(names)):
                if not held.enter_context(self._locks.hold(name, _left(deadline))):
                    held.close()  # none of them is held on a timeout
                    yield False
                    return
            yield True


class ThreadFillLocks(_EachName):
    """Fill locks for the threads of one process (in-memory databases)."""

    def __init__(self) -> None:
        super().__init__(ThreadLocks())


class FileFillLocks(_EachName):
    """Fill locks as OS file locks in a directory beside the database (one host)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        super().__init__(FileLocks(directory))


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
        deadline = None if timeout is None else time.monotonic() + timeout
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        held: list[int] = []

        def attempt(key: int) -> bool:
            return bool(connection.execute(self._TRY, {"key": key}).scalar())

        try:
            got = True
            for name in sorted(set(names)):
                key = advisory_lock_id(name)
                if not poll_until(functools.partial(attempt, key), _left(deadline)):
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
    SqlCache opens it for each operation while holding this lock (a storage
    :class:`~cacheness.storage.FileLocks` lock named ``name`` in ``directory``).
    Re-entrant within a thread.
    """

    def __init__(self, directory: Path, name: str = "access") -> None:
        self._locks = FileLocks(directory)
        self._name = name
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._held = contextlib.ExitStack()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the block (waiting as long as it takes)."""
        with self._thread_lock:
            if self._depth == 0:
                self._held.enter_context(self._locks.hold(self._name, None))
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._held.close()
