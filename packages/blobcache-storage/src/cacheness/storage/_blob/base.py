"""The ``BlobBackend`` ABC: where the bytes live, stream first.

A blob backend stores opaque bytes under *names* the caller picks and hands back a
*reference* (``ref``) to read them with. Writing is a stream: :meth:`BlobBackend.open_write`
returns a :class:`BlobWriter`, a writable binary file that makes the blob visible only
on :meth:`~BlobWriter.commit` (or a clean exit from its ``with`` block) and leaves nothing
behind on :meth:`~BlobWriter.abort` (or an exception). The XXH3-128 content hash is
computed while the bytes pass through, never in a second pass.

Subclasses implement six primitives (``open_write``, ``open_read``, ``stat``, ``delete``,
``exists``, ``iter_refs``); everything else has a default built on them that a backend
overrides when it can do better (S3 copies server-side, the filesystem hands out paths).

Example:
    >>> from cacheness.storage import MemoryBlobBackend
    >>> blobs = MemoryBlobBackend(shard_chars=2)
    >>> with blobs.open_write("abcdef") as writer:
    ...     _ = writer.write(b"hello ")
    ...     _ = writer.write(b"world")
    >>> writer.info.ref, writer.info.size
    ('ab/abcdef', 11)
    >>> blobs.read_bytes("ab/abcdef")
    b'hello world'
"""

from __future__ import annotations

import io
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, ClassVar, Literal, Self

import msgspec

from cacheness.storage._blob._args import data_view, digest, local_file, ref_list
from cacheness.storage._blob._io import CHUNK_SIZE, atomic_output, copy_stream
from cacheness.storage._blob._sharding import (
    shard,
    unshard,
    validate_name,
    validate_shard_chars,
)
from cacheness.storage._hashing import BytesLike, ContentHasher, hash_stream
from cacheness.storage._pairing import Scope
from cacheness.storage._validate import check_seconds
from cacheness.storage.errors import BlobNotFoundError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)


HEALTH_PROBE_NAME = "cacheness-health-probe"
"""The blob name :meth:`BlobBackend.ping` looks for (never written)."""


class BlobInfo(msgspec.Struct, frozen=True):
    """What a backend knows about one stored blob.

    Attributes:
        ref: the reference to read it with (for sharded backends the relative path
            ``"ab/abcdef..."``); opaque to callers.
        size: length in bytes.
        content_hash: XXH3-128 hex of the bytes, computed while they were written;
            ``""`` when unknown (an S3 object written by another tool).
        etag: the server's entity tag (S3), else None.
        version_id: the object version (S3 buckets with versioning), else None.
        modified_at: when the blob was last written (UTC), where the backend knows it
            (``stat`` fills it in; writers may leave it None). Maintenance uses it to
            leave blobs of writes still in progress alone.

    Example:
        >>> BlobInfo("ab/abc", 3, "06b05ab6733a618578af5f94892f3950").etag is None
        True
    """

    ref: str
    size: int
    content_hash: str
    etag: str | None = None
    version_id: str | None = None
    modified_at: datetime | None = None


class BlobWriter(io.BufferedIOBase):
    """A writable binary file whose bytes become a blob only on :meth:`commit`.

    Use it as a context manager: a clean exit commits, an exception aborts. After
    :meth:`commit` the :class:`BlobInfo` is in :attr:`info`; after :meth:`abort` nothing
    is visible. :meth:`close` before :meth:`commit` aborts (so does garbage collection
    of a forgotten writer). Writing after commit or abort raises ``ValueError``.
    A writer is used by one thread at a time.

    Backends subclass it and implement ``_write``, ``_commit`` and ``_abort``.

    Args:
        name: the blob name being written.
        ref: the reference it will have.
    """

    def __init__(self, name: str, ref: str) -> None:
        missing: frozenset[str] = getattr(type(self), "__abstractmethods__", frozenset())
        if missing:  # io's C base classes skip the ABC check object() would do
            raise TypeError(
                f"Can't instantiate abstract class {type(self).__name__} without "
                f"an implementation for abstract methods {', '.join(sorted(missing))}"
            )
        super().__init__()
        self.name = name
        self.ref = ref
        self.info: BlobInfo | None = None
        self._hasher = ContentHasher()
        self._size = 0
        self._state: Literal["open", "committed", "aborted"] = "open"

    # -- to implement ------------------------------------------------------------------

    @abstractmethod
    def _write(self, data: memoryview) -> None:
        """Store the next chunk (already hashed and counted)."""

    @abstractmethod
    def _commit(self, size: int, content_hash: str) -> BlobInfo:
        """Make the blob visible atomically and describe it."""

    @abstractmethod
    def _abort(self) -> None:
        """Discard everything written; must be safe to call more than once."""

    def _flush(self) -> None:
        """Push buffered bytes to the underlying storage (not a commit)."""

    # -- the file API ------------------------------------------------------------------

    def writable(self) -> bool:
        """Return True: a writer accepts bytes until it is committed or aborted."""
        return True

    def tell(self) -> int:
        """Return the number of bytes written so far."""
        return self._size

    @property
    def state(self) -> Literal["open", "committed", "aborted"]:
        """``"open"``, ``"committed"`` or ``"aborted"``."""
        return self._state

    def flush(self) -> None:
        """Push buffered bytes down (e.g. to the temporary file); nothing becomes visible."""
        if getattr(self, "_state", None) == "open":
            self._flush()

    def write(self, data: ReadableBuffer, /) -> int:
        """Append ``data`` (any contiguous buffer) and return its length in bytes.

        Raises:
            ValueError: the writer is already committed or aborted.
        """
        self._check_writable()
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        size = view.nbytes
        if not size:
            return 0
        self._hasher.update(view)
        try:
            self._write(view)
        except BaseException:
            self._discard()
            raise
        self._size += size
        return size

    def commit(self) -> BlobInfo:
        """Make the blob visible and return its :class:`BlobInfo`.

        If making it visible fails, nothing is visible and the error propagates.

        Raises:
            ValueError: the writer was aborted, or already committed.
            BlobExistsError: an exclusive write found the name taken.
        """
        self._check_writable()
        try:
            info = self._commit(self._size, self._hasher.hexdigest())
        except BaseException:
            self._discard()
            raise
        self.info = info
        self._state = "committed"
        super().close()
        return info

    def abort(self) -> None:
        """Discard the bytes written; nothing becomes visible. Safe to call twice."""
        if self._state == "open":
            self._discard()

    def close(self) -> None:
        """Close the writer; aborts it unless it was committed."""
        if getattr(self, "_state", None) == "open":
            self._discard()
        super().close()

    def __enter__(self) -> Self:
        self._check_writable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            if self._state == "open":
                self.commit()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ref!r} {self._state}, {self._size} bytes>"

    def _discard(self) -> None:
        self._state = "aborted"
        try:
            self._abort()
        finally:
            super().close()

    def _check_writable(self) -> None:
        if self._state != "open":
            raise ValueError(
                f"blob writer for {self.ref!r} is already {self._state}; "
                "open a new writer with open_write()"
            )


class BlobBackend(ABC):
    """Stores bytes under names; reads them back by reference.

    ``name`` is the registry name (``"filesystem"``, ``"s3"``...). Read-only properties
    describe capabilities, checked in one place by callers: :attr:`scope`,
    :attr:`supports_local_path`, :attr:`exact_delete_counts`. A store declares its own
    as class attributes (``scope = "host"``); a composition (tiered, failover) derives
    them from the backends it holds.

    Args:
        shard_chars: git-style sharding of the last name segment (0 disables, 1-4).

    Raises:
        ConfigError: ``shard_chars`` out of range.
    """

    name: ClassVar[str] = "abstract"
    nested_options: ClassVar[tuple[str, ...]] = ()
    """Constructor options that take other blob backends (a composition's parts), so a
    configuration check can look into them without creating anything."""

    def __init__(self, *, shard_chars: int = 0) -> None:
        self.shard_chars = validate_shard_chars(shard_chars)

    # -- capabilities ------------------------------------------------------------------

    @property
    def scope(self) -> Scope:
        """Who else sees the blobs: ``"process"``, ``"host"`` or ``"shared"``."""
        return "process"

    @property
    def supports_local_path(self) -> bool:
        """True when :meth:`local_path` can return a real file path."""
        return False

    @property
    def exact_delete_counts(self) -> bool:
        """True when :meth:`delete` and :meth:`delete_many` report only blobs that existed
        (S3 reports absent keys as deleted too: finding out would take a request more,
        and race with other writers)."""
        return True

    # -- primitives --------------------------------------------------------------------

    @abstractmethod
    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        """Start writing the blob ``name``; it becomes visible on commit.

        Args:
            name: the blob name (validated; see :meth:`ref_for`).
            exclusive: create-only: commit raises :class:`BlobExistsError` when the name
                already exists (for content-addressed names).

        Raises:
            InvalidBlobNameError: the name is unsafe.
        """

    @abstractmethod
    def open_read(self, ref: str) -> BinaryIO:
        """Open the blob ``ref`` for reading as a binary file object.

        Raises:
            BlobNotFoundError: no blob has that reference.
        """

    @abstractmethod
    def stat(self, ref: str) -> BlobInfo:
        """Describe the blob ``ref`` without reading its bytes.

        Raises:
            BlobNotFoundError: no blob has that reference.
        """

    @abstractmethod
    def delete(self, ref: str) -> bool:
        """Delete the blob ``ref``; return False (quietly) when it did not exist.

        A backend without :attr:`exact_delete_counts` returns True for an absent blob too.
        """

    @abstractmethod
    def exists(self, ref: str) -> bool:
        """Return True when a blob with reference ``ref`` exists."""

    @abstractmethod
    def iter_refs(self, prefix: str = "") -> Iterator[str]:
        """Yield the references that start with ``prefix``, in no particular order.

        Temporary files of writes in progress are never listed.
        """

    # -- names and references ----------------------------------------------------------

    def ref_for(self, name: str) -> str:
        """Return the reference ``name`` is stored under (sharding applied).

        Raises:
            InvalidBlobNameError: the name is unsafe (``..``, absolute, NUL, ...).

        Example:
            >>> from cacheness.storage import MemoryBlobBackend
            >>> MemoryBlobBackend(shard_chars=2).ref_for("runs/abcdef")
            'runs/ab/abcdef'
        """
        return shard(validate_name(name), self.shard_chars)

    def name_for(self, ref: str) -> str:
        """Return the name whose reference is ``ref`` (the inverse of :meth:`ref_for`).

        Raises:
            InvalidBlobNameError: ``ref`` is unsafe or not produced by this sharding.

        Example:
            >>> from cacheness.storage import MemoryBlobBackend
            >>> MemoryBlobBackend(shard_chars=2).name_for("ab/abcdef")
            'abcdef'
        """
        return unshard(validate_name(ref, "blob reference"), self.shard_chars)

    def _check_ref(self, ref: str) -> str:
        return validate_name(ref, "blob reference")

    # -- defaults built on the primitives ----------------------------------------------

    def write_bytes(self, name: str, data: BytesLike, *, exclusive: bool = False) -> BlobInfo:
        """Store ``data`` as the blob ``name`` and return its :class:`BlobInfo`.

        Raises:
            BlobExistsError: ``exclusive`` and the name exists.
            InvalidBlobNameError: the name is unsafe.

        Example:
            >>> from cacheness.storage import MemoryBlobBackend
            >>> MemoryBlobBackend().write_bytes("a", b"xyz").size
            3
        """
        data = data_view(data)
        with self.open_write(name, exclusive=exclusive) as writer:
            writer.write(data)
        assert writer.info is not None
        return writer.info

    def read_bytes(self, ref: str) -> bytes:
        """Return the whole blob ``ref`` as bytes.

        Raises:
            BlobNotFoundError: no blob has that reference.
        """
        with self.open_read(ref) as stream:
            return stream.read()

    def write_from_file(
        self, name: str, path: str | os.PathLike[str], *, exclusive: bool = False
    ) -> BlobInfo:
        """Store the contents of the local file ``path`` as the blob ``name``.

        The file is read once, in chunks: memory stays bounded for any size.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            BlobExistsError: ``exclusive`` and the name exists.
        """
        path = local_file(path)
        with open(path, "rb") as source, self.open_write(name, exclusive=exclusive) as writer:
            copy_stream(source, writer)
        assert writer.info is not None
        return writer.info

    def read_to_file(self, ref: str, path: str | os.PathLike[str]) -> None:
        """Write the blob ``ref`` to the local file ``path``, atomically.

        The bytes go to a temporary file next to ``path`` that replaces ``path`` only
        when complete; on failure ``path`` is untouched.

        Raises:
            BlobNotFoundError: no blob has that reference.
        """
        path = local_file(path, output=True)
        with self.open_read(ref) as source, atomic_output(path) as sink:
            copy_stream(source, sink)

    def copy(self, ref: str, new_name: str) -> BlobInfo:
        """Copy the blob ``ref`` to the name ``new_name`` (replacing it) and describe it.

        Raises:
            BlobNotFoundError: no blob has reference ``ref``.
        """
        with self.open_read(ref) as source, self.open_write(new_name) as writer:
            copy_stream(source, writer)
        assert writer.info is not None
        return writer.info

    def copy_from_server_side(
        self, source: BlobBackend, ref: str, new_name: str
    ) -> BlobInfo | None:
        """Copy ``source``'s blob ``ref`` here as ``new_name`` without the bytes passing
        through this process, when the two backends can (two S3 backends on one endpoint);
        return None when they cannot and the caller streams the bytes instead.

        Raises:
            BlobNotFoundError: ``source`` has no blob ``ref`` (when a copy was attempted).
        """
        return None

    def delete_many(self, refs: Iterable[str]) -> int:
        """Delete every blob in ``refs``; return how many were deleted."""
        refs = ref_list(refs)
        return sum(1 for ref in refs if self.delete(ref))

    def local_path(self, ref: str) -> Path | None:
        """Return the path of a local file holding the blob's bytes, else None.

        Only backends with ``supports_local_path`` return a path; treat the file as
        read-only (numpy may memory-map it).
        """
        self._check_ref(ref)
        return None

    def location(self, ref: str) -> str:
        """Return a URI naming where the blob lives, for humans and metadata.

        Example:
            >>> from cacheness.storage import MemoryBlobBackend
            >>> MemoryBlobBackend().location("ab/abc")
            'memory://ab/abc'
        """
        return f"{self.name}://{self._check_ref(ref)}"

    def verify(self, ref: str, expected: str) -> bool:
        """Return True when the blob matches ``expected``, a content hash or an ETag.

        The recorded hash and ETag from :meth:`stat` answer when they exist (no
        download); a blob without a recorded hash is read and hashed.

        Raises:
            BlobNotFoundError: no blob has that reference.
        """
        expected = digest(expected)
        info = self.stat(ref)
        wanted = expected.strip().strip('"').lower()
        if info.etag is not None and wanted == info.etag.strip('"').lower():
            return True
        if info.content_hash:
            return wanted == info.content_hash
        with self.open_read(ref) as stream:
            return wanted == hash_stream(stream, CHUNK_SIZE)

    def cleanup_temp_files(self, older_than: float = 3600.0, *, dry_run: bool = False) -> int:
        """Remove the debris of interrupted writes; return how many pieces (were) found.

        Only pieces untouched for ``older_than`` seconds count, so writes in progress in
        other processes are left alone; ``dry_run`` counts without removing. Backends
        whose interrupted writes leave nothing behind keep this default, which finds
        nothing.

        Example:
            >>> from cacheness.storage import MemoryBlobBackend
            >>> MemoryBlobBackend().cleanup_temp_files(dry_run=True)
            0
        """
        check_seconds(older_than, "older_than")
        return 0

    def stats(self) -> dict[str, int]:
        """Return the backend's counters (what it cost, what it served); ``{}`` by default.

        Example:
            >>> from cacheness.storage import MemoryBlobBackend
            >>> MemoryBlobBackend().stats()
            {}
        """
        return {}

    def ping(self) -> None:
        """Check that the storage answers, without writing; raise if it does not.

        Used by ``BlobStore.health()``. The default asks whether a probe blob exists
        (a stat of a file, one request to a server); backends override it with their
        cheapest round trip (S3: ``HeadBucket``).

        Example:
            >>> from cacheness.storage import MemoryBlobBackend
            >>> MemoryBlobBackend().ping()
        """
        self.exists(self.ref_for(HEALTH_PROBE_NAME))

    def close(self) -> None:  # noqa: B027 - a concrete, optional hook
        """Release connections and files; the backend must not be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} shard_chars={self.shard_chars}>"

    def _not_found(self, ref: str) -> BlobNotFoundError:
        return BlobNotFoundError(f"no blob with reference {ref!r} in {self!r}")
