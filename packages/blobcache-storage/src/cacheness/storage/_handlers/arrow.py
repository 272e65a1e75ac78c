"""The ``arrow`` handler: pyarrow ``Table`` and ``RecordBatch`` as Arrow IPC with zstd.

The blob is a standard Arrow IPC stream whose buffers Arrow compressed with zstd, so
any Arrow implementation reads it as is. Schema, field and schema metadata, and the
table's chunk layout come back unchanged. ``codec="none"`` stores an uncompressed
stream (memory-mapped on load from a local file); ``blosc2``/``gzip`` compress the
stream as a whole; ``dataframe_format="parquet"`` writes Parquet instead.

Example:
    >>> import io
    >>> import pyarrow as pa
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> handler = ArrowHandler()
    >>> table = pa.table({"id": range(1000), "label": ["a", "b", None, "d"] * 250})
    >>> sink = io.BytesIO()
    >>> info = handler.dump(table, sink, DEFAULT_OPTIONS)
    >>> info.format, info.codec, info.details["kind"]
    ('arrow-ipc', 'zstd', 'Table')
    >>> handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS).equals(table)
    True
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, BinaryIO

from cacheness.storage._handlers._arrow import read_table, write_table
from cacheness.storage._handlers._common import is_exact_type
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage.errors import SerializationError


class ArrowHandler(Handler):
    """Stores ``pyarrow.Table`` and ``pyarrow.RecordBatch``.

    ``details["kind"]`` is ``"Table"`` or ``"RecordBatch"``.

    Example:
        >>> import pyarrow as pa
        >>> ArrowHandler().can_handle(pa.table({"a": [1]})), ArrowHandler().can_handle({})
        (True, False)
    """

    name = "arrow"

    def can_handle(self, obj: Any) -> bool:
        """True for a pyarrow Table or RecordBatch; never imports pyarrow."""
        return is_exact_type(obj, "pyarrow", "Table", "RecordBatch")

    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Write ``obj`` as Arrow IPC (zstd inside) or Parquet.

        Raises:
            SerializationError: Arrow failed to write it.
        """
        pa = sys.modules["pyarrow"]
        kind = "RecordBatch" if type(obj) is pa.RecordBatch else "Table"
        fmt = "parquet" if options.dataframe_format == "parquet" else "arrow-ipc"
        fmt, codec, raw_size, extra = write_table(obj, sink, options, fmt, "zstd")
        return self.format_info(fmt, codec, raw_size, kind=kind, **extra)

    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Return the Table or RecordBatch.

        Raises:
            IntegrityError: the stored bytes do not match the recorded size.
            SerializationError: the bytes cannot be read as Arrow data.
        """
        table = read_table(
            source,
            info,
            options,
            local_path=local_path,
        )
        if info.details.get("kind") != "RecordBatch":
            return table
        batches = table.combine_chunks().to_batches()
        if len(batches) == 1:
            return batches[0]
        if not batches:
            pa = sys.modules["pyarrow"]
            arrays = [pa.array([], type=field.type) for field in table.schema]
            return pa.RecordBatch.from_arrays(arrays, schema=table.schema)
        raise SerializationError(f"stored RecordBatch came back as {len(batches)} batches")
