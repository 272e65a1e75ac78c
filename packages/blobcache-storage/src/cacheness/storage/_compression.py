"""Compression codecs: streaming, bounded, and an ``auto`` mode that skips what won't shrink.

Four codecs turn the bytes a handler produces into the bytes a blob holds:

========== ===================================================================
``none``   stored as is (numpy can then memory-map the blob)
``zstd``   Zstandard frames (``zstandard``), level 1-22 (default 3), streaming
``gzip``   a gzip member (``zlib``), level 1-9 (default 6), for portability
``blosc2`` a sequence of Blosc2 chunks (inner codec, clevel, shuffle, threads),
           made for arrays: shuffling by element size is what makes numbers shrink
========== ===================================================================

Compression streams: :func:`open_compressor` wraps a write-only sink and
:func:`open_decompressor` wraps a readable source, so multi-GB objects never sit in
memory twice. :func:`compress` and :func:`decompress` are the one-shot forms.

**Decompression bombs.** Every decoder is told the ``raw_size`` recorded when the bytes
were written and never produces more: a stream that would decode to more (a zstd bomb,
a forged Blosc2 chunk header) or to less (truncated bytes) fails with
:class:`~cacheness.storage.errors.IntegrityError`, reading and allocating in bounded
steps, never the bomb's claimed size.

**Auto.** :func:`resolve_codec` with ``"auto"`` stores payloads below
``auto_min_size`` uncompressed (compressing 200 bytes costs more than it saves) and,
above it, compresses a small sample; if the sample does not shrink by
``auto_min_saving`` the data is stored uncompressed. The chosen codec is what the
handler records, so loading never guesses.

Example:
    >>> from cacheness.storage._compression import resolve_codec
    >>> from cacheness.storage import compress, decompress
    >>> data = b"abc" * 10_000
    >>> codec = resolve_codec("auto", data, len(data))
    >>> codec
    'zstd'
    >>> stored = compress(data, codec)
    >>> len(stored) < len(data)
    True
    >>> decompress(stored, codec, raw_size=len(data)) == data
    True
    >>> decompress(stored, codec, raw_size=100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.IntegrityError: zstd ...more than the recorded 100...
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Final, cast

import msgspec

from cacheness.storage._optional import import_optional
from cacheness.storage._streams import read_upto
from cacheness.storage._validate import check_choice, check_int
from cacheness.storage.errors import CompressionError, ConfigError, IntegrityError

if TYPE_CHECKING:
    from cacheness.storage._hashing import BytesLike


log = logging.getLogger(__name__)

CODECS: Final[tuple[str, ...]] = ("none", "zstd", "gzip", "blosc2")
"""Names of the stream codecs (``"auto"`` is a choice among them, never stored)."""

BLOSC2_CODECS: Final[tuple[str, ...]] = ("lz4", "lz4hc", "zstd", "zlib", "blosclz")
"""Inner codecs Blosc2 can use."""

BLOSC2_SHUFFLES: Final[tuple[str, ...]] = ("auto", "noshuffle", "shuffle", "bitshuffle")
"""Blosc2 pre-filters: the data's own choice, none, byte shuffle, bit shuffle (by element
size). ``auto`` is bit shuffle for Arrow tables (their narrow integers, codes and
bitmaps shrink further, and faster) and byte shuffle for everything else."""

_ZSTD_LEVELS = range(-7, 23)
_GZIP_LEVELS = range(10)
_DEFAULT_LEVEL = {"zstd": 3, "gzip": 6}
_ZSTD_MAX_WINDOW = 1 << 27  # libzstd's own default limit, made explicit: 128 MiB
_ZSTD_THREADS_FROM = 4 << 20  # below this, zstd worker threads cost more than they save
_ZSTD_POOL_SIZE = 4  # finished single-threaded contexts kept per thread and level
_BLOSC2_MAX_CHUNK = 1 << 30  # Blosc2 buffers must stay below 2 GiB
_BLOSC2_DIRECT = 256 << 10  # writes this large become chunks of their own, uncopied
_BLOSC2_OVERHEAD = 64  # a Blosc2 chunk is at most its data plus a small header
_READ_BLOCK = 1 << 20
_LEN = 4  # bytes of the little-endian length prefix of a Blosc2 chunk
_BLOSC2_HEADER = 32  # the extended header of a Blosc2 chunk; the block offsets follow
_BLOSC_MEMCPYED = 0x02  # header flags: the data is stored uncompressed, in one piece
_BLOSC2_USEDICT = 0x01  # Blosc2 flags (byte 31): a dictionary precedes the blocks
_BLOSC2_SPECIAL_MASK = 0x70  # Blosc2 flags: a run of zeros, NaNs or uninitialized values


def default_threads() -> int:
    """Return the number of CPU cores this process may use (at least 1).

    Example:
        >>> default_threads() >= 1
        True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class CodecSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the codecs compress, and how ``auto`` decides.

    Attributes:
        level: zstd (-7..22, default 3) or gzip (0..9, default 6) level; None for
            the codec's default. Blosc2 uses ``blosc2_clevel`` instead.
        blosc2_codec: Blosc2's inner codec, one of :data:`BLOSC2_CODECS`.
        blosc2_clevel: Blosc2 level, 0..9.
        blosc2_shuffle: Blosc2 pre-filter, one of :data:`BLOSC2_SHUFFLES` (``auto``:
            bit shuffle for Arrow tables, byte shuffle otherwise).
        nthreads: threads for Blosc2 and for large zstd streams; None uses every
            core this process may run on.
        chunk_size: bytes per Blosc2 chunk (streaming unit; at most 1 GiB).
        auto_min_size: ``auto`` stores payloads smaller than this uncompressed.
        auto_sample_size: bytes ``auto`` compresses to decide (a payload of up to
            twice this size is compressed whole, once, and decided on its real ratio).
        auto_min_saving: ``auto`` compresses only if the sample shrinks by at least
            this fraction (0.1 = 10 %).

    Raises:
        ConfigError: a value is out of range or unknown (the message says which).

    Example:
        >>> CodecSettings(blosc2_clevel=9).blosc2_clevel
        9
        >>> CodecSettings(blosc2_shuffle="shufle")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: blosc2_shuffle must be one of auto, noshuffle, ...
    """

    level: int | None = None
    blosc2_codec: str = "lz4"
    blosc2_clevel: int = 5
    blosc2_shuffle: str = "auto"
    nthreads: int | None = None
    chunk_size: int = 16 << 20
    auto_min_size: int = 512
    auto_sample_size: int = 64 << 10
    auto_min_saving: float = 0.1

    def __post_init__(self) -> None:
        check_choice("blosc2_codec", self.blosc2_codec, BLOSC2_CODECS)
        check_choice("blosc2_shuffle", self.blosc2_shuffle, BLOSC2_SHUFFLES)
        check_int("blosc2_clevel", self.blosc2_clevel, 0, 9)
        if self.level is not None:
            check_int("level", self.level, _ZSTD_LEVELS.start, _ZSTD_LEVELS.stop - 1)
        if self.nthreads is not None:
            check_int("nthreads", self.nthreads, 1, 1024)
        check_int("chunk_size", self.chunk_size, 64, _BLOSC2_MAX_CHUNK)
        check_int("auto_min_size", self.auto_min_size, 0, 1 << 62)
        check_int("auto_sample_size", self.auto_sample_size, 64, 1 << 30)
        if not 0.0 <= self.auto_min_saving < 1.0:
            raise ConfigError(
                f"auto_min_saving must be a fraction in [0, 1), got {self.auto_min_saving!r}"
            )

    @property
    def threads(self) -> int:
        """``nthreads``, or every usable core when it is None."""
        return self.nthreads or default_threads()

    def level_for(self, codec: str) -> int:
        """Return the level ``codec`` uses (``level`` or the codec's default).

        Raises:
            ConfigError: ``level`` is out of the codec's range.
        """
        if codec == "blosc2":
            return self.blosc2_clevel
        level = _DEFAULT_LEVEL.get(codec, 0) if self.level is None else self.level
        if codec == "gzip" and level not in _GZIP_LEVELS:
            raise ConfigError(f"gzip levels are 0..9, got level={level}")
        return level


DEFAULT_SETTINGS: Final = CodecSettings()
"""The settings used when none are given."""


def check_codec(codec: str, *, allow_auto: bool = False) -> str:
    """Return ``codec`` if it names a stream codec (or ``"auto"`` when allowed).

    Raises:
        ConfigError: unknown codec name; the message lists the known ones.
    """
    if codec in CODECS or (allow_auto and codec == "auto"):
        return codec
    known = ("auto", *CODECS) if allow_auto else CODECS
    raise ConfigError(f"unknown compression codec {codec!r}; known: {', '.join(known)}")


# --------------------------------------------------------------------------- auto


def sample_of(parts: Sequence[BytesLike], size: int) -> bytes:
    """Return up to ``size`` bytes sampled from the start, middle and end of ``parts``.

    ``parts`` are read as one logical byte string (e.g. a pickle and its out-of-band
    buffers). Three windows catch data whose head differs from its body (headers,
    padding) without reading everything.

    Example:
        >>> sample_of([b"aaaa", b"bbbb", b"cccc"], 6)
        b'aabbcc'
        >>> sample_of([b"abc"], 100)
        b'abc'
    """
    views = [memoryview(part).cast("B") for part in parts]
    total = sum(v.nbytes for v in views)
    if total <= size:
        return b"".join(views)
    window = size // 3
    starts = (0, (total - window) // 2, total - (size - 2 * window))
    lengths = (window, window, size - 2 * window)
    out = bytearray()
    for start, length in zip(starts, lengths, strict=True):
        out += _slice_parts(views, start, length)
    return bytes(out)


def _slice_parts(views: Sequence[memoryview], start: int, length: int) -> bytes:
    out = bytearray()
    offset = 0
    for view in views:
        end = offset + view.nbytes
        if end > start and len(out) < length:
            lo = max(0, start - offset)
            out += view[lo : lo + length - len(out)]
        offset = end
    return bytes(out)


def resolve_codec(
    codec: str,
    sample: BytesLike,
    total_size: int,
    *,
    default: str = "zstd",
    settings: CodecSettings = DEFAULT_SETTINGS,
    typesize: int = 1,
) -> str:
    """Return the codec to store with: ``codec`` itself, or the ``auto`` decision.

    Args:
        codec: a name from :data:`CODECS`, or ``"auto"``.
        sample: some of the bytes to store (see :func:`sample_of`); only read for auto.
        total_size: how many bytes will be stored in all.
        default: the codec auto picks when compression pays (``"zstd"`` for bytes,
            ``"blosc2"`` for arrays).
        settings: levels and the auto thresholds.
        typesize: element size, for Blosc2 shuffling.

    Returns:
        ``default`` or ``"none"`` for auto; ``codec`` otherwise.

    Raises:
        ConfigError: unknown codec name.

    Example:
        >>> import os
        >>> resolve_codec("auto", b"x" * 100, 100)  # below auto_min_size
        'none'
        >>> noise = os.urandom(100_000)
        >>> resolve_codec("auto", noise, len(noise))
        'none'
        >>> resolve_codec("gzip", noise, len(noise))
        'gzip'
    """
    check_codec(codec, allow_auto=True)
    if codec != "auto":
        return codec
    check_codec(default)
    if default == "none" or total_size < max(settings.auto_min_size, 1):
        return "none"
    data = memoryview(sample).cast("B")[: settings.auto_sample_size]
    if not data.nbytes:
        return "none"
    compressed = compress(data, default, settings, typesize=typesize)
    saving = 1.0 - len(compressed) / data.nbytes
    return default if saving >= settings.auto_min_saving else "none"


# --------------------------------------------------------------------------- writers


class Compressor(ABC):
    """A write-only stream that compresses into a sink (close it to finish the stream).

    Get one from :func:`open_compressor`. ``raw_size`` counts bytes written in,
    ``stored_size`` bytes passed to the sink so far.
    """

    codec: ClassVar[str]

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.raw_size = 0
        self.stored_size = 0
        self.closed = False

    def write(self, data: BytesLike) -> int:
        """Compress ``data`` (any buffer) into the sink; return its length in bytes.

        Raises:
            CompressionError: the codec failed.
            ValueError: the compressor is closed.
        """
        if self.closed:
            raise ValueError("write to a closed compressor")
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        size = len(view)
        if size:
            self._write(view)
            self.raw_size += size
        return size

    def close(self) -> None:
        """Finish the stream (writes trailers, flushes buffered chunks). Idempotent."""
        if not self.closed:
            self.closed = True
            self._finish()

    def writable(self) -> bool:
        """Always True (file-object protocol)."""
        return True

    def flush(self) -> None:
        """Nothing to do: buffered data is written when the stream is closed."""
        return

    def tell(self) -> int:
        """Bytes written in so far (what a file would report; the sink is not asked)."""
        return self.raw_size

    def __enter__(self) -> Compressor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.closed = True  # the sink's owner discards it; nothing more to write

    def _emit(self, data: BytesLike) -> None:
        if len(data):
            self._sink.write(data)
            self.stored_size += len(data)

    @abstractmethod
    def _write(self, data: BytesLike) -> None: ...

    @abstractmethod
    def _finish(self) -> None: ...


class _PlainWriter(Compressor):
    codec = "none"

    def _write(self, data: BytesLike) -> None:
        self._emit(data)

    def _finish(self) -> None:
        return


class _ZstdWriter(Compressor):
    """One zstd frame, started at the first write: no data, no bytes (nothing to cut)."""

    codec = "zstd"

    def __init__(
        self, sink: BinaryIO, settings: CodecSettings, size_hint: int | None = None
    ) -> None:
        super().__init__(sink)
        # Large streams always use zstd's multi-threaded mode, even with one thread:
        # its frames are the same for any number of workers (>= 1) but differ from
        # the single-threaded mode's, and identical data must give identical bytes
        # whatever ``nthreads`` is (content addressing depends on it).
        large = (size_hint or 0) >= _ZSTD_THREADS_FROM
        self._level = settings.level_for("zstd")
        self._threads = settings.threads if large else 0
        self._writer: Any = None
        self._cctx: Any = None

    def _write(self, data: BytesLike) -> None:
        zstd = _zstandard()
        try:
            if self._writer is None:
                if self._threads:
                    self._cctx = zstd.ZstdCompressor(level=self._level, threads=self._threads)
                else:
                    self._cctx = _borrow_zstd(self._level)
                self._writer = self._cctx.stream_writer(_SinkAdapter(self), closefd=False)
            self._writer.write(data)
        except zstd.ZstdError as exc:
            raise CompressionError(f"zstd compression failed: {exc}") from exc

    def _finish(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.close()
        except _zstandard().ZstdError as exc:
            raise CompressionError(f"zstd compression failed: {exc}") from exc
        if not self._threads:  # the frame is complete: the context can start another
            _give_back_zstd(self._level, self._cctx)


class _GzipWriter(Compressor):
    codec = "gzip"

    def __init__(self, sink: BinaryIO, settings: CodecSettings) -> None:
        super().__init__(sink)
        self._z = zlib.compressobj(settings.level_for("gzip"), zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def _write(self, data: BytesLike) -> None:
        self._emit(self._z.compress(data))

    def _finish(self) -> None:
        self._emit(self._z.flush())


class _Blosc2Writer(Compressor):
    """Blosc2 chunks, each prefixed with its stored length (4 bytes, little-endian).

    A chunk holds at most ``chunk_size`` bytes. A write of 256 KiB or more (or of a whole
    chunk) is cut into chunks where it lies; smaller writes are gathered into chunks
    first. The layout depends only on the sequence of writes, so identical data written
    the same way gives identical bytes.
    """

    codec = "blosc2"

    def __init__(self, sink: BinaryIO, settings: CodecSettings, typesize: int) -> None:
        super().__init__(sink)
        blosc2 = _blosc2()
        typesize = min(max(int(typesize), 1), 255)
        chunk = max(settings.chunk_size - settings.chunk_size % typesize, typesize)
        self._chunk = chunk
        self._direct = min(chunk, _BLOSC2_DIRECT)
        self._params: dict[str, Any] = {
            "codec": getattr(blosc2.Codec, settings.blosc2_codec.upper()),
            "clevel": settings.blosc2_clevel,
            "filters": [_blosc2_filter(settings.blosc2_shuffle)],
            "typesize": typesize,
            "nthreads": settings.threads,
        }
        self._pending = bytearray()

    def _write(self, data: BytesLike) -> None:
        view = memoryview(data)
        if len(view) >= self._direct:
            # Compressed where it lies (an Arrow column buffer, a slab of an array):
            # gathering it with small writes first would copy every byte once more.
            self._flush_pending()
            for start in range(0, len(view), self._chunk):
                self._compress(view[start : start + self._chunk])
            return
        take = min(self._chunk - len(self._pending), len(view))
        self._pending += view[:take]
        if len(self._pending) == self._chunk:
            self._flush_pending()
            self._pending += view[take:]

    def _flush_pending(self) -> None:
        if self._pending:
            self._compress(self._pending)
            self._pending = bytearray()

    def _finish(self) -> None:
        self._flush_pending()

    def _compress(self, chunk: BytesLike) -> None:
        blosc2 = _blosc2()
        try:
            stored = blosc2.compress2(chunk, **self._params)
            pieces = _blosc2_in_block_order(stored) if self._params["nthreads"] > 1 else None
            if pieces is None and self._params["nthreads"] > 1:
                # A layout the reordering does not know: compress it on one thread.
                stored = blosc2.compress2(chunk, **{**self._params, "nthreads": 1})
        except (RuntimeError, ValueError, TypeError) as exc:
            raise CompressionError(f"blosc2 compression failed: {exc}") from exc
        self._emit(len(stored).to_bytes(_LEN, "little"))
        for piece in pieces or (stored,):
            self._emit(piece)


def _blosc2_in_block_order(stored: bytes) -> list[memoryview] | None:
    """The pieces of a Blosc2 chunk laid out in block order; None for an unknown layout.

    Blosc2 compresses the blocks of a chunk independently, on several threads, and
    writes each one where the output ends when its thread finishes: the blocks'
    bytes are identical whatever the thread count, but their order (and the offsets
    table recording it) follows the threads' timing. Rewriting the offsets and putting
    the blocks in block order gives exactly the chunk one thread writes, so identical
    data gets identical stored bytes (content addressing depends on it).

    Chunks without an offsets table (stored uncompressed, or a run of one special
    value) are returned as they are: one piece.
    """
    view = memoryview(stored)
    if len(view) < _BLOSC2_HEADER:
        return None
    flags, nbytes, blocksize, cbytes = view[2], *struct.unpack_from("<iii", view, 4)
    if cbytes != len(view) or nbytes < 0 or blocksize <= 0:
        return None
    if flags & _BLOSC_MEMCPYED or view[31] & _BLOSC2_SPECIAL_MASK or cbytes == _BLOSC2_HEADER:
        return [view]  # written in one piece, in order
    if view[31] & _BLOSC2_USEDICT:
        return None
    nblocks = -(-nbytes // blocksize)
    body = _BLOSC2_HEADER + 4 * nblocks
    if not nblocks or body > cbytes:
        return None
    starts = struct.unpack_from(f"<{nblocks}i", view, _BLOSC2_HEADER)
    ordered = sorted(starts)
    if ordered[0] != body or len(set(ordered)) != nblocks:
        return None
    if list(starts) == ordered:
        return [view]  # already in block order
    end_of = dict(zip(ordered, [*ordered[1:], cbytes], strict=True))
    offsets, position = [], body
    for start in starts:
        offsets.append(position)
        position += end_of[start] - start
    table = struct.pack(f"<{nblocks}i", *offsets)
    return [view[:_BLOSC2_HEADER], memoryview(table)] + [
        view[start : end_of[start]] for start in starts
    ]


class _SinkAdapter:
    """What zstandard writes to: forwards to the compressor's sink and counts."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Compressor) -> None:
        self._owner = owner

    def write(self, data: BytesLike) -> int:
        self._owner._emit(data)
        return len(data)

    def flush(self) -> None:
        return


def open_compressor(
    sink: BinaryIO,
    codec: str,
    settings: CodecSettings = DEFAULT_SETTINGS,
    *,
    typesize: int = 1,
    size_hint: int | None = None,
) -> Compressor:
    """Return a :class:`Compressor` writing ``codec``-compressed bytes to ``sink``.

    The sink only needs ``write``: it is never sought, told or closed. Close the
    compressor (or leave its ``with`` block) to finish the stream.

    Args:
        sink: where the stored bytes go (a blob writer, a file, a ``BytesIO``).
        codec: one of :data:`CODECS` (resolve ``"auto"`` first with :func:`resolve_codec`).
        settings: levels, Blosc2 parameters and threads.
        typesize: element size of the data, for Blosc2 shuffling.
        size_hint: expected raw size, if known (large zstd streams then use threads).

    Raises:
        ConfigError: unknown codec.
        MissingDependencyError: ``blosc2`` is not installed.

    Example:
        >>> import io
        >>> out = io.BytesIO()
        >>> with open_compressor(out, "gzip") as writer:
        ...     _ = writer.write(b"hello " * 100)
        >>> writer.raw_size, writer.stored_size == len(out.getvalue()) < 600
        (600, True)
    """
    check_codec(codec)
    if codec == "zstd":
        return _ZstdWriter(sink, settings, size_hint)
    if codec == "gzip":
        return _GzipWriter(sink, settings)
    if codec == "blosc2":
        return _Blosc2Writer(sink, settings, typesize)
    return _PlainWriter(sink)


# --------------------------------------------------------------------------- readers


class Decompressor(io.RawIOBase):
    """A readable stream of decompressed bytes, capped at the recorded ``raw_size``.

    Get one from :func:`open_decompressor`. Reads never return more than ``raw_size``
    bytes in all; :meth:`finish` (called by :meth:`read_all` and :meth:`readinto_exact`)
    checks that the stored stream decodes to exactly ``raw_size`` bytes and then ends.

    Raises (from every read):
        IntegrityError: the stream decodes to more or fewer bytes than recorded, or
            is not valid for its codec.
    """

    codec: ClassVar[str]

    def __init__(self, source: BinaryIO, raw_size: int) -> None:
        super().__init__()
        if not isinstance(raw_size, int) or raw_size < 0:
            raise IntegrityError(f"invalid recorded raw size {raw_size!r}")
        self._source = source
        self.raw_size = raw_size
        self.produced = 0

    def readable(self) -> bool:
        """Always True."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with up to ``len(buffer)`` decompressed bytes; 0 at the end.

        Raises:
            IntegrityError: more or fewer bytes than recorded, or corrupt data.
        """
        view = memoryview(buffer).cast("B")
        remaining = self.raw_size - self.produced
        if not view.nbytes:
            return 0
        if remaining == 0:
            self.finish()
            return 0
        try:
            got = self._readinto(view[:remaining])
        except IntegrityError:
            raise
        except (OSError, ValueError, RuntimeError, zlib.error) as exc:
            raise IntegrityError(f"{self.codec} stream is corrupt: {exc}") from exc
        if got == 0:
            raise IntegrityError(
                f"{self.codec} stream ends after {self.produced} of the recorded "
                f"{self.raw_size} bytes: the stored bytes are truncated"
            )
        self.produced += got
        return got

    def readinto_exact(self, buffer: Any) -> None:
        """Fill all of ``buffer`` (which must hold the rest of the stream), then :meth:`finish`.

        Raises:
            IntegrityError: the stream holds more or fewer bytes than ``buffer``.
        """
        view = memoryview(buffer).cast("B")
        if view.nbytes != self.raw_size - self.produced:
            raise IntegrityError(
                f"the reader expects {view.nbytes} bytes but {self.raw_size - self.produced} "
                "remain in the recorded size"
            )
        self._fill(view)
        self.finish()

    def read_exact(self, size: int) -> bytearray:
        """Return the next ``size`` bytes (the stream may continue).

        Raises:
            IntegrityError: fewer than ``size`` bytes remain of the recorded size.
        """
        if not 0 <= size <= self.raw_size - self.produced:
            raise IntegrityError(
                f"a field claims {size} bytes but only {self.raw_size - self.produced} remain "
                "of the recorded size: corrupt stream"
            )
        out = bytearray(size)
        self._fill(memoryview(out))
        return out

    def _fill(self, view: memoryview) -> None:
        pos = 0
        while pos < view.nbytes:
            pos += self.readinto(view[pos:])

    def read_all(self) -> bytearray:
        """Return the rest of the stream (``raw_size`` bytes in all) and :meth:`finish`."""
        out = bytearray(self.raw_size - self.produced)
        self.readinto_exact(out)
        return out

    def finish(self) -> None:
        """Check that exactly ``raw_size`` bytes were produced and the stream has ended.

        Raises:
            IntegrityError: bytes are missing, or the stream decodes to more (a bomb)
                or has trailing bytes.
        """
        if self.produced < self.raw_size:
            raise IntegrityError(
                f"{self.codec} stream was read only to {self.produced} of the recorded "
                f"{self.raw_size} bytes"
            )
        try:
            extra = self._has_more()
        except (OSError, ValueError, RuntimeError, zlib.error) as exc:
            raise IntegrityError(f"{self.codec} stream is corrupt: {exc}") from exc
        if extra:
            raise IntegrityError(
                f"{self.codec} stream decodes to more than the recorded {self.raw_size} "
                "bytes (corrupt entry or decompression bomb); refusing to read further"
            )

    @abstractmethod
    def _readinto(self, view: memoryview) -> int: ...

    @abstractmethod
    def _has_more(self) -> bool: ...


class _PlainReader(Decompressor):
    codec = "none"

    def _readinto(self, view: memoryview) -> int:
        readinto = getattr(self._source, "readinto", None)
        if readinto is not None:
            return readinto(view) or 0
        data = self._source.read(view.nbytes)
        view[: len(data)] = data
        return len(data)

    def _has_more(self) -> bool:
        return bool(self._source.read(1))


class _ZstdReader(Decompressor):
    codec = "zstd"

    def __init__(self, source: BinaryIO, raw_size: int) -> None:
        super().__init__(source, raw_size)
        self._dctx = _borrow_zstd(None)
        self._reader: Any = self._dctx.stream_reader(source, closefd=False, read_across_frames=True)

    def _readinto(self, view: memoryview) -> int:
        try:
            return int(self._reader.readinto(view))
        except _zstandard().ZstdError as exc:
            raise IntegrityError(f"zstd stream is corrupt: {exc}") from exc

    def _has_more(self) -> bool:
        if self._reader is None:  # finished before; the context went back to the pool
            return False
        try:
            more = bool(self._reader.read(1)) or bool(self._source.read(1))
        except _zstandard().ZstdError as exc:
            raise IntegrityError(f"zstd stream is corrupt: {exc}") from exc
        if not more:  # the whole frame was read and checked: the context can be reused
            self._reader = None
            _give_back_zstd(None, self._dctx)
        return more


class _GzipReader(Decompressor):
    codec = "gzip"

    def __init__(self, source: BinaryIO, raw_size: int) -> None:
        super().__init__(source, raw_size)
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""

    def _readinto(self, view: memoryview) -> int:
        while True:
            if self._z.eof:
                return 0
            if not self._pending:
                self._pending = self._source.read(_READ_BLOCK)
                if not self._pending:
                    return 0
            out = self._z.decompress(self._pending, view.nbytes)
            self._pending = self._z.unconsumed_tail
            if out:
                view[: len(out)] = out
                return len(out)

    def _has_more(self) -> bool:
        while not self._z.eof:
            if not self._pending:
                self._pending = self._source.read(_READ_BLOCK)
                if not self._pending:
                    return False  # truncated trailer: caught as an incomplete stream below
            if self._z.decompress(self._pending, 1):
                return True
            self._pending = self._z.unconsumed_tail
        return bool(self._z.unused_data) or bool(self._source.read(1))

    def finish(self) -> None:
        """Also require the gzip trailer (CRC and length) to be present and valid."""
        super().finish()
        if not self._z.eof:
            raise IntegrityError("gzip stream ends before its trailer: the bytes are truncated")


class _Blosc2Reader(Decompressor):
    codec = "blosc2"

    def __init__(self, source: BinaryIO, raw_size: int, nthreads: int) -> None:
        super().__init__(source, raw_size)
        self._blosc2 = _blosc2()
        self._nthreads = nthreads
        self._chunk = memoryview(b"")  # decompressed bytes not yet handed out

    def _readinto(self, view: memoryview) -> int:
        if not self._chunk:
            stored = self._next_chunk()
            if stored is None:
                return 0
            nbytes = self._chunk_size(stored)
            if nbytes <= view.nbytes:  # straight into the caller's buffer: no copy
                self._decompress(stored, view[:nbytes])
                return nbytes
            out = bytearray(nbytes)
            self._decompress(stored, out)
            self._chunk = memoryview(out)
        take = min(view.nbytes, self._chunk.nbytes)
        view[:take] = self._chunk[:take]
        self._chunk = self._chunk[take:]
        return take

    def _next_chunk(self) -> BytesLike | None:
        header = read_upto(self._source, _LEN)
        if not header:
            return None
        if len(header) < _LEN:
            raise IntegrityError("blosc2 stream ends inside a chunk header: truncated")
        length = int.from_bytes(header, "little")
        limit = self.raw_size - self.produced + _BLOSC2_OVERHEAD
        if length > limit:
            raise IntegrityError(
                f"blosc2 chunk claims {length} stored bytes, more than the {limit} the "
                "recorded raw size allows (corrupt or forged stream)"
            )
        read_view = getattr(self._source, "read_view", None)  # a MemoryReader: no copy
        stored = read_view(length) if read_view is not None else read_upto(self._source, length)
        if len(stored) < length:
            raise IntegrityError("blosc2 stream ends inside a chunk: the bytes are truncated")
        return stored

    def _chunk_size(self, stored: BytesLike) -> int:
        try:
            nbytes, cbytes, _ = self._blosc2.get_cbuffer_sizes(stored)
        except (RuntimeError, ValueError) as exc:
            raise IntegrityError(f"blosc2 chunk header is corrupt: {exc}") from exc
        nbytes, cbytes = int(nbytes), int(cbytes)
        remaining = self.raw_size - self.produced
        if cbytes != len(stored) or nbytes > remaining or nbytes <= 0:
            raise IntegrityError(
                f"blosc2 chunk header claims {nbytes} bytes ({cbytes} stored) but "
                f"{remaining} remain of the recorded raw size and the chunk holds "
                f"{len(stored)}: corrupt or forged stream"
            )
        return nbytes

    def _decompress(self, stored: BytesLike, dst: Any) -> None:
        try:
            self._blosc2.decompress2(stored, dst=dst, nthreads=self._nthreads)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise IntegrityError(f"blosc2 chunk is corrupt: {exc}") from exc

    def _has_more(self) -> bool:
        return bool(self._chunk) or bool(self._source.read(1))


def open_decompressor(
    source: BinaryIO,
    codec: str,
    *,
    raw_size: int,
    settings: CodecSettings = DEFAULT_SETTINGS,
) -> Decompressor:
    """Return a :class:`Decompressor` reading ``codec``-compressed bytes from ``source``.

    Args:
        source: the stored bytes (a blob reader, a file, a ``BytesIO``).
        codec: the codec recorded when the bytes were written.
        raw_size: the decompressed size recorded then; the decoder never exceeds it.
        settings: only ``nthreads`` is used (Blosc2 decompression threads).

    Raises:
        CompressionError: ``codec`` is not one this version knows.
        MissingDependencyError: ``blosc2`` is not installed.
        IntegrityError: ``raw_size`` is not a non-negative integer.

    Example:
        >>> import io
        >>> stored = compress(b"data" * 1000, "zstd")
        >>> open_decompressor(io.BytesIO(stored), "zstd", raw_size=4000).read_all()[:8]
        bytearray(b'datadata')
    """
    if codec not in CODECS:
        raise CompressionError(
            f"the stored bytes use codec {codec!r}, unknown to this version "
            f"(known: {', '.join(CODECS)}); upgrade blobcache-storage to read them"
        )
    if codec == "zstd":
        return _ZstdReader(source, raw_size)
    if codec == "gzip":
        return _GzipReader(source, raw_size)
    if codec == "blosc2":
        return _Blosc2Reader(source, raw_size, settings.threads)
    return _PlainReader(source, raw_size)


# --------------------------------------------------------------------------- one-shot


def compress(
    data: BytesLike,
    codec: str,
    settings: CodecSettings = DEFAULT_SETTINGS,
    *,
    typesize: int = 1,
) -> bytes:
    """Return ``data`` compressed with ``codec`` (readable by :func:`open_decompressor`).

    Raises:
        ConfigError: unknown codec.
        CompressionError: the codec failed.

    Example:
        >>> compress(b"abc", "none")
        b'abc'
    """
    if codec == "none" or (not len(data) and codec == "zstd"):
        return bytes(data)
    if codec == "zstd" and len(data) < _ZSTD_THREADS_FROM:
        level = settings.level_for("zstd")
        cctx = _borrow_zstd(level)
        compressed: bytes = cctx.compress(data)
        _give_back_zstd(level, cctx)
        return compressed
    out = io.BytesIO()
    with open_compressor(out, codec, settings, typesize=typesize, size_hint=len(data)) as writer:
        writer.write(data)
    return out.getvalue()


def decompress(
    data: BytesLike,
    codec: str,
    *,
    raw_size: int,
    settings: CodecSettings = DEFAULT_SETTINGS,
) -> bytes:
    """Return ``data`` decompressed; it must decode to exactly ``raw_size`` bytes.

    Raises:
        IntegrityError: the data decodes to more or fewer bytes, or is corrupt.
        CompressionError: unknown codec.

    Example:
        >>> decompress(compress(b"abc" * 99, "gzip"), "gzip", raw_size=297)[:6]
        b'abcabc'
    """
    if codec == "zstd" and raw_size > 0:
        return _zstd_whole(data, raw_size)
    reader = open_decompressor(io.BytesIO(data), codec, raw_size=raw_size, settings=settings)
    return bytes(reader.read_all())


def _zstd_whole(data: BytesLike, raw_size: int) -> bytes:
    """One zstd frame in memory, decoded in one call (a stream reader costs several
    times the decoding of a small payload); exactly ``raw_size`` bytes or an error.

    The output is bounded by ``raw_size`` whatever the frame claims: a frame header
    declaring another size is refused before anything is allocated.
    """
    zstd = _zstandard()
    try:
        declared = zstd.frame_content_size(data)
    except zstd.ZstdError as exc:
        raise IntegrityError(f"zstd stream is corrupt: {exc}") from exc
    if declared >= 0 and declared != zstd.CONTENTSIZE_UNKNOWN and declared != raw_size:
        relation = "more" if declared > raw_size else "fewer"
        raise IntegrityError(
            f"zstd frame declares {declared} bytes, {relation} than the recorded {raw_size} "
            "bytes: corrupt"
        )
    context = _borrow_zstd(None)
    try:
        out = context.decompress(data, max_output_size=raw_size, allow_extra_data=False)
    except zstd.ZstdError as exc:  # the context is not given back after a failure
        raise IntegrityError(f"zstd stream is corrupt or longer than recorded: {exc}") from exc
    _give_back_zstd(None, context)
    if len(out) != raw_size:
        raise IntegrityError(f"zstd stream decodes to {len(out)} bytes, recorded: {raw_size}")
    return cast(bytes, out)


# --------------------------------------------------------------------------- helpers

_local = threading.local()


def _borrow_zstd(level: int | None) -> Any:
    """Take a zstd context from this thread's pool: a single-threaded ``ZstdCompressor``
    of ``level``, or (``level=None``) a ``ZstdDecompressor``.

    A fresh context costs its window and tables (MiBs, zeroed: up to hundreds of
    microseconds, far more than coding a small value), so finished contexts are reused.
    Each is lent to one frame at a time: two streams open on one thread get two
    contexts, and one whose frame was abandoned or failed is never given back.
    """
    free = _zstd_pool(level)
    if free:
        return free.pop()
    zstd = _zstandard()
    if level is None:
        return zstd.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    return zstd.ZstdCompressor(level=level)


def _give_back_zstd(level: int | None, context: Any) -> None:
    """Return a context whose frame is complete to this thread's pool (kept small)."""
    free = _zstd_pool(level)
    if len(free) < _ZSTD_POOL_SIZE:
        free.append(context)


def _zstd_pool(level: int | None) -> list[Any]:
    pools: dict[int | None, list[Any]] | None = getattr(_local, "zstd", None)
    if pools is None:
        pools = _local.zstd = {}
    return pools.setdefault(level, [])


def _zstandard() -> Any:
    import zstandard

    return zstandard


def _blosc2() -> Any:
    return import_optional("blosc2", extra="numpy", purpose="the blosc2 codec")


def _blosc2_filter(shuffle: str) -> Any:
    filters = _blosc2().Filter
    return {
        "auto": filters.SHUFFLE,  # a handler wanting another filter resolves auto itself
        "noshuffle": filters.NOFILTER,
        "shuffle": filters.SHUFFLE,
        "bitshuffle": filters.BITSHUFFLE,
    }[shuffle]
