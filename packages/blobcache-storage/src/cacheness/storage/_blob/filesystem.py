"""``filesystem``: blobs as files under a root directory, written atomically.

A write goes to a temporary file in the blob's own directory, is fsynced and renamed
into place (``durable=True`` also fsyncs the directory), so readers see the old blob or
the new one, never a partial file. A crash leaves at most a ``.cacheness-tmp-*`` file,
which :meth:`~FilesystemBlobBackend.iter_refs` ignores and
:meth:`~FilesystemBlobBackend.cleanup_temp_files` removes. Past a few MiB a helper
thread flushes the temporary file while the writer is still producing the rest, so the
fsync before the rename waits for the tail only. Exclusive (create-only)
writes publish with ``os.link``, which fails if the name exists.

References are relative paths under the root with git-style sharding
(``"abcdef"`` → ``"ab/abcdef"``). No reference can leave the root: names are validated
(no ``..``, absolute paths, backslashes, NUL) and every directory a blob sits in is
checked with ``realpath`` + ``commonpath``, so a symlinked shard directory is refused.
New directories are 0700 and files 0600 unless configured otherwise (e.g. 0o2770 and
0o660 for a cache shared by a group).

The content hash is kept in an extended attribute (``user.cacheness.xxh3_128``) where
the filesystem supports it, so :meth:`~FilesystemBlobBackend.stat` answers without
reading the file; elsewhere ``stat`` hashes the file. :meth:`~FilesystemBlobBackend.verify`
always hashes the bytes on disk.

Example:
    >>> import tempfile
    >>> from cacheness.storage import FilesystemBlobBackend
    >>> blobs = FilesystemBlobBackend(tempfile.mkdtemp())
    >>> with blobs.open_write("abcdef0123") as writer:
    ...     _ = writer.write(b"payload")
    >>> writer.info.ref
    'ab/abcdef0123'
    >>> blobs.local_path("ab/abcdef0123").read_bytes()
    b'payload'
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat as stat_module
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ClassVar

from cacheness.storage._blob._args import digest, local_file, ref_prefix
from cacheness.storage._blob._io import TEMP_PREFIX, atomic_output, copy_stream, create_temp_file
from cacheness.storage._blob._sharding import segment_problem, validate_name
from cacheness.storage._blob.base import BlobBackend, BlobInfo, BlobWriter
from cacheness.storage._hashing import HASH_HEX_LENGTH, hash_stream
from cacheness.storage._pairing import Scope
from cacheness.storage._validate import check_mode, check_seconds
from cacheness.storage.errors import (
    BlobExistsError,
    BlobNotFoundError,
    ConfigError,
    InvalidBlobNameError,
    StorageError,
    StorageFullError,
)

log = logging.getLogger(__name__)

HASH_XATTR = "user.cacheness.xxh3_128"
"""Extended attribute holding ``"<hash> <size> <mtime_ns>"`` of a blob file."""

_WRITE_BUFFER = 1 << 20
_EARLY_SYNC_BYTES = 4 << 20
"""Unsynced bytes after which a helper thread starts flushing a blob being written."""
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_KERNEL_COPY_UNSUPPORTED = {
    errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP,
}  # fmt: skip
_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def _fsync_dir(path: str) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _BackgroundSync:
    """``fdatasync`` of a file descriptor in a helper thread; the error, if any, at :meth:`join`.

    Large blobs are flushed while the rest is still being produced (compressed), so the
    ``fsync`` before the rename waits only for the tail instead of the whole file.
    """

    __slots__ = ("_error", "_thread")

    def __init__(self, fd: int) -> None:
        self._error: OSError | None = None
        self._thread = threading.Thread(
            target=self._run, args=(fd,), name="cacheness-blob-sync", daemon=True
        )
        self._thread.start()

    def _run(self, fd: int) -> None:
        try:
            _datasync(fd)
        except OSError as exc:  # reported by join(), in the writer's thread
            self._error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> OSError | None:
        """Wait for the flush; return its error (None when it succeeded)."""
        self._thread.join()
        return self._error


class _FileWriter(BlobWriter):
    def __init__(
        self, backend: FilesystemBlobBackend, name: str, ref: str, exclusive: bool
    ) -> None:
        super().__init__(name, ref)
        self._backend = backend
        self._exclusive = exclusive
        self._tmp: str | None = None
        self._unsynced = 0
        self._sync: _BackgroundSync | None = None
        self._directory, self._final = backend._prepare_directory(ref)
        for attempt in range(3):
            try:
                fd, self._tmp = create_temp_file(self._directory, backend.file_mode)
                break
            except FileNotFoundError:
                # cleanup_temp_files() removed the (empty) directory meanwhile: remake it.
                if attempt == 2:
                    raise
                self._directory, self._final = backend._prepare_directory(ref)
            except OSError as exc:
                raise backend._error("create a temporary file in", self._directory, exc) from exc
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, backend.file_mode)  # the umask must not narrow a shared mode
            self._file = open(fd, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
        except BaseException:
            os.close(fd)
            self._unlink_tmp()
            raise

    def _write(self, data: memoryview) -> None:
        try:
            self._file.write(data)
            self._unsynced += data.nbytes
            if self._unsynced >= _EARLY_SYNC_BYTES and (
                self._sync is None or not self._sync.running()
            ):
                self._join_sync()
                self._file.flush()
                self._sync = _BackgroundSync(self._file.fileno())
                self._unsynced = 0
        except OSError as exc:
            raise self._backend._error("write blob", repr(self.ref), exc) from exc

    def _join_sync(self) -> None:
        """Wait for the background flush, if any; raise its error."""
        sync, self._sync = self._sync, None
        if sync is not None and (error := sync.join()) is not None:
            raise error

    def _flush(self) -> None:
        try:
            self._file.flush()
        except OSError as exc:
            raise self._backend._error("write blob", repr(self.ref), exc) from exc

    def _commit(self, size: int, content_hash: str) -> BlobInfo:
        assert self._tmp is not None
        backend = self._backend
        try:
            self._join_sync()
            self._file.flush()
            fd = self._file.fileno()
            os.fsync(fd)
            backend._record_hash(fd, content_hash, os.fstat(fd))
            self._file.close()
            if self._exclusive:
                self._publish_exclusive()
            else:
                os.replace(self._tmp, self._final)
            self._tmp = None
            if backend.durable:
                _fsync_dir(self._directory)
        except (BlobExistsError, StorageError):
            raise
        except IsADirectoryError as exc:
            raise StorageError(
                f"cannot write blob {self.ref!r}: {self._final} is a directory "
                "(another blob name uses it as a prefix)"
            ) from exc
        except OSError as exc:
            raise backend._error("commit blob", repr(self.ref), exc) from exc
        return BlobInfo(ref=self.ref, size=size, content_hash=content_hash)

    def _publish_exclusive(self) -> None:
        assert self._tmp is not None
        try:
            os.link(self._tmp, self._final)
        except FileExistsError as exc:
            raise BlobExistsError(
                f"blob {self.ref!r} already exists (exclusive write); nothing was changed"
            ) from exc
        except OSError as exc:
            if exc.errno not in _LINK_UNSUPPORTED:
                raise
            # Hard links unsupported here (some network and FUSE filesystems): a plain
            # existence check is racy, but exclusive names are content addresses, so two
            # racing writers publish the same bytes.
            log.debug("os.link unsupported in %s (%s); create-only via check", self._final, exc)
            if os.path.lexists(self._final):
                raise BlobExistsError(
                    f"blob {self.ref!r} already exists (exclusive write); nothing was changed"
                ) from exc
            os.replace(self._tmp, self._final)
            return
        self._unlink_tmp()

    def _abort(self) -> None:
        sync, self._sync = getattr(self, "_sync", None), None
        if sync is not None and (error := sync.join()) is not None:  # before the fd closes
            log.debug("background flush of aborted temp file %s: %s", self._tmp, error)
        file = getattr(self, "_file", None)
        if file is not None:
            try:
                file.close()
            except OSError as exc:  # a failed flush of data we are discarding anyway
                log.debug("closing aborted temp file %s: %s", self._tmp, exc)
        self._unlink_tmp()

    def _unlink_tmp(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


class FilesystemBlobBackend(BlobBackend):
    """Blobs stored as files under ``root``, published by atomic rename.

    Args:
        root: the directory holding the blobs (created with ``dir_mode`` if missing).
        shard_chars: git-style sharding (default 2: ``ab/abcdef...``; 0 disables; 1-4).
        durable: also fsync the directory after each rename, so a committed blob
            survives a power cut (files are always fsynced before the rename).
        dir_mode: permissions of directories this backend creates (default 0o700).
        file_mode: permissions of blob files (default 0o600).
        create: create ``root`` when missing; if False a missing root is an error.

    Raises:
        ConfigError: bad option, or ``root`` missing with ``create=False``, or not a directory.

    Example:
        >>> import tempfile
        >>> blobs = FilesystemBlobBackend(tempfile.mkdtemp(), shard_chars=0)
        >>> blobs.write_bytes("notes.txt", b"abc").ref
        'notes.txt'
        >>> blobs.stat("notes.txt").content_hash
        '06b05ab6733a618578af5f94892f3950'
    """

    name: ClassVar[str] = "filesystem"
    scope: Scope = "host"
    supports_local_path: bool = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        shard_chars: int = 2,
        durable: bool = False,
        dir_mode: int = 0o700,
        file_mode: int = 0o600,
        create: bool = True,
    ) -> None:
        super().__init__(shard_chars=shard_chars)
        self.durable = bool(durable)
        self.dir_mode = check_mode(dir_mode, "dir_mode")
        self.file_mode = check_mode(file_mode, "file_mode")
        path = os.path.abspath(os.path.expanduser(os.fspath(root)))
        if not os.path.isdir(path):
            if os.path.exists(path):
                raise ConfigError(f"blob root {path} exists but is not a directory")
            if not create:
                raise ConfigError(f"blob root {path} does not exist (pass create=True)")
            try:
                os.makedirs(path, mode=self.dir_mode, exist_ok=True)
                os.chmod(path, self.dir_mode)
            except OSError as exc:
                raise ConfigError(f"cannot create blob root {path}: {exc}") from exc
        self.root = Path(os.path.realpath(path))
        self._root = str(self.root)
        self._xattrs = hasattr(os, "setxattr")

    # -- paths -------------------------------------------------------------------------

    def _path(self, ref: str) -> str:
        return os.path.join(self._root, *self._check_ref(ref).split("/"))

    def _contained(self, directory: str, ref: str) -> None:
        real = os.path.realpath(directory)
        if real != self._root and os.path.commonpath([real, self._root]) != self._root:
            raise InvalidBlobNameError(
                f"blob reference {ref!r} resolves to {real}, outside the blob root "
                f"{self._root} (a symlinked directory?); refusing to follow it"
            )

    def _resolve(self, ref: str) -> str:
        """Return the path of ``ref`` after checking its directory stays under the root."""
        path = self._path(ref)
        self._contained(os.path.dirname(path), ref)
        return path

    def _prepare_directory(self, ref: str) -> tuple[str, str]:
        """Create the directories of ``ref`` (with ``dir_mode``); return (dir, final path)."""
        segments = self._check_ref(ref).split("/")
        directory = self._root
        created: list[str] = []
        for segment in segments[:-1]:
            parent, directory = directory, os.path.join(directory, segment)
            try:
                os.mkdir(directory, self.dir_mode)
            except FileExistsError as exc:
                if os.path.isdir(directory):
                    continue
                raise self._in_the_way(ref, directory) from exc
            except NotADirectoryError as exc:
                raise self._in_the_way(ref, parent) from exc
            except OSError as exc:
                raise self._error("create directory", directory, exc) from exc
            os.chmod(directory, self.dir_mode)
            created.append(parent)
        self._contained(directory, ref)
        if self.durable:
            for parent in created:
                _fsync_dir(parent)
        return directory, os.path.join(directory, segments[-1])

    def _in_the_way(self, ref: str, path: str) -> StorageError:
        return StorageError(
            f"cannot write blob {ref!r}: {path} is a file (another blob's name is a prefix "
            "of this one); choose names where no name is a directory of another"
        )

    def _error(self, action: str, where: str, exc: OSError) -> StorageError:
        hint = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            with contextlib.suppress(OSError):
                import shutil

                hint = f"; {shutil.disk_usage(self._root).free >> 20} MiB free"
            hint += (
                "; delete entries to make room (deletions work on a full disk), free some "
                "space or lower the cache size"
            )
            return StorageFullError(f"could not {action} {where} under {self._root}: {exc}{hint}")
        if exc.errno in (errno.EACCES, errno.EPERM):
            hint = "; check the permissions of the blob root"
        return StorageError(f"could not {action} {where} under {self._root}: {exc}{hint}")

    # -- the content hash in an extended attribute ---------------------------------------

    def _record_hash(self, fd: int, content_hash: str, st: os.stat_result) -> None:
        if not self._xattrs:
            return
        value = f"{content_hash} {st.st_size} {st.st_mtime_ns}".encode()
        try:
            os.setxattr(fd, HASH_XATTR, value)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                log.debug("no extended attributes under %s (%s); stat will hash", self._root, exc)
                self._xattrs = False
            elif exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
                log.debug("cannot record the content hash of a read-only blob: %s", exc)
            else:
                log.warning("could not record the content hash of a blob: %s", exc)

    def _recorded_hash(self, fd: int, st: os.stat_result) -> str | None:
        if not self._xattrs:
            return None
        try:
            raw = os.getxattr(fd, HASH_XATTR)
        except OSError:
            return None
        parts = raw.decode("ascii", "replace").split()
        if (
            len(parts) == 3
            and len(parts[0]) == HASH_HEX_LENGTH
            and parts[1] == str(st.st_size)
            and parts[2] == str(st.st_mtime_ns)
        ):
            return parts[0]
        return None  # missing, or the file changed since: hash it again

    # -- primitives ----------------------------------------------------------------------

    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        """Start writing ``name`` into a temporary file next to its final place.

        Raises:
            InvalidBlobNameError: unsafe name, or its directory leaves the root.
            StorageError: the directory cannot be created (permissions, a file in the way).
        """
        return _FileWriter(self, name, self.ref_for(name), exclusive)

    def _open_fd(self, ref: str) -> int:
        path = self._resolve(ref)
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._not_found(ref) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                # A symlink is never a blob (this backend writes regular files only), as
                # exists(), delete() and iter_refs() agree: the blob is missing.
                raise BlobNotFoundError(
                    f"no blob with reference {ref!r} in {self!r}: a symlink is there, "
                    "and symlinks are never followed"
                ) from exc
            raise self._error("open blob", repr(ref), exc) from exc
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._not_found(ref)
        return fd

    def open_read(self, ref: str) -> BinaryIO:
        """Open the blob file for reading.

        Raises:
            BlobNotFoundError: no such blob (a symlink in its place counts as none: it
                is never followed).
            InvalidBlobNameError: the reference is unsafe, or its directory leaves the root.
        """
        return open(self._open_fd(ref), "rb")

    def stat(self, ref: str) -> BlobInfo:
        """Describe the blob; the hash comes from its extended attribute when fresh."""
        fd = self._open_fd(ref)
        try:
            st = os.fstat(fd)
            content_hash = self._recorded_hash(fd, st)
            if content_hash is None:
                with open(os.dup(fd), "rb") as stream:
                    content_hash = hash_stream(stream)
                self._record_hash(fd, content_hash, st)
        finally:
            os.close(fd)
        return BlobInfo(
            ref=ref,
            size=st.st_size,
            content_hash=content_hash,
            modified_at=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def exists(self, ref: str) -> bool:
        """Return True when ``ref`` is a regular file under the root."""
        path = self._resolve(ref)
        try:
            return stat_module.S_ISREG(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def delete(self, ref: str) -> bool:
        """Remove the blob file; False if it did not exist."""
        path = self._resolve(ref)
        try:
            if not stat_module.S_ISREG(os.lstat(path).st_mode):
                return False
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise self._error("delete blob", repr(ref), exc) from exc
        if self.durable:
            _fsync_dir(os.path.dirname(path))
        return True

    def iter_refs(self, prefix: str = "") -> Iterator[str]:
        """Yield the blobs' references starting with ``prefix``.

        Temporary files, symlinks and anything that is not a regular file are skipped.
        """
        prefix = ref_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        if head:
            validate_name(head, "reference prefix")
        start = os.path.join(self._root, *head.split("/")) if head else self._root
        yield from (ref for ref in self._walk(start, head) if ref.startswith(prefix))

    def _walk(self, directory: str, relative: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.is_symlink() or segment_problem(entry.name) is not None:
                continue  # temporary files, links, names no blob can have
            ref = f"{relative}/{entry.name}" if relative else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, ref)
            elif entry.is_file(follow_symlinks=False):
                yield ref

    # -- overrides -----------------------------------------------------------------------

    def local_path(self, ref: str) -> Path:
        """Return the real path of the blob file (treat it as read-only).

        Raises:
            BlobNotFoundError: no such blob.
        """
        path = self._resolve(ref)
        try:
            if stat_module.S_ISREG(os.lstat(path).st_mode):
                return Path(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._not_found(ref) from exc
        raise self._not_found(ref)

    def read_to_file(self, ref: str, path: str | os.PathLike[str]) -> None:
        """Copy the blob to ``path`` atomically, in the kernel where it can."""
        path = local_file(path, output=True)
        fd = self._open_fd(ref)
        with open(fd, "rb") as source, atomic_output(path) as sink:
            _copy_file(source, sink)

    def location(self, ref: str) -> str:
        """Return the blob's ``file://`` URI."""
        return Path(self._path(ref)).as_uri()

    def verify(self, ref: str, expected: str) -> bool:
        """Hash the bytes on disk and compare them with ``expected``.

        Raises:
            BlobNotFoundError: no such blob.
        """
        expected = digest(expected)
        with open(self._open_fd(ref), "rb") as stream:
            return hash_stream(stream) == expected.strip().lower()

    # -- maintenance ---------------------------------------------------------------------

    def cleanup_temp_files(
        self, older_than: float = 3600.0, *, dry_run: bool = False, remove_empty_dirs: bool = True
    ) -> int:
        """Remove temporary files left by crashed writers; return how many were removed.

        Args:
            older_than: only files untouched for this many seconds are removed, so
                writes in progress in other processes are left alone; 0 removes all.
            dry_run: count the files that would be removed; remove nothing.
            remove_empty_dirs: also remove shard directories left empty.

        Example:
            >>> import tempfile
            >>> FilesystemBlobBackend(tempfile.mkdtemp()).cleanup_temp_files()
            0
        """
        check_seconds(older_than, "older_than")
        deadline = time.time() - older_than
        return self._cleanup(self._root, deadline, remove=not dry_run, dirs=remove_empty_dirs)

    def _cleanup(self, directory: str, deadline: float, *, remove: bool, dirs: bool) -> int:
        removed = 0
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                removed += self._cleanup(entry.path, deadline, remove=remove, dirs=dirs)
                if remove and dirs:
                    with contextlib.suppress(OSError):  # not empty, or already gone
                        os.rmdir(entry.path)
            elif entry.name.startswith(TEMP_PREFIX):
                try:
                    if entry.stat(follow_symlinks=False).st_mtime > deadline:
                        continue
                    if remove:
                        os.unlink(entry.path)
                        log.info("removed abandoned temporary file %s", entry.path)
                    removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def __repr__(self) -> str:
        return f"<FilesystemBlobBackend {self._root!r} shard_chars={self.shard_chars}>"


def _kernel_copies() -> list[tuple[str, Callable[[int, int], int]]]:
    """The kernel's file-to-file copies this platform has (``(name, copy(in, out))``)."""
    copies: list[tuple[str, Callable[[int, int], int]]] = []
    if hasattr(os, "copy_file_range"):
        copies.append(("copy_file_range", lambda src, dst: os.copy_file_range(src, dst, 1 << 30)))
    if hasattr(os, "sendfile"):
        copies.append(("sendfile", lambda src, dst: os.sendfile(dst, src, None, 1 << 30)))
    return copies


def _copy_file(source: BinaryIO, sink: BinaryIO) -> None:
    """Copy file to file with ``copy_file_range`` or ``sendfile``, else in chunks."""
    for name, kernel_copy in _kernel_copies():
        sink.flush()
        in_fd, out_fd = source.fileno(), sink.fileno()
        copied_any = False
        try:
            while kernel_copy(in_fd, out_fd):
                copied_any = True
            return
        except OSError as exc:
            if copied_any or exc.errno not in _KERNEL_COPY_UNSUPPORTED:
                raise
            log.debug("%s unsupported here (%s); trying the next method", name, exc)
    copy_stream(source, sink)
