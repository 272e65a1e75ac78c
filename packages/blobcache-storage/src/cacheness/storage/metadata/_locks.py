"""Named locks behind ``MetadataBackend.named_lock`` (private).

* :class:`ThreadLocks`: locks shared by the threads of one process (memory backend).
* :class:`FileLocks`: OS file locks in a directory next to the index, shared by the
  processes of one host (json, sqlite backends).

PostgreSQL uses advisory locks instead (in ``sql.py``). All of them wait at most
``timeout`` seconds (None: as long as it takes) and report whether they got the lock.

Example:
    >>> locks = ThreadLocks()
    >>> with locks.hold("job", timeout=1) as got:
    ...     got
    True
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import xxhash

__all__ = ["FileLocks", "ThreadLocks", "lock_id", "poll_until"]

_MAX_POLL = 0.05


def lock_id(name: str) -> str:
    """Return a file-name-safe identifier for a lock name (16 hex characters)."""
    return xxhash.xxh3_64_hexdigest(name.encode("utf-8", "surrogatepass"))


def poll_until(attempt: object, timeout: float | None) -> bool:
    """Call ``attempt()`` until it returns True or ``timeout`` seconds pass.

    Waits grow from 1 ms to 50 ms between attempts. Returns whether it succeeded.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while True:
        if attempt():  # type: ignore[operator]
            return True
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            delay = min(delay, left)
        time.sleep(delay)
        delay = min(delay * 2, _MAX_POLL)


class ThreadLocks:
    """Named locks for the threads of one process; unused names are forgotten."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None) -> Iterator[bool]:
        """Hold the lock ``name`` for the block; yield False if ``timeout`` ran out."""
        with self._guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)
        try:
            got = lock.acquire(timeout=-1 if timeout is None else max(timeout, 0))
            try:
                yield got
            finally:
                if got:
                    lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)


class FileLocks:
    """Named locks shared by the processes of one host, as OS locks on files.

    Lock files live in ``directory`` (created on first use) and stay there: removing a
    lock file while another process waits on it would break the lock. A process that
    dies releases its locks with its open files.
    """

    def __init__(self, directory: Path, file_mode: int = 0o644) -> None:
        self.directory = directory
        self._file_mode = file_mode

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None) -> Iterator[bool]:
        """Hold the lock ``name`` for the block; yield False if ``timeout`` ran out."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{lock_id(name)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, self._file_mode)
        try:
            got = poll_until(lambda: _try_lock(fd), timeout)
            try:
                yield got
            finally:
                if got:
                    _unlock(fd)
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool:
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
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
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
