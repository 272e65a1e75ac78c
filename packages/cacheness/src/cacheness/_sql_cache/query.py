"""Query parameters: what a ``get_data`` call asks for, checked against the table.

Callers name primary-key columns: ``symbol="AAPL"`` (one value), ``user_id=[1, 2, 3]``
(several), and the range column by its bounds, ``start_date=`` and ``end_date=``
(inclusive). :func:`parse_kwargs` turns keyword arguments into the *parsed form* adapters
return from ``parse_query_params`` (``{"symbol": "AAPL", "date": {"start": ..., "end":
...}}``); :func:`normalize` checks that form against the table and converts the values
(ISO strings to dates, numpy integers to int, ...) into a :class:`Query`.
:func:`fetch_kwargs` is the way back: the keyword arguments a fetcher gets, under the
names the caller used.

Example:
    >>> import sqlalchemy as sa
    >>> from cacheness._sql_cache.schema import build_table, prepare_tables
    >>> tables = prepare_tables(
    ...     build_table("p", ["symbol", "date"], {"symbol": sa.String, "date": sa.Date}),
    ...     schema=None, range_column=None, ordered=False)
    >>> parsed = parse_kwargs(tables.data.c.keys(), {"symbol": "AAPL", "start_date": "2024-01-02",
    ...                                "end_date": "2024-01-05"})
    >>> query = normalize(tables, parsed)
    >>> query.specs["date"]
    Between(start=datetime.date(2024, 1, 2), end=datetime.date(2024, 1, 5))
    >>> fetch_kwargs(tables, query.specs)
    {'symbol': 'AAPL', 'start_date': datetime.date(2024, 1, 2), 'end_date': ...}
"""

from __future__ import annotations

import math
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from cacheness._sql_cache.errors import InvalidQueryError
from cacheness._sql_cache.schema import CacheTables, ColumnKind

__all__ = [
    "Between",
    "Equals",
    "OneOf",
    "Query",
    "Spec",
    "coerce_value",
    "fetch_kwargs",
    "normalize",
    "parse_kwargs",
    "to_parsed",
]


@dataclass(frozen=True)
class Equals:
    """One value of a key column."""

    value: Any


@dataclass(frozen=True)
class OneOf:
    """Several values of a key column (sorted, without duplicates)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Between:
    """The inclusive range ``start``..``end`` of the range column."""

    start: Any
    end: Any


Spec = Equals | OneOf | Between


@dataclass(frozen=True)
class Query:
    """A checked request: one spec per constrained primary-key column, in key order."""

    specs: Mapping[str, Spec]

    @property
    def is_range(self) -> bool:
        """True when the range column is asked for by its bounds."""
        return any(isinstance(spec, Between) for spec in self.specs.values())


def _is_many(value: Any) -> bool:
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return True
    return type(value).__name__ in ("Series", "Index") and hasattr(value, "tolist")


def parse_kwargs(columns: Container[str], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed form of ``get_data`` keyword arguments (the default adapter rule).

    ``start_<column>``/``end_<column>`` become ``{column: {"start": ..., "end": ...}}``;
    other names stay as they are (checked later by :func:`normalize`).

    Args:
        columns: the table's column names (``table.c`` will do).
        kwargs: the caller's keyword arguments.

    Raises:
        InvalidQueryError: a range given only by one of its bounds, or a column given both
            as a value and as a range.
    """
    parsed: dict[str, Any] = {}
    bounds: dict[str, dict[str, Any]] = {}
    for name, value in kwargs.items():
        for prefix in ("start_", "end_"):
            column = name.removeprefix(prefix)
            if name.startswith(prefix) and column in columns:
                bounds.setdefault(column, {})[prefix[:-1]] = value
                break
        else:
            parsed[name] = value
    for column, pair in bounds.items():
        if set(pair) != {"start", "end"}:
            given, missing = next(iter(pair)), ({"start", "end"} - set(pair)).pop()
            raise InvalidQueryError(
                f"{given}_{column}= needs {missing}_{column}= too: a range of {column!r} "
                "has both bounds (inclusive)"
            )
        if column in parsed:
            raise InvalidQueryError(
                f"{column!r} is given both as {column}= and as a range: pass one of them"
            )
        parsed[column] = pair
    return parsed


def _type_error(column: str, kind: ColumnKind, value: Any, hint: str = "") -> InvalidQueryError:
    wanted = {
        "int": "an integer",
        "float": "a number",
        "decimal": "a number",
        "bool": "True or False",
        "str": "a string",
        "date": "a date (datetime.date or 'YYYY-MM-DD')",
        "utc": "a timezone-aware datetime",
        "naive": "a datetime without timezone",
        "object": "a value",
    }[kind]
    return InvalidQueryError(
        f"{column!r} must be {wanted}, got {value!r} ({type(value).__name__}){hint}"
    )


def coerce_value(column: str, kind: ColumnKind, value: Any) -> Any:
    """Check one query value against its column's kind and return it as Python.

    Raises:
        InvalidQueryError: the value cannot be a value of that column.

    Example:
        >>> coerce_value("date", "date", "2024-03-01")
        datetime.date(2024, 3, 1)
        >>> coerce_value("id", "int", 7.5)
        Traceback (most recent call last):
        ...
        cacheness._sql_cache.errors.InvalidQueryError: 'id' must be an integer, got 7.5 (float)
    """
    if value is None:
        raise InvalidQueryError(f"{column!r} cannot be None: key values are never NULL")
    if hasattr(value, "to_pydatetime") and kind in ("date", "utc", "naive"):
        value = value.to_pydatetime()  # pandas.Timestamp
    elif isinstance(value, np.generic):
        value = value.item()
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(column, kind, value)
        return value
    if kind in ("float", "decimal"):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise _type_error(column, kind, value)
        if isinstance(value, float) and math.isnan(value):
            raise InvalidQueryError(f"{column!r} cannot be NaN")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(column, kind, value)
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise _type_error(column, kind, value)
        return value
    if kind == "date":
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise _type_error(column, kind, value) from None
        if isinstance(value, datetime):
            if value.time() != datetime.min.time() or value.tzinfo is not None:
                raise _type_error(column, kind, value, "; pass the date itself (.date())")
            return value.date()
        if not isinstance(value, date):
            raise _type_error(column, kind, value)
        return value
    if kind in ("utc", "naive"):
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise _type_error(column, kind, value) from None
        if not isinstance(value, datetime):
            raise _type_error(column, kind, value)
        aware = value.tzinfo is not None and value.utcoffset() is not None
        if kind == "utc":
            if not aware:
                raise _type_error(
                    column, kind, value, "; add a timezone, e.g. datetime(..., tzinfo=UTC)"
                )
            return value.astimezone(UTC)
        if aware:
            raise _type_error(column, kind, value, "; the column stores naive datetimes")
        return value
    return value


def normalize(tables: CacheTables, parsed: Mapping[str, Any], *, partial: bool = False) -> Query:
    """Check a parsed query against the table and return it as a :class:`Query`.

    Args:
        tables: the cache's tables.
        parsed: ``{column: value | [values] | {"start": a, "end": b}}``.
        partial: allow key columns to be left out (``invalidate_cache``).

    Raises:
        InvalidQueryError: an unknown parameter or a non-key column, a key column left
            out (unless ``partial``), a range on a column that is not the range column,
            a start after its end, an empty list, or a value of the wrong type.
    """
    if not isinstance(parsed, Mapping):
        raise InvalidQueryError(
            f"parse_query_params must return a dict of column -> value, got {type(parsed).__name__}"
        )
    keys = tables.primary_keys
    unknown = [name for name in parsed if name not in keys]
    if unknown:
        name = unknown[0]
        what = "a column but not a primary-key column" if name in tables.data.c else "unknown"
        ranged = tables.range_column
        hint = f" ({ranged} as start_{ranged}= and end_{ranged}=)" if ranged else ""
        raise InvalidQueryError(
            f"query parameter {name!r} is {what} for table {tables.data.name!r}: ask by "
            f"its primary-key columns {', '.join(keys)}{hint}"
        )
    missing = [key for key in keys if key not in parsed]
    if missing and not partial:
        raise InvalidQueryError(
            f"get_data needs every primary-key column of {tables.data.name!r}: "
            f"{', '.join(map(repr, missing))} "
            + ("is" if len(missing) == 1 else "are")
            + " missing"
            + (
                f" (pass start_{tables.range_column}= and end_{tables.range_column}=)"
                if tables.range_column in missing
                else ""
            )
        )
    specs: dict[str, Spec] = {}
    for key in keys:
        if key not in parsed:
            continue
        value, kind = parsed[key], tables.kinds[key]
        if isinstance(value, Mapping):
            if set(value) != {"start", "end"}:
                raise InvalidQueryError(
                    f"a range of {key!r} is {{'start': ..., 'end': ...}}, got keys {sorted(value)}"
                )
            if key != tables.range_column:
                raise InvalidQueryError(
                    f"{key!r} is not the range column of {tables.data.name!r}"
                    + (
                        f" ({tables.range_column!r} is)"
                        if tables.range_column
                        else " (it has none: pass time_increment or ordered_increment)"
                    )
                    + f"; ask for {key}= one value or a list"
                )
            start = coerce_value(key, kind, value["start"])
            end = coerce_value(key, kind, value["end"])
            if start > end:
                raise InvalidQueryError(
                    f"start_{key}={start!r} is after end_{key}={end!r}: the start of a range "
                    "comes first (both bounds are included)"
                )
            specs[key] = Between(start, end)
        elif _is_many(value):
            items = value.tolist() if hasattr(value, "tolist") else list(value)
            if not items:
                raise InvalidQueryError(f"{key!r} is an empty list: ask for at least one value")
            coerced = {coerce_value(key, kind, item) for item in items}
            try:
                specs[key] = OneOf(tuple(sorted(coerced)))
            except TypeError:
                raise InvalidQueryError(f"the values of {key!r} cannot be compared") from None
        else:
            specs[key] = Equals(coerce_value(key, kind, value))
    if partial and not specs:
        raise InvalidQueryError(
            "name what to invalidate by its primary-key columns "
            f"({', '.join(keys)}); clear_cache() empties the whole table"
        )
    return Query(specs)


def to_parsed(specs: Mapping[str, Spec]) -> dict[str, Any]:
    """The parsed form (plain dicts and lists) of checked specs."""
    parsed: dict[str, Any] = {}
    for column, spec in specs.items():
        if isinstance(spec, Between):
            parsed[column] = {"start": spec.start, "end": spec.end}
        elif isinstance(spec, OneOf):
            parsed[column] = list(spec.values)
        else:
            parsed[column] = spec.value
    return parsed


def fetch_kwargs(tables: CacheTables, specs: Mapping[str, Spec]) -> dict[str, Any]:
    """The fetcher's keyword arguments for ``specs``, under the caller's names."""
    kwargs: dict[str, Any] = {}
    for column in tables.primary_keys:
        spec = specs.get(column)
        if isinstance(spec, Between):
            kwargs[f"start_{column}"] = spec.start
            kwargs[f"end_{column}"] = spec.end
        elif isinstance(spec, OneOf):
            kwargs[column] = list(spec.values)
        elif isinstance(spec, Equals):
            kwargs[column] = spec.value
    return kwargs
