"""Named locks: the one family behind ``named_lock`` and the cache layer's locks.

* :class:`LockTable`: a lock per name, made on first use and forgotten when its last
  user is done (reference counted), for any lock type (``threading.Lock``,
  ``asyncio.Lock``...).
* :class:`ThreadLocks`: named locks shared by the threads of one process, with a
  timeout (a :class:`LockTable` of ``threading.Lock``; the memory backend's).
* :class:`FileLocks`: OS file locks in a directory, shared by the processes of one host
  (the json and sqlite backends', next to the index).
* :func:`advisory_lock_id`: the one place a lock name becomes a PostgreSQL advisory
  lock key; :func:`poll_until`: the one wait loop of locks that can only be tried.

Each ``hold(name, timeout)`` waits at most ``timeout`` seconds (None: as long as it
takes) and yields whether it got the lock.

Example:
    >>> from cacheness.storage import ThreadLocks
    >>> locks = ThreadLocks()
    >>> with locks.hold("job", timeout=1) as got:
    ...     got
    True
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

import xxhash

L = TypeVar("L")

_MAX_POLL = 0.05


def lock_id(name: str) -> str:
    """Return a file-name-safe identifier for a lock name (16 hex characters)."""
    return xxhash.xxh3_64_hexdigest(name.encode("utf-8", "surrogatepass"))


def advisory_lock_id(name: str) -> int:
    """Return the PostgreSQL advisory lock key (a signed 64-bit integer) of a lock name.

    Every advisory lock of both packages gets its key here, so the same name always
    means the same lock, whoever takes it.

    Example:
        >>> key = advisory_lock_id("cacheness-lock:entries:report")
        >>> -(2**63) <= key < 2**63, key == advisory_lock_id("cacheness-lock:entries:report")
        (True, True)
    """
    return xxhash.xxh64_intdigest(name.encode("utf-8", "surrogatepass")) - 2**63


def poll_until(attempt: Callable[[], object], timeout: float | None) -> bool:
    """Call ``attempt()`` until it returns a true value or ``timeout`` seconds pass.

    Waits grow from 1 ms to 50 ms between attempts; None waits as long as it takes.
    Returns whether it succeeded (``attempt`` is tried once even with a timeout of 0).

    Example:
        >>> tries = iter([False, False, True])
        >>> poll_until(lambda: next(tries), timeout=1)
        True
        >>> poll_until(lambda: False, timeout=0)
        False
    """
    deadline = None if timeout is None else time.monotonic() + timeout
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


class LockTable(Generic[L]):
    """Locks by name, made on first use and forgotten when the last user is done.

    Args:
        factory: makes a new lock (``threading.Lock``, ``asyncio.Lock``...).

    Example:
        >>> import threading
        >>> table = LockTable(threading.Lock)
        >>> with table.borrow("k") as lock:
        ...     lock.acquire(timeout=1)
        ...     lock.release()
        ...     len(table)
        True
        1
        >>> len(table)
        0
    """

    def __init__(self, factory: Callable[[], L]) -> None:
        self._factory = factory
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[L, int]] = {}

    @contextlib.contextmanager
    def borrow(self, name: Hashable) -> Iterator[L]:
        """Yield the lock of ``name`` for the block (acquiring it is up to the caller)."""
        with self._guard:
            lock, users = self._locks.get(name) or (self._factory(), 0)
            self._locks[name] = (lock, users + 1)
        try:
            yield lock
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)

    def __len__(self) -> int:
        """How many names have a lock now (in use or waited for)."""
        with self._guard:
            return len(self._locks)


class ThreadLocks:
    """Named locks for the threads of one process; unused names are forgotten.

    Example:
        >>> locks = ThreadLocks()
        >>> with locks.hold("a", timeout=None) as got, locks.hold("b", timeout=0) as other:
        ...     got, other
        (True, True)
    """

    def __init__(self) -> None:
        self._table: LockTable[threading.Lock] = LockTable(threading.Lock)

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None) -> Iterator[bool]:
        """Hold the lock ``name`` for the block; yield False if ``timeout`` ran out."""
        with self._table.borrow(name) as lock:
            got = lock.acquire(timeout=-1 if timeout is None else max(timeout, 0))
            try:
                yield got
            finally:
                if got:
                    lock.release()


class FileLocks:
    """Named locks shared by the processes of one host, as OS locks on files.

    Each held name has a lock file in ``directory`` (created on first use). The holder
    removes the file when it releases the lock, so names used once (content hashes,
    cache keys) leave nothing behind; a waiter that locked a file already removed sees
    that its path is gone or belongs to a newer file, and starts over. A process that
    dies releases its locks with its open files (its lock file stays until the next
    holder of that name removes it).

    Args:
        directory: where the lock files go (created on first use).
        file_mode: permissions of the lock files.

    Example:
        >>> import tempfile
        >>> locks = FileLocks(Path(tempfile.mkdtemp()) / "locks")
        >>> with locks.hold("report", timeout=1) as got:
        ...     got
        True
    """

    def __init__(self, directory: Path, file_mode: int = 0o644) -> None:
        self.directory = directory
        self._file_mode = file_mode

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None) -> Iterator[bool]:
        """Hold the lock ``name`` for the block; yield False if ``timeout`` ran out."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{lock_id(name)}.lock"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, self._file_mode)
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not poll_until(functools.partial(_try_lock, fd), left):
                os.close(fd)
                yield False
                return
            if _still_named(fd, path):
                break
            os.close(fd)  # the previous holder removed this file: lock the new one
        try:
            yield True
        finally:
            # Gone already, or (Windows) open elsewhere: then the file simply stays.
            with contextlib.suppress(OSError):
                os.unlink(path)
            _unlock(fd)
            os.close(fd)


def _still_named(fd: int, path: Path) -> bool:
    """True when ``path`` still names the open file ``fd`` (it was not removed meanwhile)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


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
