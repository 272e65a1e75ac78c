"""DataFrames in and out: rows read from the table, and the fetcher's answers checked.

Reading: each column gets the pandas dtype its SQL type calls for, whatever the
database driver returns (date objects, ISO strings, naive or aware datetimes):

======================  ==========================================================
SQL type                pandas dtype
======================  ==========================================================
Integer (NOT NULL)      ``int64`` (nullable columns: ``Int64``)
Float, Numeric(asdecimal=False)  ``float64``
Numeric                 ``object`` (``decimal.Decimal``)
Boolean (NOT NULL)      ``bool`` (nullable columns: ``boolean``)
String, Text            pandas' default string dtype
Date                    ``datetime64[ns]``
DateTime                ``datetime64[ns]``; timezone-aware: ``datetime64[ns, UTC]``
``cached_at``, ``expires_at``   ``datetime64[ns, UTC]``
anything else           ``object``
======================  ==========================================================

Writing: :func:`prepare_rows` checks a fetched frame column by column against the table
(names, dtypes, keys, NOT NULL) and turns it into the rows to bind, or raises
:class:`InvalidFetchedDataError` naming the column and what is wrong. Nothing is written
before the whole frame has passed.

Example:
    >>> import sqlalchemy as sa, pandas as pd
    >>> from cacheness._sql_cache.schema import build_table, prepare_tables
    >>> tables = prepare_tables(build_table("t", ["id"], {"id": sa.Integer, "x": sa.Float}),
    ...                         schema=None, range_column=None, ordered=False)
    >>> prepare_rows(tables, pd.DataFrame({"id": [1], "y": [2.0]}), {}).keys
    Traceback (most recent call last):
    ...
    cacheness._sql_cache.errors.InvalidFetchedDataError: the fetcher returned column 'y' ...
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa

from cacheness._sql_cache.errors import InvalidFetchedDataError
from cacheness._sql_cache.result import DataFrame
from cacheness._sql_cache.schema import CACHED_AT, EXPIRES_AT, CacheTables, ColumnKind

__all__ = ["FrameReader", "PreparedRows", "prepare_rows"]


@functools.cache
def _pandas() -> Any:
    from cacheness.storage import import_optional

    return import_optional("pandas", extra="sql", distribution="cacheness", purpose="SqlCache")


def _object_array(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()


def _first(values: Sequence[Any]) -> Any:
    return next((value for value in values if value is not None), None)


def _days(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """``datetime64[ns]`` dates from ISO strings (SQLite) or ``date`` objects."""
    sample = _first(values)
    if sample is None:
        return np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    if isinstance(sample, str):
        return np.array(values, dtype="datetime64[D]").astype("datetime64[ns]")
    missing = [i for i, value in enumerate(values) if value is None]
    ordinals = np.fromiter(
        (_EPOCH_ORDINAL if value is None else value.toordinal() for value in values),
        dtype=np.int64,
        count=len(values),
    )
    days = (ordinals - _EPOCH_ORDINAL).astype("datetime64[D]").astype("datetime64[ns]")
    if missing:
        days[missing] = np.datetime64("NaT")
    return days


def _stamps(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """Naive ``datetime64[ns]`` from ISO strings (SQLite) or naive ``datetime`` objects."""
    sample = _first(values)
    if sample is None:
        return np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    if isinstance(sample, str):
        return np.array(values, dtype="datetime64[us]").astype("datetime64[ns]")
    pd = _pandas()
    stamps: np.ndarray[Any, Any] = pd.DatetimeIndex(_object_array(values)).as_unit("ns").to_numpy()
    return stamps


class FrameReader:
    """Selects a table's columns and builds DataFrames with the table's dtypes.

    Columns are read as the driver returns them (no per-value conversion by SQLAlchemy)
    and converted a whole column at a time; timezone-aware timestamps are read as naive
    UTC (PostgreSQL converts them in the query).
    """

    def __init__(self, tables: CacheTables, dialect: sa.Dialect) -> None:
        self.tables = tables
        self.dialect = dialect
        self.columns: list[tuple[str, ColumnKind, bool, Any]] = []
        self.select_columns: list[Any] = []
        for column in tables.data.columns:
            kind = tables.kinds[column.name]
            processor = None
            if kind in ("decimal", "object"):
                impl = column.type.dialect_impl(dialect)
                processor = impl.result_processor(dialect, None)
            self.columns.append((column.name, kind, bool(column.nullable), processor))
            expression: Any = column
            if kind == "utc" and dialect.name == "postgresql":
                expression = sa.func.timezone("UTC", column)
            self.select_columns.append(
                sa.type_coerce(expression, sa.types.NullType()).label(column.name)
            )

    def _convert(self, kind: ColumnKind, nullable: bool, processor: Any, values: Any) -> Any:
        pd = _pandas()
        if kind == "int":
            if nullable:
                return pd.array(values, dtype="Int64")
            return np.array(values, dtype=np.int64)
        if kind == "float":
            return np.array(values, dtype=np.float64)
        if kind == "bool":
            if nullable:
                return pd.array([None if v is None else bool(v) for v in values], dtype="boolean")
            return np.array(values, dtype=bool)
        if kind == "date":
            return _days(values)
        if kind == "naive":
            return _stamps(values)
        if kind == "utc":
            return pd.DatetimeIndex(_stamps(values), tz="UTC")
        if processor is not None:
            values = [None if value is None else processor(value) for value in values]
        return _object_array(values)

    def frame(self, rows: Sequence[Sequence[Any]]) -> DataFrame:
        """A DataFrame of ``rows`` (tuples in table column order) with the table's dtypes."""
        pd = _pandas()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        data = {
            name: self._convert(kind, nullable, processor, values)
            for (name, kind, nullable, processor), values in zip(self.columns, columns, strict=True)
        }
        return pd.DataFrame(data, copy=False)

    def read(
        self,
        connection: sa.Connection,
        statement: sa.Select[Any],
        values: Mapping[str, Any] | None = None,
    ) -> DataFrame:
        """Run ``statement`` (a select of :attr:`select_columns`) and build its frame."""
        return self.frame(connection.execute(statement, values or {}).fetchall())


@dataclass(frozen=True)
class PreparedRows:
    """A fetched frame checked and converted: rows to bind and their keys."""

    records: list[dict[str, Any]]
    keys: list[tuple[Any, ...]]


def _fail(column: str, message: str) -> InvalidFetchedDataError:
    return InvalidFetchedDataError(f"the fetcher's column {column!r} {message}")


def _is_missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA (containers such as lists are values, never missing)."""
    if value is None:
        return True
    pd = _pandas()
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def _values(series: Any, column: str, kind: ColumnKind) -> list[Any]:
    """The column's values as Python objects of its kind, None for missing ones."""
    pd = _pandas()
    dtype = series.dtype
    types = pd.api.types
    if kind in ("int", "float", "decimal"):
        if types.is_bool_dtype(dtype):
            raise _fail(column, f"holds booleans ({dtype}) but the table stores numbers")
        if types.is_numeric_dtype(dtype):
            floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
            if kind == "int":
                finite = floats[~np.isnan(floats)]
                if types.is_float_dtype(dtype) and np.any(finite != np.round(finite)):
                    raise _fail(column, "holds fractions but the table stores integers")
                if types.is_integer_dtype(dtype) and not series.hasnans:
                    exact: list[Any] = series.to_numpy(dtype=np.int64).tolist()
                    return exact
                return [None if math.isnan(v) else int(v) for v in floats.tolist()]
            return [None if math.isnan(v) else v for v in floats.tolist()]
        out: list[Any] = []
        for value in series.tolist():
            if _is_missing(value):
                out.append(None)
            elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                raise _fail(
                    column,
                    f"holds {value!r} ({type(value).__name__}) but the table stores numbers",
                )
            elif kind == "int" and value != int(value):
                raise _fail(column, f"holds {value!r} but the table stores integers")
            else:
                out.append(int(value) if kind == "int" else value)
        return out
    if kind == "bool":
        values = _with_none(series)
        bad = next((v for v in values if v is not None and not isinstance(v, bool)), None)
        if bad is not None:
            raise _fail(column, f"holds {bad!r} but the table stores booleans")
        return values
    if kind == "str":
        values = _with_none(series)
        bad = next((v for v in values if v is not None and not isinstance(v, str)), None)
        if bad is not None:
            raise _fail(column, f"holds {bad!r} ({type(bad).__name__}) but the table stores text")
        return values
    if kind in ("date", "utc", "naive"):
        return _temporal(series, column, kind)
    return _with_none(series)


def _with_none(series: Any) -> list[Any]:
    """The column's values as Python objects, None where pandas sees a missing value."""
    values: list[Any] = series.tolist()
    missing = series.isna().to_numpy()
    if missing.any():
        values = [None if gone else value for value, gone in zip(values, missing, strict=True)]
    if series.dtype == bool or str(series.dtype) == "boolean":
        values = [None if value is None else bool(value) for value in values]
    return values


def _temporal(series: Any, column: str, kind: ColumnKind) -> list[Any]:
    pd = _pandas()
    if not pd.api.types.is_datetime64_any_dtype(series.dtype):
        if series.dtype != object and not pd.api.types.is_string_dtype(series.dtype):
            raise _fail(column, f"has dtype {series.dtype} but the table stores {kind} values")
        values = _with_none(series)
        if kind == "date" and all(
            v is None or (isinstance(v, date) and not isinstance(v, datetime)) for v in values
        ):
            return values
        try:
            series = pd.to_datetime(series)
        except (ValueError, TypeError) as exc:
            raise _fail(column, f"holds values that are not dates or times ({exc})") from None
    aware = getattr(series.dtype, "tz", None) is not None
    if kind == "utc":
        if not aware:
            raise _fail(
                column,
                "holds naive timestamps but the table stores timezone-aware ones: localize "
                "them first, e.g. frame[col].dt.tz_localize('UTC')",
            )
        return _python_values(series.dt.tz_convert("UTC"), "datetime")
    if aware:
        raise _fail(
            column,
            "holds timezone-aware timestamps but the table stores "
            + ("dates" if kind == "date" else "naive datetimes")
            + ": convert them first (e.g. .dt.tz_localize(None))",
        )
    if kind == "date":
        normalized = series.dt.normalize()
        if not (normalized.isna() | (normalized == series)).all():
            raise _fail(column, "holds times of day but the table stores dates: use .dt.date")
        return _python_values(series, "date")
    return _python_values(series, "datetime")


def _python_values(series: Any, what: str) -> list[Any]:
    """``date`` or ``datetime`` objects of a datetime64 column, None for NaT."""
    objects = series.dt.date if what == "date" else series.dt.to_pydatetime()
    values: list[Any] = list(objects)
    missing = series.isna().to_numpy()
    if missing.any():
        values = [None if gone else value for value, gone in zip(values, missing, strict=True)]
    return values


def prepare_rows(
    tables: CacheTables,
    frame: Any,
    fixed: Mapping[str, Any],
    *,
    what: str = "the fetcher",
) -> PreparedRows:
    """Check a fetched frame against the table; return the rows to bind (no bookkeeping).

    Args:
        tables: the cache's tables.
        frame: what the fetcher returned.
        fixed: key values the call asked for one at a time (``symbol="AAPL"``): a frame
            without that column gets it filled in.
        what: who returned the frame, for messages.

    Raises:
        InvalidFetchedDataError: not a DataFrame; a column the table lacks; a key column
            missing; a value of the wrong type; a missing key or NOT NULL value; two rows
            with the same key.
    """
    pd = _pandas()
    if not isinstance(frame, pd.DataFrame):
        raise InvalidFetchedDataError(
            f"{what} must return a pandas DataFrame (an empty one for no rows), got "
            f"{type(frame).__name__}"
        )
    table = tables.data
    names = [name for name in frame.index.names if name is not None]
    if names and all(name in table.c and name not in frame.columns for name in names):
        frame = frame.reset_index()
    allowed = tables.data_columns
    for name in frame.columns:
        if name in (CACHED_AT, EXPIRES_AT):
            raise InvalidFetchedDataError(
                f"{what} returned column {name!r}: SqlCache sets it itself; drop it"
            )
        if name not in allowed:
            raise InvalidFetchedDataError(
                f"{what} returned column {name!r} that table {table.name!r} does not have "
                f"(its columns: {', '.join(allowed)})"
            )
    if frame.columns.has_duplicates:
        duplicated = frame.columns[frame.columns.duplicated()][0]
        raise InvalidFetchedDataError(f"{what} returned column {duplicated!r} twice")
    length = len(frame)
    columns: dict[str, list[Any]] = {}
    for name in allowed:
        kind = tables.kinds[name]
        if name in frame.columns:
            columns[name] = _values(frame[name], name, kind) if length else []
        elif name in tables.primary_keys and length:
            if name not in fixed:
                raise InvalidFetchedDataError(
                    f"{what} returned no {name!r} column: it is part of the primary key "
                    f"({', '.join(tables.primary_keys)}) and the call asked for several values"
                )
            columns[name] = [fixed[name]] * length
        else:
            columns[name] = [None] * length
    for name in allowed:
        column = table.c[name]
        if not column.nullable and any(v is None for v in columns[name]):
            where = "key column" if column.primary_key else "NOT NULL column"
            raise _fail(name, f"has missing values but it is a {where}")
    keys = list(zip(*(columns[key] for key in tables.primary_keys), strict=True))
    if len(set(keys)) != len(keys):
        duplicate = _first_repeat(keys)
        raise InvalidFetchedDataError(
            f"{what} returned two rows with the key "
            f"{dict(zip(tables.primary_keys, duplicate, strict=True))}: keys are unique"
        )
    records = [dict(zip(allowed, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    return PreparedRows(records, keys)


def _first_repeat(keys: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The first key of ``keys`` that came before (there is one)."""
    seen: set[tuple[Any, ...]] = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no repeated key")  # pragma: no cover - the caller counted one
