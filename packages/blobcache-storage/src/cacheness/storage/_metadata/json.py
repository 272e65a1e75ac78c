"""``json``: the whole index in one JSON file, for small single-host indexes.

The file is human-readable and diff-friendly. Every change rewrites it atomically (a
sibling temporary file, fsync, rename), under an exclusive OS file lock on
``<file>.lock``, so processes of one host never corrupt it or lose each other's
writes; a process notices when another one replaced the file and reloads it.

It is meant for indexes of up to a few thousand entries: a write costs time in
proportion to the whole index. The scope is one host (``scope = "host"``): file locks
are not reliable on network filesystems, so a team sharing an index uses
``postgresql``.

File format (version 1)::

    {"format": "cacheness.storage.metadata", "version": 1, "entries": [{...}, ...]}

Timestamps are RFC 3339 strings in UTC, ``inline`` payloads are base64. The ``version``
is checked whenever the file is read: a newer one is refused with
:class:`~cacheness.storage.errors.FormatVersionError`, an older one is upgraded in memory
by the registered migrations (see :mod:`cacheness.storage._metadata._migrations`) and
written in the current version by the next change.

Example:
    >>> import tempfile, pathlib
    >>> from cacheness.storage import Entry
    >>> from cacheness.storage import JsonMetadataBackend
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "index.json"
    >>> with JsonMetadataBackend(path) as index:
    ...     _ = index.put(Entry.new("a", size=3, inline=b"abc"))
    >>> with JsonMetadataBackend(path) as index:  # a new process would see the same
    ...     index.get("a").inline
    b'abc'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, ClassVar, Final

import msgspec

from cacheness.storage._entry import Entry
from cacheness.storage._locks import FileLocks
from cacheness.storage._metadata._dict import DictMetadataBackend
from cacheness.storage._metadata._fs import (
    SpaceReserve,
    atomic_write,
    exclusive_lock,
    no_space,
    prepare_file,
    warn_network_filesystem,
)
from cacheness.storage._metadata._migrations import FormatMigrations
from cacheness.storage._pairing import Scope
from cacheness.storage.errors import ConfigError, MetadataError, StorageFullError

log = logging.getLogger(__name__)

FILE_FORMAT: Final = "cacheness.storage.metadata"
"""The ``format`` tag at the top of the file."""

FILE_VERSION: Final = 1
"""The file layout version this release reads and writes."""

_ABSENT: Final = (-1, -1, -1)

_Step = Callable[[dict[str, Any]], dict[str, Any]]
_MIGRATIONS: Final[FormatMigrations[_Step]] = FormatMigrations("JSON index", FILE_VERSION)
"""Steps that upgrade an older file's decoded document by one version (none yet: a
layout change bumps :data:`FILE_VERSION` and registers its step here)."""


class _File(msgspec.Struct):
    format: str
    version: int
    entries: list[Entry]


class _Header(msgspec.Struct):
    format: str = ""
    version: int = 0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_File)


class _IndexFullError(StorageFullError, MetadataError):
    """The disk under a json index is full (a ``StorageFullError`` and a ``MetadataError``)."""


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    # os.replace gives every written file a new inode, so this changes on every write.
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class JsonMetadataBackend(DictMetadataBackend):
    """All entries in one JSON file, safe for the processes of one host.

    Args:
        path: the JSON file (created with its parent directories on first write).
        fsync: flush every write to the disk before renaming it into place (turn off
            only for throwaway indexes: a power cut could then lose recent writes).
        reserve_mb: the least space kept in ``<path>.reserve`` for deletions on a full
            disk; the reserve grows with the index, since a rewrite needs room for a
            whole new file (0 disables). A rewrite that does not grow the index (a
            deletion) releases it when the disk is full, and it is allocated again at
            the next write that finds room.

    Raises:
        ConfigError: ``path`` is a directory.
        FormatVersionError: the file was written by a newer blobcache-storage.
        MetadataError: the file exists but is not a valid index (nothing is overwritten).

    Example:
        >>> import tempfile
        >>> index = JsonMetadataBackend(tempfile.mkdtemp() + "/index.json")
        >>> index.count()
        0
    """

    name: ClassVar[str] = "json"
    scope: ClassVar[Scope] = "host"
    default_inline_threshold: ClassVar[int] = 4096  # every change rewrites the whole file

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = True, reserve_mb: float = 1.0
    ) -> None:
        super().__init__()
        if isinstance(reserve_mb, bool) or not (
            isinstance(reserve_mb, int | float) and 0 <= reserve_mb <= 1024
        ):
            raise ConfigError(f"reserve_mb must be a number of MiB in 0..1024, got {reserve_mb!r}")
        self.path = prepare_file(path, "json", "index.json")
        self.reserve = SpaceReserve(
            self.path.with_name(self.path.name + ".reserve"), int(reserve_mb * (1 << 20))
        )
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._fsync = fsync
        self._signature_loaded: tuple[int, int, int] | None = None
        warn_network_filesystem(
            self.path.parent,
            "json file lock",
            "file locks are unreliable there, so writers on different machines can lose "
            "each other's changes; use the postgresql metadata backend for a shared index",
            stacklevel=2,
        )
        with self._lock:
            self._refresh()
        if self.reserve.size:
            self.reserve.ensure(self._file_size())

    def _file_size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def __repr__(self) -> str:
        return f"<JsonMetadataBackend {str(self.path)!r}{' closed' if self._closed else ''}>"

    # ----------------------------------------------------------------- file sync

    def _refresh(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._signature_loaded != _ABSENT:
                self._entries, self._signature_loaded = {}, _ABSENT
            return
        except OSError as exc:
            raise MetadataError(f"cannot read the metadata file {self.path}: {exc}") from exc
        if _signature(stat) == self._signature_loaded:
            return
        try:
            with open(self.path, "rb") as handle:
                signature = _signature(os.fstat(handle.fileno()))
                data = handle.read()
        except FileNotFoundError:
            self._entries, self._signature_loaded = {}, _ABSENT
            return
        except OSError as exc:
            raise MetadataError(f"cannot read the metadata file {self.path}: {exc}") from exc
        self._entries = self._decode(data)
        self._signature_loaded = signature

    def _decode(self, data: bytes) -> dict[str, Entry]:
        if not data.strip():
            return {}
        error: Exception | None = None
        try:
            document = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            error = exc
        else:
            if document.format == FILE_FORMAT and document.version == _MIGRATIONS.current:
                return {entry.key: entry for entry in document.entries}
        # Not the current layout: another version (checked first, whatever the rest
        # looks like), or not an index at all.
        try:
            header = msgspec.json.decode(data, type=_Header)
        except (msgspec.DecodeError, msgspec.ValidationError):
            header = _Header()
        if header.format == FILE_FORMAT and header.version >= 1:
            steps = _MIGRATIONS.steps(header.version, str(self.path))  # newer: refused
            if steps:
                return self._migrated(data, header.version, steps)
        if error is not None:
            detail = f" ({error})"
        else:
            detail = f" (format {header.format!r}, version {header.version})"
        raise MetadataError(
            f"{self.path} is not a valid cacheness metadata file{detail}; nothing was changed. "
            "Restore it from a backup, or move it away to start an empty index"
        ) from error

    def _migrated(
        self, data: bytes, found: int, steps: list[tuple[int, _Step]]
    ) -> dict[str, Entry]:
        """Upgrade a file of version ``found`` in memory (written back by the next change)."""
        try:
            document = msgspec.json.decode(data)
            for version, step in steps:
                document = step(document)
                document["version"] = version + 1
            upgraded = _decoder.decode(_encoder.encode(document))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
            raise MetadataError(
                f"{self.path} (JSON index version {found}) could not be upgraded to version "
                f"{_MIGRATIONS.current}: {exc}; nothing was changed. Restore it from a backup"
            ) from exc
        log.info(
            "read %s as JSON index version %d, upgraded in memory to %d",
            self.path,
            found,
            _MIGRATIONS.current,
        )
        return {entry.key: entry for entry in upgraded.entries}

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with ExitStack() as stack:
            try:
                stack.enter_context(exclusive_lock(self._lock_path))
            except OSError as exc:
                raise MetadataError(f"cannot lock {self._lock_path}: {exc}") from exc
            self._refresh()
            yield

    def _persist(self) -> None:
        document = _File(FILE_FORMAT, _MIGRATIONS.current, list(self._entries.values()))
        data = _encoder.encode(document)
        reserve = self.reserve
        if reserve.released and len(data) > self._file_size() and not reserve.ensure(len(data)):
            raise _IndexFullError(
                f"cannot write the metadata file {self.path}: the disk is full: the space kept "
                "beside it for deletions was used and there is no room to set it aside again; "
                "delete more entries or free space on the filesystem (the change was not saved)"
            )
        try:
            try:
                stat = atomic_write(self.path, data, durable=self._fsync)
            except OSError as exc:
                # A rewrite that does not grow the index (a deletion) may use the reserve.
                shrinks = len(data) <= self._file_size()
                if not (no_space(exc) and shrinks and self.reserve.release()):
                    raise
                log.warning(
                    "%s: the disk is full; released the space reserved beside it to save "
                    "the change",
                    self.path,
                )
                stat = atomic_write(self.path, data, durable=self._fsync)
        except OSError as exc:
            error = _IndexFullError if no_space(exc) else MetadataError
            hint = (
                "; the disk is full: delete entries to make room (deletions work on a full "
                "disk) or free space on the filesystem"
                if no_space(exc)
                else ""
            )
            raise error(
                f"cannot write the metadata file {self.path}: {exc}; the change was not saved{hint}"
            ) from exc
        self._signature_loaded = _signature(stat)
        if self.reserve.size and (self.reserve.wanted or stat.st_size > self.reserve.size):
            self.reserve.ensure(stat.st_size)

    def _discard(self) -> None:
        log.warning("discarding unsaved changes to %s; reloading it", self.path)
        self._signature_loaded = None

    def _make_locks(self) -> FileLocks:
        # Processes of one host share the index file, so they share lock files beside it.
        return FileLocks(self.path.with_name(self.path.name + ".locks"))
