"""Arrow IPC and Parquet streams shared by the pandas and pyarrow handlers (private).

Codecs of the ``arrow-ipc`` format:

* ``zstd``: Arrow's own buffer compression inside the IPC stream, so any Arrow reader
  opens the blob directly; ``raw_size`` is the table's in-memory size.
* ``none``: a plain IPC stream (memory-mapped on load when the blob is a local file).
* ``blosc2`` and ``gzip``: an uncompressed IPC stream, compressed as a whole by
  :mod:`cacheness.storage._compression` (Blosc2 shuffles 8-byte values: the fastest
  choice for numeric frames); ``raw_size`` is the IPC stream's size and caps decoding.

For ``zstd`` and ``none``, ``details["stream_size"]`` records the stream's length: a
stream cut at a message boundary would otherwise read back as a shorter table without
an error. ``auto`` picks the handler's default (zstd for pyarrow data, Blosc2 for
pandas), or ``none`` for small tables and for tables whose column buffers do not shrink
in a sample.

The ``parquet`` format compresses inside the file with ``zstd`` or ``gzip`` (a request
for ``blosc2`` is stored as ``zstd``); the blob is a standard Parquet file.

Example:
    >>> import io
    >>> import pyarrow as pa
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> from cacheness.storage import FormatInfo
    >>> table = pa.table({"x": list(range(1000))})
    >>> sink = io.BytesIO()
    >>> options = DEFAULT_OPTIONS
    >>> fmt, codec, raw_size, details = write_table(table, sink, options, "arrow-ipc", "zstd")
    >>> fmt, codec, details["stream_size"] == len(sink.getvalue())
    ('arrow-ipc', 'zstd', True)
    >>> stored = io.BytesIO(sink.getvalue())
    >>> info = FormatInfo(handler="arrow", format=fmt, codec=codec, raw_size=raw_size,
    ...                   details=details)
    >>> read_table(stored, info, DEFAULT_OPTIONS).equals(table)
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import msgspec

from cacheness.storage._compression import open_compressor, resolve_codec, sample_of
from cacheness.storage._handlers._common import open_reader
from cacheness.storage._optional import import_optional
from cacheness.storage._streams import CountingSink
from cacheness.storage.errors import IntegrityError, SerializationError

if TYPE_CHECKING:
    from cacheness.storage._handlers.base import FormatInfo, SerializationOptions


FORMATS: Final = ("arrow-ipc", "parquet")
_INNER: Final = ("zstd", "none")  # compression Arrow applies inside the IPC stream
_OUTER_TYPESIZE: Final = 8  # most Arrow buffers hold 8-byte values


def pyarrow(purpose: str, extra: str = "arrow") -> Any:
    """Import pyarrow (with ``pyarrow.ipc`` and ``pyarrow.parquet``) or raise the hint."""
    pa = import_optional("pyarrow", extra=extra, purpose=purpose)
    import_optional("pyarrow.ipc", extra=extra, purpose=purpose)
    import_optional("pyarrow.parquet", extra=extra, purpose=purpose)
    return pa


def _ipc_codec(options: SerializationOptions, default: str, table: Any) -> str:
    """The codec to use: as requested, or for ``auto`` decided from the column buffers."""
    if options.codec != "auto":
        return options.codec
    nbytes = table.nbytes
    if nbytes < options.auto_min_size:
        return "none"
    return resolve_codec(
        "auto",
        sample_of(_sample_buffers(table), options.auto_sample_size),
        nbytes,
        default=default,
        settings=options,
        typesize=_OUTER_TYPESIZE,
    )


def _sample_buffers(table: Any) -> list[Any]:
    """Some of the table's value buffers: the first chunk of each column (a few per column)."""
    buffers = []
    for column in table.columns:
        chunk = column.chunks[0] if hasattr(column, "chunks") and column.num_chunks else column
        buffers += [buffer for buffer in chunk.buffers() if buffer is not None and buffer.size]
    return buffers


def write_table(
    table: Any,
    sink: BinaryIO,
    options: SerializationOptions,
    fmt: str,
    default_codec: str,
) -> tuple[str, str, int, dict[str, Any]]:
    """Write a pyarrow Table (or RecordBatch) as ``fmt``.

    Returns:
        ``(format, codec, raw_size, details)``; ``details`` go into the format info.

    Raises:
        SerializationError: Arrow cannot write the table.
    """
    pa = pyarrow("writing Arrow data")
    try:
        if fmt == "parquet":
            return _write_parquet(pa, table, sink, options)
        return _write_ipc(pa, table, sink, options, default_codec)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise SerializationError(f"Arrow cannot write this data as {fmt}: {exc}") from exc


def _write_ipc(
    pa: Any, table: Any, sink: BinaryIO, options: SerializationOptions, default: str
) -> tuple[str, str, int, dict[str, Any]]:
    codec = _ipc_codec(options, default, table)
    if codec in _INNER:
        level = options.level_for("zstd")
        compression = pa.Codec("zstd", compression_level=level) if codec == "zstd" else None
        counting = CountingSink(sink)
        write_options = pa.ipc.IpcWriteOptions(compression=compression)
        with pa.ipc.new_stream(counting, table.schema, options=write_options) as writer:
            for batch in _batches(pa, table):
                writer.write_batch(batch)
        raw_size = table.nbytes if codec == "zstd" else counting.written
        return "arrow-ipc", codec, raw_size, {"stream_size": counting.written}
    settings = options
    if settings.blosc2_shuffle == "auto":
        # Bit shuffle: for the benchmark frame (int64, float64, int8 codes, timestamps,
        # bits) it compresses 20 % faster than byte shuffle, to 0.24 of the stream
        # instead of 0.41; decompression costs a little more (see docs/speed.md).
        settings = msgspec.structs.replace(settings, blosc2_shuffle="bitshuffle")
    with (
        open_compressor(
            sink, codec, settings, typesize=_OUTER_TYPESIZE, size_hint=table.nbytes
        ) as compressor,
        pa.ipc.new_stream(compressor, table.schema) as writer,
    ):
        for batch in _batches(pa, table):
            writer.write_batch(batch)
    return "arrow-ipc", codec, compressor.raw_size, {}


def _batches(pa: Any, table: Any) -> list[Any]:
    """The record batches to write; at least one, so dictionaries (categories) survive."""
    if isinstance(table, pa.RecordBatch):
        return [table]
    batches = list(table.to_batches())
    if batches:
        return batches
    arrays = [c.chunks[0] if c.num_chunks else pa.array([], type=c.type) for c in table.columns]
    return [pa.RecordBatch.from_arrays(arrays, schema=table.schema)]


def _write_parquet(
    pa: Any, table: Any, sink: BinaryIO, options: SerializationOptions
) -> tuple[str, str, int, dict[str, Any]]:
    codec = options.codec
    if codec in ("auto", "blosc2"):
        codec = "zstd"
    level = options.level_for(codec) if codec != "none" else None
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    pa.parquet.write_table(
        table,
        CountingSink(sink),
        compression=codec,
        compression_level=level,
        use_compliant_nested_type=False,  # keep list<item: ...> field names as they were
    )
    return "parquet", codec, table.nbytes, {}


def read_table(
    source: BinaryIO,
    info: FormatInfo,
    options: SerializationOptions,
    *,
    local_path: Path | None = None,
    purpose: str = "reading Arrow data",
    extra: str = "arrow",
) -> Any:
    """Read what :func:`write_table` wrote; return a pyarrow Table.

    Raises:
        IntegrityError: the stored bytes do not match the recorded size.
        SerializationError: unknown format, or Arrow cannot read the bytes.
    """
    return read_table_and_buffer(
        source, info, options, local_path=local_path, purpose=purpose, extra=extra
    )[0]


def read_table_and_buffer(
    source: BinaryIO,
    info: FormatInfo,
    options: SerializationOptions,
    *,
    local_path: Path | None = None,
    purpose: str = "reading Arrow data",
    extra: str = "arrow",
) -> tuple[Any, Any]:
    """:func:`read_table`, and the mutable Arrow buffer the table's columns were read
    from in place when this read decoded the stream into one (Blosc2, gzip), else None.

    That buffer was allocated by this read and nothing else refers to it: its memory
    may be handed out writable.
    """
    pa = pyarrow(purpose, extra)
    fmt, codec, raw_size, details = info.format, info.codec, info.raw_size, info.details
    if fmt not in FORMATS:
        raise SerializationError(f"cannot read Arrow data stored as format {fmt!r}")
    try:
        if fmt == "parquet":
            if local_path is not None:
                return pa.parquet.read_table(str(local_path), memory_map=True), None
            return pa.parquet.read_table(pa.BufferReader(pa.py_buffer(source.read()))), None
        if codec in _INNER:
            expected = details.get("stream_size")
            if local_path is not None:
                check_stream_size(Path(local_path).stat().st_size, expected, fmt)
                # Buffers may point into the map: leave it open for as long as they live.
                return pa.ipc.open_stream(pa.memory_map(str(local_path))).read_all(), None
            data = source.read()
            check_stream_size(len(data), expected, fmt)
            return pa.ipc.open_stream(pa.py_buffer(data)).read_all(), None
        # Arrow's allocator: no zero-filling of memory about to be overwritten, and the
        # columns are read in place from it (64-byte aligned).
        decoded = pa.allocate_buffer(raw_size)
        open_reader(source, codec, raw_size, options).readinto_exact(decoded)
        return pa.ipc.open_stream(decoded).read_all(), decoded
    except IntegrityError:
        raise
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise SerializationError(
            f"the stored {fmt} bytes cannot be read ({type(exc).__name__}: {exc}); the blob "
            "is corrupt or truncated"
        ) from exc


def check_stream_size(actual: int, expected: int | None, fmt: str) -> None:
    """Raise :class:`IntegrityError` unless ``actual == expected`` (None: not recorded)."""
    if expected is not None and actual != expected:
        raise IntegrityError(
            f"stored {fmt} stream holds {actual} bytes, {expected} were written: the blob "
            "is truncated or has extra bytes"
        )
