"""The ``pandas`` handler: DataFrame and Series as Arrow IPC (or Parquet), data only.

A frame becomes a pyarrow Table (with pandas' own metadata) and is written as an Arrow
IPC stream compressed by Blosc2 (the fastest choice for numeric data; zstd when Blosc2
is not installed), or as Parquet with ``SerializationOptions(dataframe_format="parquet")``
(portable, smaller, slower). No pickle: loading runs no code.

Kept: the index (including ``RangeIndex``, ``MultiIndex``, names and a
``DatetimeIndex``'s ``freq``), column order and labels (strings, integers, a
``RangeIndex``, string ``MultiIndex``), ``attrs``, and dtypes: numpy numbers, bool,
``datetime64``/``timedelta64``, category, tz-aware datetime, nullable ``Int*``/``Float*``/
``boolean``, ``string``/``str``, period, interval, ``ArrowDtype``; object columns holding
only ``str``, ``bytes`` or ``datetime.date`` values (missing values as ``None``).

Anything else (duplicate column names, mixed-type object columns, complex numbers,
sparse columns, python-backed ``StringDtype``, other column label types, subclasses of
DataFrame) is **declined** before a byte is written, and the registry hands the object
to the ``objects`` handler (pickle): storing never fails for want of Arrow support.

Example:
    >>> import io
    >>> import pandas as pd
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> handler = PandasHandler()
    >>> frame = pd.DataFrame({"city": pd.Categorical(["Oslo", "Lima"]), "t": [1.5, 2.5]})
    >>> sink = io.BytesIO()
    >>> info = handler.dump(frame, sink, DEFAULT_OPTIONS)
    >>> info.format, info.details["kind"]
    ('arrow-ipc', 'DataFrame')
    >>> handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS).equals(frame)
    True
    >>> handler.dump(pd.DataFrame({"x": [1, "a"]}), sink, DEFAULT_OPTIONS)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.ObjectDeclinedError: column 'x': object values of kind ...
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Final

from cacheness.storage._handlers._arrow import pyarrow, read_table_and_buffer, write_table
from cacheness.storage._handlers._common import is_exact_type
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage._optional import import_optional
from cacheness.storage.errors import MissingDependencyError, ObjectDeclinedError, SerializationError

log = logging.getLogger(__name__)

_SERIES_COLUMN: Final = "__cacheness_series__"
_OBJECT_KINDS: Final = frozenset({"string", "bytes", "date", "empty"})
_NUMPY_KINDS: Final = frozenset("biufmM")
_JSON_SCALARS: Final = (str, int, float, bool, type(None))


class PandasHandler(Handler):
    """Stores ``pandas.DataFrame`` and ``pandas.Series`` (exact types) via Arrow.

    ``details``: ``kind`` (``"DataFrame"`` or ``"Series"``), the Series ``name``, and when
    needed ``columns`` (labels Arrow would turn into strings) and ``index_freq``.

    Example:
        >>> import pandas as pd
        >>> PandasHandler().can_handle(pd.Series([1])), PandasHandler().can_handle([1])
        (True, False)
    """

    name = "pandas"

    def can_handle(self, obj: Any) -> bool:
        """True for a DataFrame or Series (subclasses excluded); never imports pandas."""
        return is_exact_type(obj, "pandas", "DataFrame", "Series")

    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Write the frame as Arrow IPC (default) or Parquet.

        Raises:
            ObjectDeclinedError: Arrow cannot hold the frame faithfully (see module docs), or
                pyarrow is not installed; the registry then pickles it.
            SerializationError: Arrow failed while writing.
        """
        pd = sys.modules["pandas"]
        try:
            pa = pyarrow("the pandas handler", extra="pandas")
        except MissingDependencyError as exc:
            _warn_no_pyarrow(str(exc))
            raise ObjectDeclinedError(str(exc)) from None
        details: dict[str, Any] = {}
        if type(obj) is pd.Series:
            if not isinstance(obj.name, _JSON_SCALARS):
                raise ObjectDeclinedError(f"Series name of type {type(obj.name).__name__}")
            details.update(kind="Series", name=obj.name)
            frame = obj.to_frame(name=_SERIES_COLUMN)
        else:
            details["kind"] = "DataFrame"
            frame = obj
        problem = _frame_problem(pd, frame)
        if problem:
            raise ObjectDeclinedError(problem)
        columns = _columns_spec(pd, frame.columns)
        if columns is not None:
            details["columns"] = columns
        index = frame.index
        if isinstance(index, pd.DatetimeIndex | pd.TimedeltaIndex) and index.freq is not None:
            details["index_freq"] = index.freqstr
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a conversion warning means a lossy round trip
                table = pa.Table.from_pandas(frame, preserve_index=None)
        except (pa.ArrowException, TypeError, ValueError, Warning) as exc:
            raise ObjectDeclinedError(f"Arrow cannot hold this frame: {exc}") from None
        fmt = "parquet" if options.dataframe_format == "parquet" else "arrow-ipc"
        if fmt == "parquet":
            details.update(_parquet_fixes(pd, frame))
        fmt, codec, raw_size, extra = write_table(table, sink, options, fmt, _default_codec())
        return self.format_info(fmt, codec, raw_size, **details, **extra)

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
            IntegrityError: the stored bytes do not match the recorded size.
            SerializationError: the bytes cannot be read back into pandas.
        """
        table, decoded = read_table_and_buffer(
            source,
            info,
            options,
            local_path=local_path,
            purpose="the pandas handler",
            extra="pandas",
        )
        pd = import_optional("pandas", extra="pandas", purpose="the pandas handler")
        details = info.details
        try:
            frame = table.to_pandas(split_blocks=True, self_destruct=True)
            del table
            if decoded is not None:
                frame = _writable_in_place(pd, frame, decoded)
            for position, dtype in details.get("parquet_dtypes", {}).items():
                column = int(position)
                frame.isetitem(column, frame.iloc[:, column].astype(dtype))
            if "parquet_index_dtype" in details:
                frame.index = frame.index.astype(details["parquet_index_dtype"])
            if "columns" in details:
                frame.columns = _columns_from_spec(pd, details["columns"])
            if "index_freq" in details:
                frame.index = type(frame.index)(frame.index, freq=details["index_freq"])
        except (ValueError, TypeError, KeyError) as exc:
            raise SerializationError(f"stored frame cannot be rebuilt in pandas: {exc}") from exc
        if details.get("kind") == "Series":
            series = frame[_SERIES_COLUMN]
            series.name = details.get("name")
            return series
        return frame


def _writable_in_place(pd: Any, frame: Any, decoded: Any) -> Any:
    """``frame`` with its read-only columns that lie in ``decoded`` made writable views.

    Arrow hands out the columns it could convert without a copy as read-only views of
    its (immutable) buffers. ``decoded`` is the buffer this load decompressed the stream
    into: fresh and referred to by nothing else, so the same memory is given back
    writable (as after ``pickle.loads``), without copying it. Numpy-typed and
    categorical columns are rebuilt this way; other columns stay as Arrow made them.
    """
    np = sys.modules["numpy"]
    memory = np.frombuffer(decoded, dtype=np.uint8)
    start, size = decoded.address, decoded.size

    def own(values: Any) -> Any:
        if values.flags.writeable or not values.flags.c_contiguous or not values.size:
            return None
        offset = values.ctypes.data - start
        if offset < 0 or offset + values.nbytes > size:
            return None
        return memory[offset : offset + values.nbytes].view(values.dtype).reshape(values.shape)

    columns: dict[int, Any] = {}
    changed = False
    for position, dtype in enumerate(frame.dtypes):
        column = frame.iloc[:, position]
        rebuilt = None
        if isinstance(dtype, np.dtype):
            rebuilt = own(column.to_numpy())
        elif isinstance(dtype, pd.CategoricalDtype):
            codes = own(column.array.codes)
            if codes is not None:
                rebuilt = pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
        changed |= rebuilt is not None
        columns[position] = column.array if rebuilt is None else rebuilt
    if not changed:
        return frame
    rebuilt_frame = pd.DataFrame(columns, index=frame.index, copy=False)
    rebuilt_frame.columns = frame.columns
    rebuilt_frame.attrs = frame.attrs
    return rebuilt_frame


@functools.cache
def _default_codec() -> str:
    return "blosc2" if importlib.util.find_spec("blosc2") is not None else "zstd"


@functools.cache
def _warn_no_pyarrow(message: str) -> None:
    log.warning("pandas objects are pickled instead of stored as Arrow: %s", message)


# --------------------------------------------------------------------------- checks


def _frame_problem(pd: Any, frame: Any) -> str | None:
    """Return why Arrow cannot round-trip ``frame`` exactly, or None if it can."""
    if not frame.columns.is_unique:
        return "duplicate column names"
    for position, (label, dtype) in enumerate(frame.dtypes.items()):
        problem = _dtype_problem(pd, dtype, lambda p=position: frame.iloc[:, p])
        if problem:
            return f"column {label!r}: {problem}"
    index = frame.index
    for level in range(index.nlevels):
        values = index.get_level_values(level)
        problem = _dtype_problem(pd, values.dtype, lambda v=values: v)
        if problem:
            return f"index level {level}: {problem}"
        if not isinstance(values.name, _JSON_SCALARS):
            return f"index level {level} has a name of type {type(values.name).__name__}"
    return None


def _parquet_fixes(pd: Any, frame: Any) -> dict[str, Any]:
    """Decline what Parquet (unlike Arrow IPC) drops; return how to restore what it changes.

    Parquet keeps no rows without columns and no categories of an empty categorical
    column, and stores ``datetime64[s]`` as milliseconds (restored by ``astype``).
    """
    rows, columns = frame.shape
    if rows and not columns:
        raise ObjectDeclinedError("Parquet cannot keep rows without columns")
    levels = [frame.index.get_level_values(i).dtype for i in range(frame.index.nlevels)]
    if not rows and any(isinstance(d, pd.CategoricalDtype) for d in [*frame.dtypes, *levels]):
        raise ObjectDeclinedError("Parquet drops the categories of empty categorical columns")
    fixes: dict[str, Any] = {}
    seconds = {str(i): str(d) for i, d in enumerate(frame.dtypes) if _is_seconds(pd, d)}
    if seconds:
        fixes["parquet_dtypes"] = seconds
    if any(_is_seconds(pd, d) for d in levels):
        if len(levels) > 1:
            raise ObjectDeclinedError("Parquet stores a datetime64[s] MultiIndex level as ms")
        fixes["parquet_index_dtype"] = str(levels[0])
    return fixes


def _is_seconds(pd: Any, dtype: Any) -> bool:
    np = sys.modules["numpy"]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return bool(dtype.unit == "s")
    return bool(
        isinstance(dtype, np.dtype) and dtype.kind == "M" and np.datetime_data(dtype)[0] == "s"
    )


def _dtype_problem(pd: Any, dtype: Any, values: Any) -> str | None:
    np = sys.modules["numpy"]
    if isinstance(dtype, np.dtype):
        if dtype.kind in _NUMPY_KINDS:
            return None
        if dtype.kind == "O":
            return _object_problem(pd, values())
        return f"dtype {dtype} has no exact Arrow equivalent"
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        return _dtype_problem(pd, categories.dtype, lambda: categories)
    if isinstance(dtype, pd.StringDtype):
        return "python-backed StringDtype" if dtype.storage == "python" else None
    if isinstance(dtype, _exact_extension_dtypes(pd)):
        return None
    return f"dtype {dtype} is not known to round-trip through Arrow"


@functools.cache
def _exact_extension_dtypes(pd: Any) -> tuple[type, ...]:
    return (
        pd.DatetimeTZDtype,
        pd.PeriodDtype,
        pd.IntervalDtype,
        pd.ArrowDtype,
        pd.BooleanDtype,
        pd.Int8Dtype,
        pd.Int16Dtype,
        pd.Int32Dtype,
        pd.Int64Dtype,
        pd.UInt8Dtype,
        pd.UInt16Dtype,
        pd.UInt32Dtype,
        pd.UInt64Dtype,
        pd.Float32Dtype,
        pd.Float64Dtype,
    )


def _object_problem(pd: Any, values: Any) -> str | None:
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in _OBJECT_KINDS:
        return f"object values of kind {kind!r} (Arrow keeps only str, bytes or date objects)"
    missing = values.isna()
    if missing.any() and not all(value is None for value in values[missing]):
        return "missing values other than None (NaN, NA) in an object column"
    return None


def _columns_spec(pd: Any, columns: Any) -> dict[str, Any] | None:
    """How to restore column labels Arrow would not return as they were (None: as is)."""
    name = columns.name
    if isinstance(columns, pd.MultiIndex):
        for level in columns.levels:
            if pd.api.types.infer_dtype(level) not in ("string", "empty"):
                raise ObjectDeclinedError("MultiIndex columns with non-string labels")
        if not all(isinstance(n, _JSON_SCALARS) for n in columns.names):
            raise ObjectDeclinedError("MultiIndex columns with non-scalar level names")
        return None
    if not isinstance(name, _JSON_SCALARS):
        raise ObjectDeclinedError(f"column index name of type {type(name).__name__}")
    if isinstance(columns, pd.RangeIndex):
        return {"range": [columns.start, columns.stop, columns.step], "name": name}
    if columns.dtype.kind in "iu":
        return {"values": [int(v) for v in columns], "dtype": str(columns.dtype), "name": name}
    if pd.api.types.infer_dtype(columns) in ("string", "empty"):
        if columns.dtype == object:
            return {"values": list(columns), "dtype": "object", "name": name}
        return None
    raise ObjectDeclinedError(
        f"column labels of kind {pd.api.types.infer_dtype(columns)!r} (Arrow keeps str labels)"
    )


def _columns_from_spec(pd: Any, spec: dict[str, Any]) -> Any:
    if "range" in spec:
        return pd.RangeIndex(*spec["range"], name=spec.get("name"))
    return pd.Index(spec["values"], dtype=spec["dtype"], name=spec.get("name"))
