"""Compression plumbing shared by the byte-oriented handlers (private).

Example:
    >>> import io
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> sink = io.BytesIO()
    >>> codec, raw_size = write_parts(sink, [b"ab" * 1000], DEFAULT_OPTIONS)
    >>> codec, raw_size
    ('zstd', 2000)
    >>> bytes(read_all(io.BytesIO(sink.getvalue()), codec, raw_size, DEFAULT_OPTIONS))[:4]
    b'abab'
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from cacheness.storage._compression import (
    Decompressor,
    compress,
    decompress,
    open_compressor,
    open_decompressor,
    resolve_codec,
    sample_of,
)
from cacheness.storage._streams import read_exact
from cacheness.storage.errors import IntegrityError

if TYPE_CHECKING:
    from cacheness.storage._handlers.base import SerializationOptions
    from cacheness.storage._hashing import BytesLike


def write_parts(
    sink: BinaryIO,
    parts: Sequence[BytesLike],
    options: SerializationOptions,
    *,
    default: str = "zstd",
    typesize: int = 1,
) -> tuple[str, int]:
    """Write ``parts`` (one logical payload) compressed as ``options`` say.

    ``"auto"`` resolves from a sample of the parts to ``default`` or ``"none"``.

    Returns:
        ``(codec, raw_size)``: the codec actually used and the uncompressed size.
    """
    total = sum(memoryview(part).nbytes for part in parts)
    codec = options.codec
    if codec == "auto" and total < options.auto_min_size:
        codec = "none"  # the common case for small values: no settings, no sampling
    settings = options
    if codec == "auto" and default == "zstd" and total <= 2 * settings.auto_sample_size:
        # A payload not much larger than the sample auto would compress: compress it
        # whole, once, and keep the result if it pays (what auto decides, on the real
        # ratio), else store the parts as they are; sampling first would compress about
        # as many bytes again.
        whole = b"".join(parts)
        compressed = compress(whole, "zstd", settings)
        if 1.0 - len(compressed) / max(total, 1) >= settings.auto_min_saving:
            sink.write(compressed)
            return "zstd", total
        codec = "none"
    if codec == "auto":
        sample = (
            sample_of(parts, settings.auto_sample_size) if total >= settings.auto_min_size else b""
        )
        codec = resolve_codec(
            "auto", sample, total, default=default, settings=settings, typesize=typesize
        )
    if codec == "none":
        for part in parts:
            if memoryview(part).nbytes:
                sink.write(part)
        return "none", total
    with open_compressor(sink, codec, settings, typesize=typesize, size_hint=total) as writer:
        for part in parts:
            writer.write(part)
    return codec, total


def open_reader(
    source: BinaryIO, codec: str, raw_size: int, options: SerializationOptions
) -> Decompressor:
    """Return a bounded reader of the decompressed payload."""
    return open_decompressor(source, codec, raw_size=raw_size, settings=options)


def read_all(
    source: BinaryIO, codec: str, raw_size: int, options: SerializationOptions
) -> BytesLike:
    """Return the whole decompressed payload (exactly ``raw_size`` bytes).

    Raises:
        IntegrityError: the stored bytes decode to more or fewer bytes, or are corrupt.
    """
    if codec == "none":
        data = read_exact(source, raw_size)
        if source.read(1):
            raise IntegrityError(
                f"stored bytes are longer than the recorded {raw_size}: corrupt entry or blob"
            )
        return data
    if codec == "zstd" and isinstance(source, io.BytesIO):  # a payload kept in the index
        return decompress(source.read(), codec, raw_size=raw_size)
    return open_reader(source, codec, raw_size, options).read_all()


def is_exact_type(obj: Any, module: str, *names: str) -> bool:
    """True if ``type(obj)`` is ``module.<name>`` for one of ``names``.

    Never imports ``module``: an object cannot be a DataFrame if pandas was never
    imported. Subclasses do not count (their type would be lost on load).

    Example:
        >>> import collections
        >>> is_exact_type(collections.OrderedDict(), "collections", "OrderedDict")
        True
        >>> is_exact_type({}, "module_nobody_imported", "Thing")
        False
    """
    loaded = sys.modules.get(module)
    if loaded is None:
        return False
    kind = type(obj)
    return any(kind is getattr(loaded, name, None) for name in names)
