"""``memory``: blobs in a dict of bytes owned by the backend instance.

For tests and short-lived processes. Thread-safe; every instance has its own dict (no
process-wide state), and the same contract as the other backends: a writer's bytes
become visible only on commit, exclusive writes are create-only, readers get a snapshot.

Example:
    >>> from cacheness.storage import MemoryBlobBackend
    >>> blobs = MemoryBlobBackend()
    >>> info = blobs.write_bytes("greeting", b"hi")
    >>> blobs.read_bytes(info.ref), blobs.stat(info.ref).size
    (b'hi', 2)
    >>> blobs.delete(info.ref), blobs.delete(info.ref)
    (True, False)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO, ClassVar

from cacheness.storage._blob._args import data_view, ref_list, ref_prefix
from cacheness.storage._blob.base import BlobBackend, BlobInfo, BlobWriter
from cacheness.storage._hashing import BytesLike, hash_bytes
from cacheness.storage._pairing import Scope
from cacheness.storage.errors import BlobExistsError


class _Stored:
    __slots__ = ("data", "info")

    def __init__(self, data: bytes, info: BlobInfo) -> None:
        self.data = data
        self.info = info


class _MemoryWriter(BlobWriter):
    def __init__(self, backend: MemoryBlobBackend, name: str, ref: str, exclusive: bool) -> None:
        super().__init__(name, ref)
        self._backend = backend
        self._exclusive = exclusive
        self._buffer: io.BytesIO | None = io.BytesIO()

    def _write(self, data: memoryview) -> None:
        assert self._buffer is not None
        self._buffer.write(data)

    def _commit(self, size: int, content_hash: str) -> BlobInfo:
        assert self._buffer is not None
        data = self._buffer.getvalue()
        self._buffer = None
        return self._backend._store(self.ref, data, content_hash, self._exclusive)

    def _abort(self) -> None:
        self._buffer = None


class MemoryBlobBackend(BlobBackend):
    """Blobs held in memory by this instance, safe to share between threads.

    Args:
        shard_chars: git-style sharding of references (default 0: refs equal names).

    Example:
        >>> blobs = MemoryBlobBackend(shard_chars=2)
        >>> blobs.write_bytes("abcdef", b"x").ref
        'ab/abcdef'
        >>> sorted(blobs.iter_refs())
        ['ab/abcdef']
    """

    name: ClassVar[str] = "memory"
    scope: Scope = "process"

    def __init__(self, *, shard_chars: int = 0) -> None:
        super().__init__(shard_chars=shard_chars)
        self._blobs: dict[str, _Stored] = {}
        self._lock = threading.Lock()

    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        """Start writing ``name``; the bytes are buffered until commit."""
        return _MemoryWriter(self, name, self.ref_for(name), exclusive)

    def write_bytes(self, name: str, data: BytesLike, *, exclusive: bool = False) -> BlobInfo:
        """Store ``data`` as ``name`` (one copy of the bytes, no writer)."""
        data = data_view(data)
        ref = self.ref_for(name)
        payload = bytes(data)
        return self._store(ref, payload, hash_bytes(payload), exclusive)

    def _store(self, ref: str, data: bytes, content_hash: str, exclusive: bool) -> BlobInfo:
        info = BlobInfo(
            ref=ref, size=len(data), content_hash=content_hash, modified_at=datetime.now(UTC)
        )
        with self._lock:
            if exclusive and ref in self._blobs:
                raise BlobExistsError(f"blob {ref!r} already exists (exclusive write)")
            self._blobs[ref] = _Stored(data, info)
        return info

    def _get(self, ref: str) -> _Stored:
        self._check_ref(ref)
        with self._lock:
            stored = self._blobs.get(ref)
        if stored is None:
            raise self._not_found(ref)
        return stored

    def open_read(self, ref: str) -> BinaryIO:
        """Return a file over a snapshot of the blob (later writes do not change it)."""
        return io.BytesIO(self._get(ref).data)

    def read_bytes(self, ref: str) -> bytes:
        """Return the blob's bytes (the stored object itself: bytes are immutable)."""
        return self._get(ref).data

    def stat(self, ref: str) -> BlobInfo:
        """Describe the blob ``ref``."""
        return self._get(ref).info

    def exists(self, ref: str) -> bool:
        """Return True when ``ref`` is stored."""
        self._check_ref(ref)
        with self._lock:
            return ref in self._blobs

    def delete(self, ref: str) -> bool:
        """Delete ``ref``; False if it was absent."""
        self._check_ref(ref)
        with self._lock:
            return self._blobs.pop(ref, None) is not None

    def delete_many(self, refs: Iterable[str]) -> int:
        """Delete every ref in ``refs`` under one lock; return how many existed."""
        refs = ref_list(refs)
        checked = [self._check_ref(ref) for ref in refs]
        with self._lock:
            return sum(1 for ref in checked if self._blobs.pop(ref, None) is not None)

    def copy(self, ref: str, new_name: str) -> BlobInfo:
        """Copy ``ref`` to ``new_name`` without copying the (immutable) bytes."""
        stored = self._get(ref)
        return self._store(self.ref_for(new_name), stored.data, stored.info.content_hash, False)

    def iter_refs(self, prefix: str = "") -> Iterator[str]:
        """Yield the stored refs starting with ``prefix``, sorted."""
        prefix = ref_prefix(prefix)
        with self._lock:
            refs = sorted(ref for ref in self._blobs if ref.startswith(prefix))
        yield from refs

    @property
    def total_bytes(self) -> int:
        """Bytes held by all blobs."""
        with self._lock:
            return sum(stored.info.size for stored in self._blobs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._blobs)

    def __repr__(self) -> str:
        return f"<MemoryBlobBackend {len(self)} blobs, shard_chars={self.shard_chars}>"
