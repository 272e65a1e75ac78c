"""Streaming helpers shared by the blob backends (private)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from cacheness.storage._blob._sharding import RESERVED_PREFIX

CHUNK_SIZE = 4 << 20
"""Bytes moved per read/write call when streaming (4 MiB)."""


def copy_stream(source: IO[bytes], sink: Any, chunk_size: int = CHUNK_SIZE) -> int:
    """Copy everything left in ``source`` to ``sink`` in chunks; return the bytes copied.

    Uses ``readinto`` into one reused buffer when the source has it, so a multi-GB copy
    allocates one chunk, not one per read.

    Example:
        >>> import io
        >>> sink = io.BytesIO()
        >>> copy_stream(io.BytesIO(b"abc"), sink), sink.getvalue()
        (3, b'abc')
    """
    total = 0
    readinto = getattr(source, "readinto", None)
    if readinto is None:
        while chunk := source.read(chunk_size):
            sink.write(chunk)
            total += len(chunk)
        return total
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    while True:
        count = readinto(view)
        if not count:
            return total
        sink.write(view[:count])
        total += count


TEMP_PREFIX = f"{RESERVED_PREFIX}tmp-"
"""Name prefix of temporary files; listings skip them and cleanups remove them."""


def create_temp_file(directory: str | os.PathLike[str], mode: int = 0o666) -> tuple[int, str]:
    """Create a new, empty temporary file in ``directory``; return its fd and path.

    ``mode`` goes through the process umask, as for any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    while True:
        path = os.path.join(directory, f"{TEMP_PREFIX}{os.urandom(8).hex()}")
        try:
            return os.open(path, flags, mode), path
        except FileExistsError:  # 64 random bits collided: draw again
            continue


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` atomically when the block succeeds.

    The temporary file is a sibling of ``path`` (same filesystem, so the final rename is
    atomic) and is removed when the block raises; ``path`` is then untouched.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.bin"
        >>> with atomic_output(target) as sink:
        ...     _ = sink.write(b"done")
        >>> target.read_bytes()
        b'done'
    """
    target = Path(path)
    fd, tmp_name = create_temp_file(target.parent or ".")
    try:
        with open(fd, "wb") as sink:
            yield sink
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
