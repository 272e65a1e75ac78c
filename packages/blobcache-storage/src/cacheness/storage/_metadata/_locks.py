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

    Each held name has a lock file in ``directory`` (created on first use). The holder
    removes the file when it releases the lock, so names used once (content hashes,
    cache keys) leave nothing behind; a waiter that locked a file already removed sees
    that its path is gone or belongs to a newer file, and starts over. A process that
    dies releases its locks with its open files (its lock file stays until the next
    holder of that name removes it).
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
            if not poll_until(lambda fd=fd: _try_lock(fd), left):
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
