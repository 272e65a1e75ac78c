"""Content hashing: XXH3-128, as 32 lowercase hex characters.

One algorithm everywhere a content hash is recorded (``Entry.content_hash``,
``BlobInfo.content_hash``), so hashes from different backends compare equal.
Streams are hashed while they pass through (:class:`ContentHasher`), never in a
second pass over the bytes.

Example:
    >>> from cacheness.storage import ContentHasher, hash_bytes
    >>> hasher = ContentHasher()
    >>> hasher.update(b"hello ")
    >>> hasher.update(b"world")
    >>> hasher.hexdigest() == hash_bytes(b"hello world")
    True
    >>> len(hash_bytes(b""))
    32
"""

from __future__ import annotations

from typing import BinaryIO, TypeAlias

import xxhash

HASH_ALGORITHM = "xxh3_128"
"""Name of the content hash algorithm, as recorded next to hashes where needed."""

HASH_HEX_LENGTH = 32
"""Length of a content hash in hex characters."""

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous buffer of bytes accepted where bytes are read."""

_CHUNK = 1 << 20


class ContentHasher:
    """Incremental XXH3-128 hasher fed chunk by chunk.

    Example:
        >>> h = ContentHasher()
        >>> h.update(memoryview(b"abc"))
        >>> h.hexdigest()
        '06b05ab6733a618578af5f94892f3950'
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = xxhash.xxh3_128()

    def update(self, data: BytesLike) -> None:
        """Feed more bytes (any buffer: bytes, bytearray, memoryview)."""
        self._state.update(data)

    def hexdigest(self) -> str:
        """Return the hash of everything fed so far (feeding may continue)."""
        return self._state.hexdigest()


def hash_bytes(data: BytesLike) -> str:
    """Return the XXH3-128 hex digest of ``data``.

    Example:
        >>> hash_bytes(b"abc")
        '06b05ab6733a618578af5f94892f3950'
    """
    return xxhash.xxh3_128_hexdigest(data)


def hash_stream(stream: BinaryIO, chunk_size: int = _CHUNK) -> str:
    """Return the XXH3-128 hex digest of everything left in ``stream``.

    Example:
        >>> import io
        >>> hash_stream(io.BytesIO(b"abc")) == hash_bytes(b"abc")
        True
    """
    hasher = ContentHasher()
    while chunk := stream.read(chunk_size):
        hasher.update(chunk)
    return hasher.hexdigest()
