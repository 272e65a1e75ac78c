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

from typing import TYPE_CHECKING, BinaryIO

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
