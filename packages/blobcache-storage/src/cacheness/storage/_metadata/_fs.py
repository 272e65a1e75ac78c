"""Local-file helpers of the file-based metadata backends (private).

* :func:`network_filesystem` tells whether a path lives on NFS, SMB or another network
  filesystem, from the kernel's mount table (``/proc/self/mountinfo``). SQLite's WAL
  needs shared memory between the processes using the file, which a network
  filesystem cannot give across machines; file locks are unreliable there too.
* :func:`warn_network_filesystem` warns once per mount point and feature.
* :func:`exclusive_lock` holds an OS lock on a lock file (``flock``/``LockFileEx``).
* :func:`atomic_write` writes a sibling temporary file, fsyncs it and renames it over
  the target, so readers see the old or the new file, never a torn one.
* :class:`SpaceReserve` keeps a file of reserved bytes beside an index, released when
  the disk is full so that a deletion (the way to get space back) can still commit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from cacheness.storage.errors import ConfigError, MetadataError, NetworkFilesystemWarning

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
"""Where the mount table is read from (tests point it at a crafted table)."""

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph",
        "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "fuse.sshfs", "fuse.glusterfs",
        "fuse.cephfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs",
    }
)  # fmt: skip
"""Filesystem types treated as network filesystems."""

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def prepare_file(path: str | os.PathLike[str], backend: str, example: str) -> Path:
    """Return ``path`` as a ``Path`` whose parent directories exist.

    Raises:
        ConfigError: ``path`` is a directory (``example`` names a file to suggest).
        MetadataError: the parent directories cannot be created.
    """
    file = Path(path)
    try:
        is_dir = file.is_dir()
    except OSError as exc:  # a name too long, a parent that is a file...
        raise ConfigError(f"the {backend} metadata backend cannot use {file}: {exc}") from exc
    if is_dir:
        raise ConfigError(
            f"the {backend} metadata backend needs a file path, {file} is a directory; "
            f"pass e.g. {file / example}"
        )
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetadataError(f"cannot create the directory of {file}: {exc}") from exc
    return file


def mount_of(path: str | os.PathLike[str], mountinfo: str | None = None) -> tuple[str, str] | None:
    """Return ``(mount point, filesystem type)`` of the mount holding ``path``.

    Args:
        path: a file or directory (it need not exist; its nearest existing parent is used).
        mountinfo: the mount table's text; read from :data:`MOUNTINFO` when None.

    Returns:
        None when the mount table is unavailable (not Linux) or unreadable.
    """
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    target = Path(path).resolve()
    best: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = _unescape(fields[4])
        fs_type = line.split(" - ", 1)[1].split()[0]
        mount = Path(mount_point)
        if (target == mount or mount in target.parents) and (
            best is None or len(mount_point) >= len(best[0])
        ):
            best = (mount_point, fs_type)
    return best


def network_filesystem(path: str | os.PathLike[str], mountinfo: str | None = None) -> str | None:
    """Return the network filesystem type holding ``path``, or None when it is local.

    Example:
        >>> table = (
        ...     "22 1 8:1 / / rw - ext4 /dev/sda1 rw\\n"
        ...     "40 22 0:50 / /shared rw - nfs4 server:/export rw\\n"
        ... )
        >>> network_filesystem("/shared/team/cache.sqlite", table)
        'nfs4'
        >>> network_filesystem("/home/me/cache.sqlite", table) is None
        True
    """
    found = mount_of(path, mountinfo)
    if found is None:
        return None
    fs_type = found[1]
    return fs_type if fs_type in NETWORK_FILESYSTEMS else None


def warn_network_filesystem(
    path: str | os.PathLike[str], feature: str, advice: str, *, stacklevel: int = 2
) -> str | None:
    """Warn (once per mount point and feature) when ``path`` is on a network filesystem.

    ``stacklevel`` counts from the caller of this function, as in ``warnings.warn``.

    Returns:
        The network filesystem type, or None when the path is local.
    """
    fs_type = network_filesystem(path)
    if fs_type is None:
        return None
    found = mount_of(path)
    mount_point = found[0] if found else str(path)
    with _warned_lock:
        first = (mount_point, feature) not in _warned
        _warned.add((mount_point, feature))
    if first:
        warnings.warn(
            f"{path} is on a network filesystem ({fs_type} at {mount_point}): {advice}",
            NetworkFilesystemWarning,
            stacklevel=stacklevel + 1,
        )
    log.info("%s on network filesystem %s (%s): %s", path, fs_type, mount_point, feature)
    return fs_type


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on ``lock_path`` (created if needed) for the block.

    The lock belongs to this open file, so it is released when the block ends, the
    process exits or crashes; the file itself stays (removing lock files is racy).
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows CI only
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                    continue
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    if os.name == "nt":  # pragma: no cover - directories cannot be fsynced on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> os.stat_result:
    """Replace ``path`` with ``data`` atomically; return the new file's ``stat``.

    A temporary sibling is written, flushed and fsynced (when ``durable``), then renamed
    over ``path``; the directory is fsynced so the rename survives a power cut. On any
    failure the temporary file is removed and ``path`` is untouched. The new file keeps
    the permissions of the one it replaces (a first file gets ``0o666`` minus the umask).
    """
    temp_name = str(path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp"))
    fd = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(temp_name, stat.S_IMODE(os.stat(path).st_mode))
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    if durable:
        _fsync_directory(path.parent)
    return os.stat(path)


_NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def no_space(exc: BaseException) -> bool:
    """True when ``exc`` says the disk (or a quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


class SpaceReserve:
    """Bytes set aside in a file beside an index, for deletions on a full disk.

    A full disk stops every write, deletions included: SQLite appends a deletion to its
    WAL and a checkpoint may grow the database file; the json index rewrites its file.
    The reserve is allocated while there is room (:meth:`ensure`); when a deletion finds
    the disk full, the index releases it (:meth:`release`) and retries, and the
    deletion commits in the space it gave back. Once released it must be allocated again
    before anything else is written (:attr:`released`): the index refuses other writes
    until the deleted blobs have freed room for it, so the next full disk finds it in
    place. A reserve that could not be allocated in the first place (no room, a
    read-only directory) is only retried, every ``retry_seconds``.

    Example:
        >>> import pathlib, tempfile
        >>> reserve = SpaceReserve(pathlib.Path(tempfile.mkdtemp()) / "index.reserve", 4096)
        >>> reserve.ensure(), reserve.path.stat().st_size
        (True, 4096)
        >>> reserve.release(), reserve.path.exists()
        (True, False)
    """

    retry_seconds = 5.0

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = max(int(size), 0)
        self.wanted = self.size > 0  # False once allocated; True again after a release
        self.released = False  # released for a deletion and not allocated again yet
        self._next_attempt = 0.0
        self._lock = threading.Lock()

    def ensure(self, size: int = 0) -> bool:
        """Allocate the reserve (at least ``size`` bytes) unless it is there; True if it is."""
        want = max(self.size, size)
        if want <= 0:
            return False
        now = time.monotonic()
        with self._lock:
            if now < self._next_attempt and not self.released:
                return False
            try:
                have = os.stat(self.path).st_size
            except FileNotFoundError:
                have = -1
            except OSError:
                return False
            if have >= want:
                self.wanted = self.released = False
                return True
            if have >= 0:  # grow it in place: never two copies at once
                try:
                    fd = os.open(self.path, os.O_WRONLY | _O_BINARY)
                    try:
                        _allocate(fd, want, have)
                    finally:
                        os.close(fd)
                except OSError as exc:
                    self._next_attempt = now + self.retry_seconds
                    log.debug("cannot grow the reserve %s to %d bytes (%s)", self.path, want, exc)
                    return False
                self.wanted = self.released = False
                return True
            temp = self.path.with_name(f".{self.path.name}.{os.urandom(4).hex()}.tmp")
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o644)
                try:
                    _allocate(fd, want)
                finally:
                    os.close(fd)
                os.replace(temp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                self._next_attempt = now + self.retry_seconds
                log.debug("cannot reserve %d bytes at %s (%s)", want, self.path, exc)
                return False
            self.wanted = self.released = False
            return True

    def release(self) -> bool:
        """Give the reserved bytes back to the filesystem; True when there were any."""
        with self._lock:
            self.wanted = self.size > 0
            self._next_attempt = 0.0
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                log.warning("cannot release the space reserved at %s: %s", self.path, exc)
                return False
            self.released = True
            return True


def _allocate(fd: int, size: int, start: int = 0) -> None:
    """Allocate bytes ``start..size`` of ``fd`` for real (not sparse, not compressible)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, start, size - start)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    chunk = os.urandom(min(size - start, 1 << 20))  # random: no filesystem compresses it
    os.lseek(fd, start, os.SEEK_SET)
    written = start
    while written < size:
        written += os.write(fd, chunk[: size - written])
    os.fsync(fd)
