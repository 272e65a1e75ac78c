"""Small helpers over binary streams shared by codecs and handlers (private).

Example:
    >>> import io
    >>> read_upto(io.BytesIO(b"abcdef"), 4)
    b'abcd'
    >>> sink = CountingSink(io.BytesIO())
    >>> sink.write(b"xyz"), sink.tell()
    (3, 3)
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, BinaryIO

from cacheness.storage.errors import IntegrityError

if TYPE_CHECKING:
    from cacheness.storage._hashing import BytesLike


def read_upto(source: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the stream (short reads are retried)."""
    data = source.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = source.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_exact(source: BinaryIO, size: int, what: str = "stored bytes") -> bytes:
    """Read exactly ``size`` bytes.

    Raises:
        IntegrityError: the stream ends first (``what`` names the data in the message).
    """
    data = read_upto(source, size)
    if len(data) != size:
        raise IntegrityError(f"{what} end after {len(data)} of {size} bytes: truncated")
    return data


class CountingSink:
    """A write-only file object over ``sink`` that answers ``tell`` by counting.

    Libraries such as pyarrow and zstandard ask a file for its position or flush it;
    the blob writers handlers receive are write-only, so they get this instead.
    """

    __slots__ = ("_sink", "closed", "written")

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.written = 0
        self.closed = False

    def write(self, data: BytesLike) -> int:
        """Forward ``data`` to the sink; return its length."""
        size = memoryview(data).nbytes
        if size:
            self._sink.write(data)
            self.written += size
        return size

    def tell(self) -> int:
        """Bytes written so far."""
        return self.written

    def flush(self) -> None:
        """Nothing to flush here; the sink's owner flushes it."""

    def writable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always False: this stream only moves forward."""
        return False

    def readable(self) -> bool:
        """Always False."""
        return False

    def close(self) -> None:
        """Mark closed; the underlying sink stays open (its owner commits it)."""
        self.closed = True


class MemoryReader(io.RawIOBase):
    """A seekable, read-only binary stream over bytes already in memory.

    Like ``io.BytesIO`` but :meth:`read_view` hands out slices without copying them
    (Blosc2 chunks are decompressed straight from the blob read into memory).

    Example:
        >>> reader = MemoryReader(b"abcdef")
        >>> reader.read(2), bytes(reader.read_view(3)), reader.tell()
        (b'ab', b'cde', 5)
        >>> _ = reader.seek(0)
        >>> reader.read()
        b'abcdef'
    """

    def __init__(self, data: BytesLike) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True."""
        return True

    def read_view(self, size: int) -> memoryview:
        """Return up to ``size`` next bytes as a view into the buffer (no copy)."""
        start = self._pos
        self._pos = min(start + max(size, 0), self._view.nbytes)
        return self._view[start : self._pos]

    def read(self, size: int | None = -1) -> bytes:
        """Return up to ``size`` next bytes (all the rest when ``size`` is negative or None)."""
        if size is None or size < 0:
            size = self._view.nbytes - self._pos
        return bytes(self.read_view(size))

    def readinto(self, buffer: Any) -> int:
        """Copy the next bytes into ``buffer``; return how many."""
        target = memoryview(buffer).cast("B")
        view = self.read_view(target.nbytes)
        target[: view.nbytes] = view
        return view.nbytes

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (from the start, the current position or the end)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._view.nbytes}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        """The current position."""
        return self._pos
