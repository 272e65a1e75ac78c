"""The header of SQLite's WAL index (the ``-shm`` file): has anyone committed since?

In WAL mode every commit, by any connection of any process, rewrites the WAL-index
header at the start of the ``<database>-shm`` file (shared memory that every connection
maps) before the commit returns: its change counter, last frame and checksums move. So
while the header's 48 bytes are the same as at an earlier look, nothing was committed
in between, and a ``change_token`` can answer without running ``PRAGMA data_version``
(reading mapped memory: tens of nanoseconds, against about two microseconds for the
PRAGMA through the driver). When the bytes differ (a commit, a WAL restart, or a read
that raced a writer's update of the header), the caller asks the PRAGMA as before.

The ``-shm`` file must stay the one in use while it is watched: when the last connection
of every process closes, SQLite deletes it, and the next connection makes a new one (the
indexes' connections are per thread and close with their thread). So the view keeps a
connection of its own open, which has read the database: SQLite then keeps the file
mapped in this process and, holding a shared lock on the database, keeps any other
process from deleting it.

POSIX record locks belong to a process and an inode: closing *any* descriptor of the
``-shm`` file drops every lock the process holds on it, SQLite's included, whichever
connection took them (one of these indexes', or any other ``sqlite3`` connection of the
process to the same file). So a view is shared by all the indexes of a process on one
database file, and when the last of them closes (after its connections, then the view's
own) it is closed only if no other descriptor of the process has the ``-shm`` file open
(SQLite keeps one open while any connection of the process uses the file, and takes its
locks through it): otherwise it stays, with its connection, for the next index on the
file. A forked child never closes what it inherited. Only on POSIX systems, for WAL-mode
files whose ``-shm`` file holds a header SQLite has initialised; anywhere else there is
no view and the caller asks the PRAGMA every time.

Example:
    >>> import sqlite3, tempfile
    >>> path = tempfile.mkdtemp() + "/db.sqlite"
    >>> conn = sqlite3.connect(path, isolation_level=None)
    >>> _ = conn.execute("PRAGMA journal_mode = wal").fetchone()
    >>> _ = conn.execute("CREATE TABLE t (x)")
    >>> index = attach(path)
    >>> index.map_header()  # after a read in WAL mode: the -shm file is there
    True
    >>> before = index.header()
    >>> _ = conn.execute("INSERT INTO t VALUES (1)")
    >>> index.header() != before
    True
    >>> detach(index)  # conn still has the file open: the view stays, its locks are safe
    >>> index.header() is not None
    True
    >>> conn.close()
    >>> detach(attach(path))  # no connection of this process left: closed
    >>> index.header() is None
    True
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import threading
from contextlib import suppress
from typing import Final

__all__ = ["HEADER_SIZE", "WalIndex", "attach", "detach"]

HEADER_SIZE: Final = 48
"""Bytes of the first copy of the WAL-index header (``WalIndexHdr`` in SQLite's wal.c)."""

_WAL_VERSION: Final = 3007000
_LAYOUT: Final = struct.Struct("=IIIBB")  # iVersion, unused, iChange, isInit, bigEndCksum

Identity = tuple[int, int, int]  # pid, st_dev, st_ino of the database file


class WalIndex:
    """The WAL-index header of one database file, for the indexes of one process."""

    __slots__ = ("_anchor", "_fd", "_map", "_spare", "_tried", "database", "identity", "refs")

    def __init__(self, database: bytes, identity: Identity) -> None:
        self.database = database
        self.identity = identity
        self.refs = 0
        self._fd: int | None = None
        self._anchor: sqlite3.Connection | None = None  # keeps the -shm file the one in use
        self._map: mmap.mmap | None = None
        self._spare: mmap.mmap | None = None  # mapped, but not a header to read
        self._tried = False

    def header(self) -> bytes | None:
        """The header's 48 bytes as they are now (compare for equality only), or None
        before :meth:`map_header` succeeded or once the view is closed."""
        mapped = self._map
        if mapped is None:
            return None
        try:
            return mapped[:HEADER_SIZE]
        except ValueError:  # closed meanwhile
            return None

    def map_header(self) -> bool:
        """Map the header once; True when :meth:`header` can be read.

        Call it after a connection of this process read the database in WAL mode (its
        SQLite then holds the ``-shm`` file open with its header initialised). Only the
        first call tries; later ones say how it went.
        """
        with _lock:
            if self._tried:
                return self._map is not None
            self._tried = True
            try:
                status = os.stat(self.database)
            except OSError:
                return False
            if (status.st_dev, status.st_ino) != self.identity[1:]:
                return False  # the database was replaced under this process: no view
            try:
                anchor = sqlite3.connect(os.fsdecode(self.database), check_same_thread=False)
            except sqlite3.Error:
                return False
            self._anchor = anchor  # keeps the -shm file the one in use; closed by detach
            try:  # a read in WAL mode: from now on SQLite holds the -shm file open
                mode = anchor.execute("PRAGMA journal_mode").fetchone()[0]
                anchor.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                return False
            if str(mode).lower() != "wal" or not _same_file(self.database, status):
                return False  # (not the file this index opened: replaced meanwhile)
            try:
                fd = os.open(self.database + b"-shm", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
            self._fd = fd  # closed by detach only when no one else has the file open
            try:
                if os.fstat(fd).st_size < HEADER_SIZE:
                    return False
                mapped = mmap.mmap(fd, HEADER_SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            except (OSError, ValueError):
                return False
            version, _, _, initialised, _ = _LAYOUT.unpack_from(mapped, 0)
            if version != _WAL_VERSION or initialised != 1:
                self._spare = mapped  # its own copy of the descriptor: closed with fd
                return False
            self._map = mapped
            return True


def _same_file(path: bytes, status: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (status.st_dev, status.st_ino)


_indexes: dict[Identity, WalIndex] = {}
_lock = threading.Lock()


def attach(database: str | os.PathLike[str]) -> WalIndex | None:
    """Count one more open index of this process on ``database``; None off POSIX or
    when the file is not there."""
    if os.name != "posix":
        return None
    path = os.fsencode(database)
    try:
        status = os.stat(path)
    except OSError:
        return None
    identity = (os.getpid(), status.st_dev, status.st_ino)
    with _lock:
        index = _indexes.get(identity)
        if index is None:
            index = _indexes[identity] = WalIndex(path, identity)
        index.refs += 1
        return index


def detach(index: WalIndex) -> None:
    """One index on the file closed (after its connections). The last one closes the
    view's connection, then the view itself unless another descriptor of this process
    still has the ``-shm`` file open (closing ours would drop the locks taken through
    that one): then the view stays, unread, for the next index on the file.

    In a forked child, an index inherited from the parent is left alone.
    """
    with _lock:
        if index.identity[0] != os.getpid() or index.refs <= 0:
            return
        index.refs -= 1
        if index.refs:
            return
        anchor = index._anchor
        if anchor is not None:
            # first: if it is the last connection of this process to the file, SQLite
            # closes its own descriptor of the -shm file (and may delete the file)
            index._anchor = None
            with suppress(sqlite3.Error):
                anchor.close()
        fd = index._fd
        mapped = index._map or index._spare
        if fd is not None and _open_elsewhere(fd, 1 + (mapped is not None)):
            index._anchor = anchor if anchor is None else _reopen(index)
            return
        _indexes.pop(index.identity, None)
        index._map = index._spare = None
        index._fd = None
    if mapped is not None:
        mapped.close()
    if fd is not None:
        os.close(fd)


def _reopen(index: WalIndex) -> sqlite3.Connection | None:
    """A connection again for a view that stays (the -shm file must stay the one in use)."""
    try:
        anchor = sqlite3.connect(os.fsdecode(index.database), check_same_thread=False)
        anchor.execute("PRAGMA data_version").fetchone()
    except sqlite3.Error:
        return None
    return anchor


def _open_elsewhere(fd: int, ours: int) -> bool:
    """True when this process has the file behind ``fd`` open through more than ``ours``
    descriptors (or when that cannot be told: then closing is not safe either)."""
    try:
        status = os.fstat(fd)
        listing = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
        names = os.listdir(listing)
    except OSError:
        return True
    target = (status.st_dev, status.st_ino)
    count = 0
    for name in names:
        try:
            other = os.stat(f"{listing}/{name}")
        except OSError:
            continue
        count += (other.st_dev, other.st_ino) == target
    return count > ours
