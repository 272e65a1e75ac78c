"""``failover``: a primary backend with a fallback for when it fails.

Reads go to the primary; when it fails (unreachable, circuit open, I/O error) or does
not have the blob, they go to the fallback. Writes go to the primary; when it fails they
land in the fallback, so work continues during an outage. With ``replicate_writes=True``
every write also goes to the fallback. Every fallback is logged and counted
(:meth:`FailoverBlobBackend.stats`).

References are the primary's (``primary.ref_for(name)``) and are translated for the
fallback, so the two may shard differently. A write stream is sent to both backends as
it arrives (the fallback copy is discarded when the primary commits and replication is
off), so no bytes need to be buffered to replay them.

Example:
    >>> from cacheness.storage import FailoverBlobBackend
    >>> from cacheness.storage import MemoryBlobBackend
    >>> primary, fallback = MemoryBlobBackend(), MemoryBlobBackend()
    >>> blobs = FailoverBlobBackend(primary, fallback, replicate_writes=True)
    >>> info = blobs.write_bytes("report", b"quarterly")
    >>> primary.read_bytes("report"), fallback.read_bytes("report")
    (b'quarterly', b'quarterly')
    >>> _ = primary.delete("report")
    >>> blobs.read_bytes("report"), blobs.stats()["fallback_reads"]
    (b'quarterly', 1)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar, TypeVar

import msgspec

from cacheness.storage._blob._args import digest, local_file, ref_list, ref_prefix
from cacheness.storage._blob._compose import BackendSpec, is_outage, make_backend, narrowest_scope
from cacheness.storage._blob._counters import Counters
from cacheness.storage._blob.base import BlobBackend, BlobInfo, BlobWriter
from cacheness.storage._pairing import Scope
from cacheness.storage._validate import check_seconds
from cacheness.storage.errors import BlobNotFoundError, CacheError

log = logging.getLogger(__name__)

T = TypeVar("T")


class _FailoverWriter(BlobWriter):
    """Tees the stream to the primary and the fallback; commits per the failover rules."""

    def __init__(self, backend: FailoverBlobBackend, name: str, exclusive: bool) -> None:
        super().__init__(name, backend.primary.ref_for(name))
        self._backend = backend
        self._primary: BlobWriter | None = None
        self._primary_error: BaseException | None = None
        try:
            self._primary = backend.primary.open_write(name, exclusive=exclusive)
        except (CacheError, OSError) as exc:
            if not is_outage(exc):
                raise
            self._primary_error = exc
            backend._outage("open a write to", self.ref, exc)
        self._fallback: BlobWriter | None = None
        try:
            self._fallback = backend.fallback.open_write(name, exclusive=exclusive)
        except (CacheError, OSError) as exc:
            if self._primary is None or not is_outage(exc):
                self._abort()
                raise
            try:
                backend._replication_failed(self.ref, exc)
            except BaseException:
                self._abort()
                raise
        except BaseException:
            self._abort()
            raise

    def _write(self, data: memoryview) -> None:
        if self._primary is not None:
            try:
                self._primary.write(data)
            except (CacheError, OSError) as exc:
                if not is_outage(exc) or self._fallback is None:
                    raise
                self._primary, self._primary_error = None, exc
                self._backend._outage("write", self.ref, exc)
        if self._fallback is not None:
            try:
                self._fallback.write(data)
            except (CacheError, OSError) as exc:
                if self._primary is None or not is_outage(exc):
                    raise
                self._fallback = None  # the base class aborted it
                self._backend._replication_failed(self.ref, exc)

    def _commit(self, size: int, content_hash: str) -> BlobInfo:
        backend = self._backend
        primary, self._primary = self._primary, None
        fallback, self._fallback = self._fallback, None
        if primary is not None:
            try:
                info = primary.commit()
            except (CacheError, OSError) as exc:
                if fallback is None or not is_outage(exc):
                    if fallback is not None:
                        fallback.abort()
                    raise
                self._primary_error = exc
                backend._outage("commit", self.ref, exc)
            else:
                if fallback is not None and backend.replicate_writes:
                    try:
                        fallback.commit()
                    except (CacheError, OSError) as exc:
                        backend._replication_failed(self.ref, exc, undo=info.ref)
                elif fallback is not None:
                    fallback.abort()
                return info
        assert fallback is not None
        info = fallback.commit()
        backend._counters.add("fallback_writes")
        log.warning(
            "blob %r was written to the fallback %r only; the primary failed: %s",
            self.ref,
            backend.fallback,
            self._primary_error,
        )
        return msgspec.structs.replace(info, ref=self.ref)

    def _abort(self) -> None:
        for writer in (self._primary, self._fallback):
            if writer is not None:
                writer.abort()
        self._primary = self._fallback = None


class FailoverBlobBackend(BlobBackend):
    """A primary blob backend with a fallback used when the primary fails.

    Args:
        primary: the backend used while it works: an instance, a registry name, or a
            mapping ``{"backend": "s3", **options}``.
        fallback: the backend used when the primary fails (often a local filesystem).
        replicate_writes: also write every blob to the fallback.
        require_replication: with ``replicate_writes``, fail the write when the copy to
            the fallback fails (default: log and count it, the primary copy stands).

    ``close()`` closes both backends.

    Raises:
        ConfigError: a bad backend spec.
    """

    name: ClassVar[str] = "failover"
    nested_options: ClassVar[tuple[str, ...]] = ("primary", "fallback")

    def __init__(
        self,
        primary: BackendSpec,
        fallback: BackendSpec,
        *,
        replicate_writes: bool = False,
        require_replication: bool = False,
    ) -> None:
        self.primary = make_backend(primary, "primary")
        self.fallback = make_backend(fallback, "fallback")
        super().__init__(shard_chars=self.primary.shard_chars)
        self.replicate_writes = bool(replicate_writes)
        self.require_replication = bool(require_replication)
        self._counters = Counters(
            "primary_failures",
            "fallback_reads",
            "fallback_writes",
            "replication_failures",
            "missed_primary_deletes",
        )

    # -- names: the primary's references ---------------------------------------------------

    @property
    def scope(self) -> Scope:
        """The narrower of the two backends' (process < host < shared)."""
        return narrowest_scope(self.primary, self.fallback)

    @property
    def supports_local_path(self) -> bool:
        """True when either backend can give a file path."""
        return self.primary.supports_local_path or self.fallback.supports_local_path

    @property
    def exact_delete_counts(self) -> bool:
        """True when both backends count exactly."""
        return self.primary.exact_delete_counts and self.fallback.exact_delete_counts

    def ref_for(self, name: str) -> str:
        """Return the primary's reference for ``name``."""
        return self.primary.ref_for(name)

    def name_for(self, ref: str) -> str:
        """Return the primary's name for ``ref``."""
        return self.primary.name_for(ref)

    def _fallback_ref(self, ref: str) -> str:
        return self.fallback.ref_for(self.primary.name_for(ref))

    # -- bookkeeping ---------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Return the counters (each fallback is also logged).

        ``primary_failures``: calls the primary failed; ``fallback_reads``: reads served
        by the fallback; ``fallback_writes``: writes that reached only the fallback;
        ``replication_failures``: copies to the fallback that failed;
        ``missed_primary_deletes``: deletes the primary could not do (the blob may
        reappear there).
        """
        return self._counters.snapshot()

    def _outage(self, action: str, ref: str, exc: BaseException) -> None:
        self._counters.add("primary_failures")
        log.warning("primary %r failed to %s %r: %s", self.primary, action, ref, exc)

    def _replication_failed(self, ref: str, exc: BaseException, undo: str | None = None) -> None:
        """Count a failed copy to the fallback; with ``require_replication``, fail the write.

        ``undo`` is the primary ref already committed: it is deleted before raising, so a
        failed write leaves nothing visible.
        """
        self._counters.add("replication_failures")
        log.warning("could not replicate %r to the fallback %r: %s", ref, self.fallback, exc)
        if not (self.replicate_writes and self.require_replication):
            return
        if undo is not None:
            self.primary.delete(undo)
        raise exc

    def _read(self, ref: str, action: str, call: Callable[[BlobBackend, str], T]) -> T:
        """Run ``call`` on the primary; on failure or a missing blob, on the fallback."""
        try:
            return call(self.primary, ref)
        except BlobNotFoundError:
            try:
                result = call(self.fallback, self._fallback_ref(ref))
            except BlobNotFoundError:
                raise
            log.info("blob %r is missing from the primary; served by the fallback", ref)
        except (CacheError, OSError) as exc:
            if not is_outage(exc):
                raise
            self._outage(action, ref, exc)
            result = call(self.fallback, self._fallback_ref(ref))
        self._counters.add("fallback_reads")
        return result

    # -- primitives --------------------------------------------------------------------------

    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        """Start a write sent to both backends as it streams (see the module notes)."""
        return _FailoverWriter(self, name, exclusive)

    def open_read(self, ref: str) -> BinaryIO:
        """Open from the primary, else from the fallback."""
        return self._read(ref, "read", lambda backend, r: backend.open_read(r))

    def read_bytes(self, ref: str) -> bytes:
        """Read from the primary, else from the fallback."""
        return self._read(ref, "read", lambda backend, r: backend.read_bytes(r))

    def stat(self, ref: str) -> BlobInfo:
        """Describe from the primary, else from the fallback (with the primary's ref)."""
        info = self._read(ref, "stat", lambda backend, r: backend.stat(r))
        return info if info.ref == ref else msgspec.structs.replace(info, ref=ref)

    def exists(self, ref: str) -> bool:
        """True when either backend has the blob (the fallback is asked if needed)."""
        try:
            if self.primary.exists(ref):
                return True
        except (CacheError, OSError) as exc:
            if not is_outage(exc):
                raise
            self._outage("check", ref, exc)
        return self.fallback.exists(self._fallback_ref(ref))

    def delete(self, ref: str) -> bool:
        """Delete from both backends; True if either had the blob.

        Raises:
            StorageError: both backends failed (a primary failure alone is logged and
                counted as ``missed_primary_deletes``: the blob may reappear later).
        """
        deleted = False
        primary_error: BaseException | None = None
        try:
            deleted = self.primary.delete(ref)
        except (CacheError, OSError) as exc:
            if not is_outage(exc):
                raise
            primary_error = exc
            self._outage("delete", ref, exc)
            self._counters.add("missed_primary_deletes")
        try:
            deleted = self.fallback.delete(self._fallback_ref(ref)) or deleted
        except (CacheError, OSError) as exc:
            if primary_error is not None:
                raise exc from primary_error
            raise
        return deleted

    def iter_refs(self, prefix: str = "") -> Iterator[str]:
        """Yield the union of both backends' refs (the primary's form), each once."""
        prefix = ref_prefix(prefix)
        seen: set[str] = set()
        try:
            for ref in self.primary.iter_refs(prefix):
                seen.add(ref)
                yield ref
        except (CacheError, OSError) as exc:
            if not is_outage(exc):
                raise
            self._outage("list", prefix, exc)
        same_layout = self.fallback.shard_chars == self.primary.shard_chars
        for fallback_ref in self.fallback.iter_refs(prefix if same_layout else ""):
            ref = self.primary.ref_for(self.fallback.name_for(fallback_ref))
            if ref.startswith(prefix) and ref not in seen:
                seen.add(ref)
                yield ref

    # -- overrides -----------------------------------------------------------------------------

    def copy(self, ref: str, new_name: str) -> BlobInfo:
        """Copy on the primary; if it fails or lacks the blob, on the fallback."""
        new_ref = self.primary.ref_for(new_name)
        info = self._read(ref, "copy", lambda backend, r: backend.copy(r, new_name))
        return info if info.ref == new_ref else msgspec.structs.replace(info, ref=new_ref)

    def delete_many(self, refs: Iterable[str]) -> int:
        """Delete from both backends; return the larger of the two counts."""
        refs = ref_list(refs)
        primary_count = 0
        try:
            primary_count = self.primary.delete_many(refs)
        except (CacheError, OSError) as exc:
            if not is_outage(exc):
                raise
            self._outage("delete", f"{len(refs)} blobs", exc)
            self._counters.add("missed_primary_deletes", len(refs))
        fallback_count = self.fallback.delete_many([self._fallback_ref(ref) for ref in refs])
        return max(primary_count, fallback_count)

    def local_path(self, ref: str) -> Path | None:
        """Return a local path from whichever backend has the blob in a local file.

        Raises:
            BlobNotFoundError: neither backend has the blob.
        """
        try:
            path = self.primary.local_path(ref)
        except BlobNotFoundError:
            path = None
        except (CacheError, OSError) as exc:
            if not is_outage(exc):
                raise
            self._outage("locate", ref, exc)
            path = None
        if path is not None:
            return path
        try:
            return self.fallback.local_path(self._fallback_ref(ref))
        except BlobNotFoundError:
            if self.exists(ref):
                return None  # stored, but not in a local file
            raise

    def read_to_file(self, ref: str, path: str | os.PathLike[str]) -> None:
        """Download from the primary, else from the fallback."""
        path = local_file(path, output=True)
        self._read(ref, "read", lambda backend, r: backend.read_to_file(r, path))

    def location(self, ref: str) -> str:
        """Return the primary's URI of the blob."""
        return self.primary.location(ref)

    def verify(self, ref: str, expected: str) -> bool:
        """Verify on the primary, else on the fallback."""
        expected = digest(expected)
        return self._read(ref, "verify", lambda backend, r: backend.verify(r, expected))

    def cleanup_temp_files(self, older_than: float = 3600.0, *, dry_run: bool = False) -> int:
        """Clean up (or with ``dry_run``, count) both backends' interrupted-write debris."""
        check_seconds(older_than, "older_than")
        backends = (self.primary, self.fallback)
        return sum(blobs.cleanup_temp_files(older_than, dry_run=dry_run) for blobs in backends)

    def close(self) -> None:
        """Close both backends."""
        try:
            self.primary.close()
        finally:
            self.fallback.close()

    def __repr__(self) -> str:
        return f"<FailoverBlobBackend primary={self.primary!r} fallback={self.fallback!r}>"
