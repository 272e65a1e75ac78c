"""Streams between handlers and backends for ``BlobStore`` (private).

* :class:`PayloadSink` is what a handler dumps into: the first bytes stay in memory and,
  if the payload stays below the inline threshold, end up in the metadata entry; past the
  threshold a blob writer is opened and everything streams into it.
* :class:`SpoolSink` hashes a payload into a spooled temporary file, for content-addressed
  stores that must know the hash (the blob's name) before writing the blob.
* :class:`VerifyingReader` hashes a stored payload while a handler reads it, so a flipped
  byte is caught without a second pass.

Example:
    >>> import io
    >>> sink = PayloadSink(inline_threshold=8, open_writer=lambda: io.BytesIO())
    >>> sink.write(b"tiny")
    4
    >>> sink.finish()
    b'tiny'
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

from cacheness.storage._hashing import ContentHasher
from cacheness.storage.errors import IntegrityError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

_CHUNK = 1 << 20

DAMAGED_HINT = (
    "the stored data is lost: delete the entry and store it again "
    "(BlobStore.repair(dry_run=False) removes every damaged entry)"
)
"""What to do about an entry whose stored bytes fail their checks (ends IntegrityError messages)."""


class _Writable(Protocol):
    def write(self, data: ReadableBuffer, /) -> int: ...


def _as_bytes_view(data: ReadableBuffer) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class PayloadSink(io.RawIOBase):
    """A write-only stream that stays in memory below ``inline_threshold`` bytes.

    The first write that would reach the threshold calls ``open_writer()`` and streams
    the buffered bytes and everything after into it; :meth:`finish` returns the payload
    when it stayed small.

    Args:
        inline_threshold: payloads shorter than this stay in memory; 0 never does.
        open_writer: opens the stream (a blob writer) large payloads go to.
    """

    def __init__(self, inline_threshold: int, open_writer: Callable[[], _Writable]) -> None:
        super().__init__()
        self._threshold = inline_threshold
        self._open_writer = open_writer
        self._buffer = bytearray()
        self.writer: _Writable | None = None
        self.written = 0

    def writable(self) -> bool:
        """Return True."""
        return True

    def tell(self) -> int:
        """Return the number of bytes written so far."""
        return self.written

    def write(self, data: ReadableBuffer, /) -> int:
        """Append ``data``; return its length in bytes."""
        view = _as_bytes_view(data)
        size = view.nbytes
        if self.writer is None:
            if self.written + size < self._threshold:
                self._buffer += view
                self.written += size
                return size
            self.writer = self._open_writer()
            if self._buffer:
                self.writer.write(self._buffer)
                self._buffer = bytearray()
        self.writer.write(view)
        self.written += size
        return size

    def finish(self) -> bytes | None:
        """End the payload: return it if it stays inline, else None.

        A payload of ``inline_threshold`` bytes or more (with a threshold of 0: any
        payload, even an empty one) is then in :attr:`writer`, ready to commit.
        """
        if self.writer is None:
            if self.written < self._threshold:
                return bytes(self._buffer)
            self.writer = self._open_writer()
            self.writer.write(self._buffer)
            self._buffer = bytearray()
        return None


class SpoolSink(io.RawIOBase):
    """A write-only stream that hashes a payload into a spooled temporary file.

    Payloads up to ``max_memory`` bytes stay in memory; larger ones spill to a temporary
    file. After writing, :meth:`content_hash` names the payload and :meth:`reader`
    replays it from the start.

    Example:
        >>> with SpoolSink() as sink:
        ...     _ = sink.write(b"abc")
        ...     sink.content_hash(), sink.reader().read()
        ('06b05ab6733a618578af5f94892f3950', b'abc')
    """

    def __init__(self, max_memory: int = 8 << 20) -> None:
        super().__init__()
        import tempfile  # only content-addressed writes spool (and tempfile loads shutil)

        self._spool = tempfile.SpooledTemporaryFile(max_size=max_memory)  # noqa: SIM115 - closed in close()
        self._hasher = ContentHasher()
        self.written = 0

    def writable(self) -> bool:
        """Return True."""
        return True

    def tell(self) -> int:
        """Return the number of bytes written so far."""
        return self.written

    def write(self, data: ReadableBuffer, /) -> int:
        """Append ``data``; return its length in bytes."""
        view = _as_bytes_view(data)
        self._hasher.update(view)
        self._spool.write(view)
        self.written += view.nbytes
        return view.nbytes

    def content_hash(self) -> str:
        """Return the XXH3-128 hex digest of everything written."""
        return self._hasher.hexdigest()

    def reader(self) -> IO[bytes]:
        """Return the spool positioned at its start, for reading the payload back."""
        self._spool.seek(0)
        return self._spool

    def close(self) -> None:
        """Release the spool (and its temporary file, if it spilled)."""
        self._spool.close()
        super().close()


class VerifyingReader(io.RawIOBase):
    """A readable stream that hashes what passes through and checks it at the end.

    The check runs on the read that reaches the recorded size (or meets the end of the
    source first), before that read returns: a consumer that reads everything at once,
    or that reads to the end before decoding (``Decompressor.finish``), never decodes
    bytes that fail their hash. Call :meth:`verify` after the consumer is done: it reads
    whatever the consumer left and runs the same check.

    Args:
        source: the stored bytes.
        expected_size: the recorded size.
        expected_hash: the recorded XXH3-128 hex digest ("" skips the hash check).
        what: names the payload in error messages.

    Example:
        >>> reader = VerifyingReader(io.BytesIO(b"abc"), 3, "06b05ab6733a618578af5f94892f3950", "k")
        >>> reader.read(2)
        b'ab'
        >>> reader.verify()
        >>> VerifyingReader(io.BytesIO(b"abd"), 3, "06b05ab6733a618578af5f94892f3950", "k").verify()
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.IntegrityError: k: stored bytes do not match their recorded hash...
    """

    def __init__(self, source: BinaryIO, expected_size: int, expected_hash: str, what: str) -> None:
        super().__init__()
        self._source = source
        self._expected_size = expected_size
        self._expected_hash = expected_hash
        self._what = what
        self._hasher = ContentHasher()
        self._size = 0
        self._checked = False

    def readable(self) -> bool:
        """Return True."""
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        """Read into ``buffer``; return the number of bytes read (0 at the end)."""
        view = _as_bytes_view(buffer)
        data = self._source.read(view.nbytes)
        count = len(data)
        self._account(data, ended=not count and view.nbytes > 0)
        view[:count] = data
        return count

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when ``size`` is -1 or None)."""
        whole = size is None or size < 0
        data = self._source.read(-1 if size is None or size < 0 else size)
        self._account(data, ended=whole or (not data and size != 0))
        return data

    def _account(self, data: bytes, *, ended: bool) -> None:
        if data:
            self._hasher.update(data)
            self._size += len(data)
            if self._size > self._expected_size:
                raise IntegrityError(
                    f"{self._what}: stored bytes are longer than the recorded "
                    f"{self._expected_size} bytes, the blob was changed or replaced; {DAMAGED_HINT}"
                )
        if ended or self._size == self._expected_size:
            self._check()

    def verify(self) -> None:
        """Read what is left and check size and hash.

        Raises:
            IntegrityError: the bytes are truncated, longer, or hash differently.
        """
        while self.read(_CHUNK):
            pass
        self._check()

    def _check(self) -> None:
        if self._checked:
            return
        if self._size != self._expected_size:
            raise IntegrityError(
                f"{self._what}: stored bytes end after {self._size} of "
                f"{self._expected_size} bytes, truncated; {DAMAGED_HINT}"
            )
        if self._expected_hash and self._hasher.hexdigest() != self._expected_hash:
            raise IntegrityError(
                f"{self._what}: stored bytes do not match their recorded hash "
                f"{self._expected_hash} (got {self._hasher.hexdigest()}), corrupt; {DAMAGED_HINT}"
            )
        self._checked = True

    def close(self) -> None:
        """Close this reader and the stream under it."""
        self._source.close()
        super().close()
