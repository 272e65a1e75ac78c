"""``tiered``: a bounded local filesystem cache in front of any (remote) blob backend.

Reads fill the local cache; writes go through to the remote and also fill it. The
cache is bounded by ``max_bytes`` and evicts the least recently used blobs first. Its
index (size, content hash, ETag, last access) lives in a SQLite file in ``cache_dir``,
so a restarted process finds its cache warm.

The remote is the truth. A cached copy is served only if its size and content hash
(or ETag) match the remote's record, checked with one ``stat`` (a HEAD on S3) per read.
``revalidate_after=N`` trusts a copy for N seconds after its last check, and ``None``
trusts it until evicted: right for content-addressed names, whose bytes never change.

Example:
    >>> import tempfile
    >>> from cacheness.storage import MemoryBlobBackend
    >>> from cacheness.storage import TieredBlobBackend
    >>> remote = MemoryBlobBackend(shard_chars=2)
    >>> info = remote.write_bytes("abcdef", b"from far away")
    >>> blobs = TieredBlobBackend(remote, tempfile.mkdtemp(), max_bytes=1 << 20)
    >>> blobs.read_bytes(info.ref), blobs.read_bytes(info.ref)
    (b'from far away', b'from far away')
    >>> blobs.stats()["hits"], blobs.stats()["fills"]
    (1, 1)
    >>> blobs.close()
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar, NamedTuple

from cacheness.storage._blob._args import (
    data_view,
    digest,
    local_file,
    ref_list,
    ref_prefix,
)
from cacheness.storage._blob._compose import BackendSpec, make_backend
from cacheness.storage._blob._counters import Counters
from cacheness.storage._blob._io import CHUNK_SIZE
from cacheness.storage._blob._sharding import RESERVED_PREFIX
from cacheness.storage._blob.base import BlobBackend, BlobInfo, BlobWriter
from cacheness.storage._blob.filesystem import FilesystemBlobBackend
from cacheness.storage._hashing import BytesLike, hash_stream
from cacheness.storage._pairing import Scope
from cacheness.storage._validate import check_int, check_seconds
from cacheness.storage.errors import BlobNotFoundError, CacheError, ConfigError

log = logging.getLogger(__name__)

_INDEX_NAME = f"{RESERVED_PREFIX}index.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    ref TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    etag TEXT,
    version_id TEXT,
    last_access REAL NOT NULL,
    validated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_access ON entries (last_access);
"""


class _Row(NamedTuple):
    ref: str
    size: int
    content_hash: str
    etag: str | None
    version_id: str | None
    last_access: float
    validated_at: float


class _Index:
    """The cache index: one SQLite file, WAL mode, shared by threads and processes."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def get(self, ref: str) -> _Row | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM entries WHERE ref = ?", (ref,)).fetchone()
        return _Row(*row) if row else None

    def put(self, info: BlobInfo, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (info.ref, info.size, info.content_hash, info.etag, info.version_id, now, now),
            )

    def touch(self, ref: str, now: float, *, validated: bool) -> None:
        sql = "UPDATE entries SET last_access = ?" + (", validated_at = ?" if validated else "")
        params = (now, now, ref) if validated else (now, ref)
        with self._lock:
            self._db.execute(sql + " WHERE ref = ?", params)

    def remove(self, ref: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE ref = ?", (ref,))

    def total_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0])

    def oldest_first(self) -> list[tuple[str, int]]:
        with self._lock:
            rows = self._db.execute("SELECT ref, size FROM entries ORDER BY last_access").fetchall()
        return [(str(ref), int(size)) for ref, size in rows]

    def refs(self) -> set[str]:
        with self._lock:
            return {str(row[0]) for row in self._db.execute("SELECT ref FROM entries")}

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _TieredWriter(BlobWriter):
    """Writes through to the remote and, best effort, into the local cache."""

    def __init__(self, backend: TieredBlobBackend, name: str, exclusive: bool) -> None:
        self._remote = backend.remote.open_write(name, exclusive=exclusive)
        super().__init__(name, self._remote.ref)
        self._backend = backend
        self._local: BlobWriter | None = None
        if backend.fill_on_write:
            self._local = backend._open_local_writer(self.ref)

    def _write(self, data: memoryview) -> None:
        self._remote.write(data)
        if self._local is not None:
            if self._local.tell() + data.nbytes > self._backend.max_bytes:
                self._drop_local(None)  # larger than the whole cache: do not keep it
            else:
                try:
                    self._local.write(data)
                except (CacheError, OSError) as exc:
                    self._drop_local(exc)

    def _drop_local(self, exc: BaseException | None) -> None:
        assert self._local is not None
        self._local.abort()
        self._local = None
        if exc is not None:
            self._backend._local_failure("write", self.ref, exc)

    def _commit(self, size: int, content_hash: str) -> BlobInfo:
        info = self._remote.commit()
        if self._local is not None:
            local, self._local = self._local, None
            self._backend._write_through(info, local.commit)
        return info

    def _abort(self) -> None:
        self._remote.abort()
        if self._local is not None:
            self._local.abort()
            self._local = None


class TieredBlobBackend(BlobBackend):
    """A bounded, persistent local cache of a remote blob backend's blobs.

    Args:
        remote: the backend holding the truth: an instance, a registry name, or a
            mapping ``{"backend": "s3", **options}``.
        cache_dir: local directory for the cached files and their index.
        max_bytes: most bytes kept locally (default 5 GiB); blobs larger than this
            are streamed from the remote without being cached.
        revalidate_after: seconds a cached copy is trusted after its last check against
            the remote; 0 (default) checks on every read, None never re-checks.
        fill_on_write: also keep a local copy of what is written (default True).
        verify_local: hash the local copy on every hit (catches local disk corruption).
        dir_mode: permissions of the cache's directories.
        file_mode: permissions of the cache's files.
        clock: wall clock in seconds (injectable for tests).

    Raises:
        ConfigError: a bad option or remote spec.

    ``close()`` closes the remote as well.
    """

    name: ClassVar[str] = "tiered"
    nested_options: ClassVar[tuple[str, ...]] = ("remote",)

    def __init__(
        self,
        remote: BackendSpec,
        cache_dir: str | os.PathLike[str],
        *,
        max_bytes: int = 5 << 30,
        revalidate_after: float | None = 0.0,
        fill_on_write: bool = True,
        verify_local: bool = False,
        dir_mode: int = 0o700,
        file_mode: int = 0o600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_int("max_bytes", max_bytes, 0, unit="bytes")
        if revalidate_after is not None and revalidate_after < 0:
            raise ConfigError(f"revalidate_after must be >= 0 or None, got {revalidate_after!r}")
        self.remote = make_backend(remote, "remote")
        super().__init__(shard_chars=self.remote.shard_chars)
        self.max_bytes = max_bytes
        self.revalidate_after = revalidate_after
        self.fill_on_write = bool(fill_on_write)
        self.verify_local = bool(verify_local)
        self._clock = clock
        self._local = FilesystemBlobBackend(
            Path(cache_dir) / "blobs", shard_chars=0, dir_mode=dir_mode, file_mode=file_mode
        )
        self.cache_dir = self._local.root.parent
        self._index = _Index(self.cache_dir / _INDEX_NAME)
        self._evict_lock = threading.Lock()
        # Publishing a local copy and indexing it happen together, so the index never
        # describes a file another thread has just replaced.
        self._publish_lock = threading.Lock()
        self._counters = Counters(
            "hits", "misses", "fills", "evictions", "bypasses", "validations", "local_errors"
        )

    # -- names follow the remote -----------------------------------------------------------

    @property
    def scope(self) -> Scope:
        """The remote's: the local copies are a cache, the remote is the truth."""
        return self.remote.scope

    @property
    def supports_local_path(self) -> bool:
        """True: every blob read is a file in the local cache."""
        return True

    @property
    def exact_delete_counts(self) -> bool:
        """The remote's."""
        return self.remote.exact_delete_counts

    def ref_for(self, name: str) -> str:
        """Return the remote's reference for ``name``."""
        return self.remote.ref_for(name)

    def name_for(self, ref: str) -> str:
        """Return the remote's name for ``ref``."""
        return self.remote.name_for(ref)

    # -- cache bookkeeping -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Return counters: hits, misses, fills, evictions, bypasses, validations, local_errors.

        ``bypasses`` are reads of blobs too large to cache; ``local_errors`` are local
        cache failures that were logged and served from the remote instead.
        """
        return self._counters.snapshot()

    @property
    def cached_bytes(self) -> int:
        """Bytes currently held by the local cache, according to its index."""
        return self._index.total_size()

    def is_cached(self, ref: str) -> bool:
        """Return True when a local copy of ``ref`` is indexed (not checked against the remote)."""
        return self._index.get(ref) is not None

    def _local_failure(self, action: str, ref: str, exc: BaseException) -> None:
        self._counters.add("local_errors")
        log.warning(
            "local cache could not %s %r (serving the remote instead): %s", action, ref, exc
        )

    def _open_local_writer(self, ref: str) -> BlobWriter | None:
        try:
            return self._local.open_write(ref)
        except (CacheError, OSError) as exc:
            self._local_failure("write", ref, exc)
            return None

    def _publish(
        self,
        ref: str,
        commit: Callable[[], BlobInfo],
        describe: Callable[[BlobInfo], BlobInfo | None],
    ) -> bool:
        """Publish a local copy with ``commit`` and index what ``describe`` makes of it.

        ``describe`` gets the local copy's info and returns the index record, or None
        when the copy must not be trusted (it is then dropped). Returns False when the
        copy was not kept. Publishing and indexing happen under one lock, so the index
        never describes a file another thread has just replaced.
        """
        with self._publish_lock:
            try:
                local = commit()
            except (CacheError, OSError) as exc:
                self._local_failure("fill", ref, exc)
                return False
            record = describe(local)
            if record is None:
                self._forget(ref)
                return False
            self._index.put(record, self._clock())
        self._evict(keep=ref)
        return True

    def _write_through(self, info: BlobInfo, commit: Callable[[], BlobInfo]) -> None:
        """Keep the local copy of a blob just written to the remote as ``info``."""

        def describe(local: BlobInfo) -> BlobInfo | None:
            same = local.size == info.size and local.content_hash == info.content_hash
            return info if same else None  # e.g. a file that changed between two reads

        self._publish(info.ref, commit, describe)

    def _forget(self, ref: str) -> None:
        self._index.remove(ref)
        try:
            self._local.delete(ref)
        except (CacheError, OSError) as exc:
            self._local_failure("delete", ref, exc)

    def _evict(self, keep: str) -> None:
        with self._evict_lock:
            total = self._index.total_size()
            if total <= self.max_bytes:
                return
            for ref, size in self._index.oldest_first():
                if total <= self.max_bytes:
                    break
                if ref == keep:
                    continue
                self._forget(ref)
                total -= size
                self._counters.add("evictions")
                log.debug("evicted %r (%d bytes) from the local cache", ref, size)

    def _local_copy_ok(self, row: _Row) -> bool:
        try:
            path = self._local.local_path(row.ref)
            if path.stat().st_size != row.size:
                return False
            if self.verify_local:
                with open(path, "rb") as stream:
                    return hash_stream(stream) == row.content_hash
        except (BlobNotFoundError, FileNotFoundError):
            return False
        return True

    def _ensure_cached(self, ref: str) -> bool:
        """Make sure a trusted local copy of ``ref`` exists; False if it is too large.

        Raises:
            BlobNotFoundError: the remote has no such blob (any local copy is dropped).
        """
        now = self._clock()
        row = self._index.get(ref)
        if row is not None and self._trusted_without_check(row, now) and self._local_copy_ok(row):
            self._index.touch(ref, now, validated=False)
            self._counters.add("hits")
            return True
        try:
            remote_info = self.remote.stat(ref)
        except BlobNotFoundError:
            if row is not None:
                self._forget(ref)
            raise
        self._counters.add("validations")
        if row is not None:
            if _matches(row, remote_info) and self._local_copy_ok(row):
                self._index.touch(ref, now, validated=True)
                self._counters.add("hits")
                return True
            self._forget(ref)
        self._counters.add("misses")
        if remote_info.size > self.max_bytes:
            self._counters.add("bypasses")
            return False
        return self._fill(ref, remote_info)

    def _trusted_without_check(self, row: _Row, now: float) -> bool:
        if self.revalidate_after is None:
            return True
        return self.revalidate_after > 0 and now - row.validated_at < self.revalidate_after

    def _fill(self, ref: str, remote_info: BlobInfo) -> bool:
        """Copy ``ref`` from the remote into the cache; False if the local side failed.

        Remote errors propagate; local ones (disk full...) are logged and counted.
        """
        writer = self._open_local_writer(ref)
        if writer is None:
            return False
        try:
            with self.remote.open_read(ref) as source:
                while chunk := source.read(CHUNK_SIZE):
                    try:
                        writer.write(chunk)
                    except (CacheError, OSError) as exc:
                        self._local_failure("fill", ref, exc)
                        return False

            def describe(local: BlobInfo) -> BlobInfo:
                # What was read is what gets indexed; if the remote changed between the
                # stat and the read, the stat's ETag does not describe these bytes.
                same = local.size == remote_info.size and (
                    not remote_info.content_hash or local.content_hash == remote_info.content_hash
                )
                if not same:
                    log.info("blob %r changed on the remote while being cached", ref)
                return BlobInfo(
                    ref=ref,
                    size=local.size,
                    content_hash=local.content_hash,
                    etag=remote_info.etag if same else None,
                    version_id=remote_info.version_id if same else None,
                )

            if not self._publish(ref, writer.commit, describe):
                return False
        finally:
            writer.abort()  # a no-op once committed
        self._counters.add("fills")
        return True

    # -- primitives ----------------------------------------------------------------------------

    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        """Start a write that goes to the remote and (best effort) to the local cache."""
        return _TieredWriter(self, name, exclusive)

    def open_read(self, ref: str) -> BinaryIO:
        """Open the local copy (filling it first if needed), else stream from the remote."""
        if self._ensure_cached(ref):
            try:
                return self._local.open_read(ref)
            except BlobNotFoundError:
                log.debug("%r was evicted between fill and open; reading the remote", ref)
        return self.remote.open_read(ref)

    def stat(self, ref: str) -> BlobInfo:
        """Describe the blob from the remote (the truth)."""
        return self.remote.stat(ref)

    def exists(self, ref: str) -> bool:
        """Ask the remote."""
        return self.remote.exists(ref)

    def delete(self, ref: str) -> bool:
        """Delete from the remote, then drop the local copy."""
        deleted = self.remote.delete(ref)
        if self._index.get(ref) is not None or self._local.exists(ref):
            self._forget(ref)
        return deleted

    def delete_many(self, refs: Iterable[str]) -> int:
        """Delete from the remote in one batch, then drop the local copies."""
        refs = ref_list(refs)
        deleted = self.remote.delete_many(refs)
        cached = self._index.refs()
        for ref in refs:
            if ref in cached:
                self._forget(ref)
        return deleted

    def iter_refs(self, prefix: str = "") -> Iterator[str]:
        """List the remote."""
        prefix = ref_prefix(prefix)
        return self.remote.iter_refs(prefix)

    # -- overrides -----------------------------------------------------------------------------

    def write_bytes(self, name: str, data: BytesLike, *, exclusive: bool = False) -> BlobInfo:
        """Write to the remote (its fast path), then keep a local copy."""
        data = data_view(data)
        info = self.remote.write_bytes(name, data, exclusive=exclusive)
        if self.fill_on_write and info.size <= self.max_bytes:
            self._write_through(info, lambda: self._local.write_bytes(info.ref, data))
        return info

    def write_from_file(
        self, name: str, path: str | os.PathLike[str], *, exclusive: bool = False
    ) -> BlobInfo:
        """Upload with the remote's file path, then copy the file into the cache."""
        path = local_file(path)
        info = self.remote.write_from_file(name, path, exclusive=exclusive)
        if self.fill_on_write and info.size <= self.max_bytes:
            self._write_through(info, lambda: self._local.write_from_file(info.ref, path))
        return info

    def read_to_file(self, ref: str, path: str | os.PathLike[str]) -> None:
        """Copy from the local cache when possible, else from the remote."""
        path = local_file(path, output=True)
        if self._ensure_cached(ref):
            try:
                self._local.read_to_file(ref, path)
                return
            except BlobNotFoundError:
                log.debug("%r was evicted between fill and copy; reading the remote", ref)
        self.remote.read_to_file(ref, path)

    def copy(self, ref: str, new_name: str) -> BlobInfo:
        """Copy on the remote (server-side where it can)."""
        return self.remote.copy(ref, new_name)

    def local_path(self, ref: str) -> Path | None:
        """Return the path of a trusted local copy (filled on demand); None if too large.

        Raises:
            BlobNotFoundError: the remote has no such blob.
        """
        if self._ensure_cached(ref):
            try:
                return self._local.local_path(ref)
            except BlobNotFoundError:
                return None
        return None

    def location(self, ref: str) -> str:
        """Return the remote's URI of the blob."""
        return self.remote.location(ref)

    def verify(self, ref: str, expected: str) -> bool:
        """Verify against the remote."""
        expected = digest(expected)
        return self.remote.verify(ref, expected)

    # -- maintenance -------------------------------------------------------------------------

    def clear_cache(self) -> None:
        """Drop every local copy (the remote is untouched)."""
        with self._evict_lock:
            for ref in self._index.refs():
                self._forget(ref)
            self._index.clear()

    def repair(self) -> dict[str, int]:
        """Reconcile the index with the files after a crash; return what was fixed.

        Removes index rows whose file is missing or has the wrong size, local files no
        row describes, and temporary files of interrupted fills.
        """
        rows_dropped = files_removed = 0
        with self._evict_lock:
            indexed = self._index.refs()
            for ref in indexed:
                row = self._index.get(ref)
                if row is not None and not self._local_copy_ok(row):
                    self._forget(ref)
                    rows_dropped += 1
            for ref in list(self._local.iter_refs()):
                if ref not in indexed:
                    self._local.delete(ref)
                    files_removed += 1
        temp_files = self._local.cleanup_temp_files()
        return {
            "rows_dropped": rows_dropped,
            "files_removed": files_removed,
            "temp_files": temp_files,
        }

    def cleanup_temp_files(self, older_than: float = 3600.0, *, dry_run: bool = False) -> int:
        """Clean up (or with ``dry_run``, count) the remote's and the local cache's
        interrupted-write debris."""
        check_seconds(older_than, "older_than")
        backends = (self.remote, self._local)
        return sum(blobs.cleanup_temp_files(older_than, dry_run=dry_run) for blobs in backends)

    def close(self) -> None:
        """Close the index and the remote."""
        self._index.close()
        self.remote.close()

    def __repr__(self) -> str:
        return (
            f"<TieredBlobBackend {self.remote!r} cached in {str(self.cache_dir)!r} "
            f"max_bytes={self.max_bytes}>"
        )


def _matches(row: _Row, info: BlobInfo) -> bool:
    """True when a cached copy is the blob the remote describes."""
    if row.size != info.size:
        return False
    if row.content_hash and info.content_hash:
        return row.content_hash == info.content_hash
    return bool(row.etag and info.etag and row.etag == info.etag)
