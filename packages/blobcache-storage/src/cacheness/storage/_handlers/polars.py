"""The ``polars`` handler: polars ``DataFrame`` and ``Series`` as Parquet (or Arrow IPC).

Written and read by polars itself (multi-threaded, no pyarrow needed): Parquet with
zstd by default; ``dataframe_format="arrow"`` writes an Arrow IPC stream instead (zstd
inside, or uncompressed with ``codec="none"``). Parquet accepts ``zstd``, ``gzip`` and
``none``; a request for ``blosc2`` (or ``gzip`` with IPC) is stored as ``zstd``, and the
codec recorded is the one used. Column names, order and dtypes (including categorical,
enum, tz-aware datetime, decimal, list and struct) come back unchanged; frames holding
Python objects are declined and pickled by the ``objects`` handler.

Example:
    >>> import io
    >>> import polars as pl
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> handler = PolarsHandler()
    >>> frame = pl.DataFrame({"id": [1, 2], "tags": [["a"], []]})
    >>> sink = io.BytesIO()
    >>> info = handler.dump(frame, sink, DEFAULT_OPTIONS)
    >>> info.format, info.codec
    ('parquet', 'zstd')
    >>> handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS).equals(frame)
    True
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

from cacheness.storage._handlers._arrow import check_stream_size
from cacheness.storage._handlers._common import is_exact_type
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage._optional import import_optional
from cacheness.storage._streams import CountingSink
from cacheness.storage.errors import ObjectDeclinedError, SerializationError

_FORMATS = ("parquet", "arrow-ipc")


def _pl() -> Any:
    return import_optional("polars", extra="polars", purpose="the polars handler")


class PolarsHandler(Handler):
    """Stores ``polars.DataFrame`` and ``polars.Series``.

    ``details``: ``kind`` (``"DataFrame"`` or ``"Series"``), the Series ``name`` and
    ``stream_size`` (checked on load: a cut or padded blob fails with ``IntegrityError``).

    Example:
        >>> import polars as pl
        >>> PolarsHandler().can_handle(pl.DataFrame()), PolarsHandler().can_handle(1)
        (True, False)
    """

    name = "polars"

    def can_handle(self, obj: Any) -> bool:
        """True for a polars DataFrame or Series; never imports polars."""
        return is_exact_type(obj, "polars", "DataFrame", "Series")

    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Write the frame as Parquet (default) or Arrow IPC.

        Raises:
            ObjectDeclinedError: the frame holds Python objects (``pl.Object`` columns).
            SerializationError: polars failed to write it.
        """
        pl = _pl()
        details: dict[str, Any] = {}
        if type(obj) is pl.Series:
            details.update(kind="Series", name=obj.name)
            frame = obj.to_frame()
        else:
            details["kind"] = "DataFrame"
            frame = obj
        if any(dtype == pl.Object for dtype in frame.dtypes):
            raise ObjectDeclinedError("polars Object columns hold Python objects")
        fmt = "arrow-ipc" if options.dataframe_format == "arrow" else "parquet"
        codec = options.codec
        if codec in ("auto", "blosc2") or (fmt == "arrow-ipc" and codec == "gzip"):
            codec = "zstd"
        counting = CountingSink(sink)
        try:
            if fmt == "parquet":
                level = options.level_for(codec) if codec != "none" else None
                frame.write_parquet(
                    counting,
                    compression="uncompressed" if codec == "none" else codec,
                    compression_level=level,
                )
            else:
                frame.write_ipc_stream(
                    counting, compression="uncompressed" if codec == "none" else codec
                )
        except (pl.exceptions.PolarsError, OSError, ValueError, TypeError) as exc:
            raise SerializationError(f"polars cannot write this frame as {fmt}: {exc}") from exc
        details["stream_size"] = counting.written
        return self.format_info(fmt, codec, int(frame.estimated_size()), **details)

    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Return the DataFrame or Series.

        Raises:
            SerializationError: unknown format, or polars cannot read the bytes.
        """
        pl = _pl()
        if info.format not in _FORMATS:
            raise SerializationError(f"the polars handler cannot read format {info.format!r}")
        expected = info.details.get("stream_size")
        if local_path is not None:
            where: Any = str(local_path)
            check_stream_size(Path(local_path).stat().st_size, expected, info.format)
        else:
            data = source.read()
            check_stream_size(len(data), expected, info.format)
            where = io.BytesIO(data)
        try:
            if info.format == "parquet":
                frame = pl.read_parquet(where)
            else:
                frame = pl.read_ipc_stream(where)
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            raise SerializationError(
                f"the stored {info.format} bytes cannot be read by polars ({exc}); the blob "
                "is corrupt or truncated"
            ) from exc
        if info.details.get("kind") == "Series":
            return frame.to_series(0).alias(info.details.get("name", ""))
        return frame
