"""The tables of a SqlCache: the user's rows plus bookkeeping, and known-empty keys.

:func:`prepare_tables` copies the user's :class:`~sqlalchemy.Table` (never changing the
caller's object) and adds two columns, timezone-aware and in UTC:

* ``cached_at``: when the row was fetched;
* ``expires_at``: when it stops being fresh (NULL: never).

Next to it lives ``<table>__sqlcache_empty``: the keys (or key ranges) the source was
asked for and answered with no rows, with their own ``expires_at``. That is the negative
cache: a weekend, a holiday or an unknown id is not fetched again on every call.

Example:
    >>> import sqlalchemy as sa
    >>> table = build_table("prices", ["symbol", "date"],
    ...                     {"symbol": sa.String, "date": sa.Date, "close": sa.Float})
    >>> tables = prepare_tables(table, schema=None, range_column=None, ordered=False)
    >>> [c.name for c in tables.data.columns]
    ['symbol', 'date', 'close', 'cached_at', 'expires_at']
    >>> tables.range_column, tables.scope_columns, tables.empty.name
    ('date', ('symbol',), 'prices__sqlcache_empty')
    >>> [c.name for c in table.columns]  # the caller's table is left as it was
    ['symbol', 'date', 'close']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.schema import RETAIN_SCHEMA
from sqlalchemy.types import TypeDecorator, TypeEngine

from cacheness.storage.errors import ConfigError

__all__ = [
    "CACHED_AT",
    "EXPIRES_AT",
    "CacheTables",
    "ColumnKind",
    "UtcDateTime",
    "build_table",
    "column_kind",
    "prepare_tables",
]

CACHED_AT = "cached_at"
EXPIRES_AT = "expires_at"
EMPTY_SUFFIX = "__sqlcache_empty"
RANGE_START = "range_start"
RANGE_END = "range_end"

ColumnKind = Literal["int", "float", "decimal", "bool", "str", "date", "utc", "naive", "object"]


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL stores ``timestamp with time zone``; SQLite and DuckDB store the UTC wall
    time. Values bound must be timezone-aware (converted to UTC); values read are aware
    and in UTC.

    Example:
        >>> from datetime import datetime, timezone, timedelta
        >>> t = UtcDateTime()
        >>> t.process_bind_param(datetime(2024, 1, 1, 9, tzinfo=timezone(timedelta(hours=1))),
        ...                      sa.create_engine("sqlite://").dialect)
        datetime.datetime(2024, 1, 1, 8, 0)
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.DateTime(timezone=True))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"a timezone-aware datetime is needed, got {value!r}")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def column_kind(column: sa.Column[Any]) -> ColumnKind:
    """How SqlCache reads and checks a column's values (by its SQLAlchemy type).

    Example:
        >>> column_kind(sa.Column("n", sa.BigInteger)), column_kind(sa.Column("d", sa.Date))
        ('int', 'date')
    """
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return "utc"
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Integer):
        return "int"
    if isinstance(kind, sa.Float):
        return "float"
    if isinstance(kind, sa.Numeric):
        return "decimal" if kind.asdecimal else "float"
    if isinstance(kind, sa.DateTime):
        return "utc" if kind.timezone else "naive"
    if isinstance(kind, sa.Date):
        return "date"
    if isinstance(kind, sa.String):
        return "str"
    return "object"


def _column(name: str, spec: Any, primary: bool) -> sa.Column[Any]:
    if isinstance(spec, sa.Column):
        column = spec._copy()
        column.name = column.key = name
        if primary:
            column.primary_key = True
            column.nullable = False
        return column
    if isinstance(spec, type) and issubclass(spec, TypeEngine):
        spec = spec()
    if not isinstance(spec, TypeEngine):
        raise ConfigError(
            f"column {name!r} must be a SQLAlchemy type such as Float, Integer or String(20) "
            f"(or a Column), got {spec!r}"
        )
    return sa.Column(name, spec, primary_key=primary, autoincrement=False)


def build_table(
    name: str,
    primary_keys: Sequence[str],
    columns: Mapping[str, Any],
    *,
    schema: str | None = None,
) -> sa.Table:
    """A table from builder keyword arguments (``price=Float, volume=Integer``).

    Args:
        name: the table's name.
        primary_keys: the key columns, in order; each must be among ``columns``.
        columns: column name -> SQLAlchemy type (class or instance) or ``Column``.
        schema: the database schema (PostgreSQL), or None.

    Raises:
        ConfigError: no columns, no primary key, a key that is not a column, a value that
            is not a type, or a reserved name (``cached_at``, ``expires_at``).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"table_name must be a non-empty string, got {name!r}")
    if not columns:
        raise ConfigError(
            f"table {name!r} needs columns: pass them as keyword arguments, e.g. price=Float"
        )
    keys = list(primary_keys)
    if not keys:
        raise ConfigError(f"table {name!r} needs primary_keys=[...] naming its key columns")
    unknown = [key for key in keys if key not in columns]
    if unknown:
        raise ConfigError(
            f"primary key {', '.join(map(repr, unknown))} of table {name!r} is not among its "
            f"columns {sorted(columns)}: add it, e.g. {unknown[0]}=String"
        )
    ordered = keys + [column for column in columns if column not in keys]
    built = [_column(column, columns[column], column in keys) for column in ordered]
    return sa.Table(name, sa.MetaData(), *built, schema=schema)


@dataclass(frozen=True)
class CacheTables:
    """The prepared tables and what SqlCache needs to know about their columns."""

    data: sa.Table
    empty: sa.Table
    primary_keys: tuple[str, ...]
    range_column: str | None
    scope_columns: tuple[str, ...]
    kinds: Mapping[str, ColumnKind]
    data_columns: tuple[str, ...]

    @property
    def name(self) -> str:
        """The data table's name, qualified by its schema when it has one."""
        return self.data.fullname


def _check_reserved(table: sa.Table) -> None:
    for reserved in (CACHED_AT, EXPIRES_AT):
        if reserved in table.c and not isinstance(table.c[reserved].type, UtcDateTime):
            raise ConfigError(
                f"table {table.name!r} has a column {reserved!r}: SqlCache adds that column "
                "itself (UTC timestamps); rename yours"
            )


def _infer_range_column(
    table: sa.Table, keys: Iterable[str], kinds: Mapping[str, ColumnKind], ordered: bool
) -> str | None:
    keys = list(keys)
    temporal = [key for key in keys if kinds[key] in ("date", "utc", "naive")]
    if temporal:
        return temporal[-1]
    if ordered:
        integers = [key for key in keys if kinds[key] == "int"]
        if integers:
            return integers[-1]
    return None


def prepare_tables(
    table: sa.Table, *, schema: str | None, range_column: str | None, ordered: bool
) -> CacheTables:
    """Copy ``table`` into a MetaData of SqlCache's own and add the bookkeeping.

    Timezone-aware ``DateTime`` columns become :class:`UtcDateTime`; key columns never
    auto-increment (keys come from the source). The range column is ``range_column``, or
    the last Date/DateTime key column, or (``ordered``) the last integer key column.

    Raises:
        ConfigError: no primary key, a reserved column name, or a range column that is
            not a Date, DateTime or integer key column.
    """
    if not isinstance(table, sa.Table):
        raise ConfigError(
            f"table must be a sqlalchemy.Table (or a table name with columns as keyword "
            f"arguments), got {type(table).__name__}"
        )
    keys = tuple(column.name for column in table.primary_key.columns)
    if not keys:
        raise ConfigError(
            f"table {table.name!r} has no primary key: SqlCache upserts rows by their key; "
            "mark the key columns primary_key=True"
        )
    _check_reserved(table)
    metadata = sa.MetaData()
    data = table.to_metadata(metadata, schema=schema if schema is not None else RETAIN_SCHEMA)
    for column in data.columns:
        if isinstance(column.type, sa.DateTime) and column.type.timezone:
            column.type = UtcDateTime()
        if column.primary_key:
            column.autoincrement = False
    if CACHED_AT not in data.c:
        data.append_column(sa.Column(CACHED_AT, UtcDateTime(), nullable=False))
        data.append_column(sa.Column(EXPIRES_AT, UtcDateTime(), nullable=True))
    kinds = {column.name: column_kind(column) for column in data.columns}
    if range_column is None:
        range_column = _infer_range_column(data, keys, kinds, ordered)
    elif range_column not in keys or kinds[range_column] not in ("date", "utc", "naive", "int"):
        raise ConfigError(
            f"range_column {range_column!r} must be a Date, DateTime or integer primary-key "
            f"column of {table.name!r} (its keys: {', '.join(keys)})"
        )
    scope = tuple(key for key in keys if key != range_column)
    empty_columns: list[sa.Column[Any]] = [
        sa.Column(key, data.c[key].type, primary_key=True, autoincrement=False) for key in scope
    ]
    if range_column is not None:
        range_type = data.c[range_column].type
        empty_columns += [
            sa.Column(RANGE_START, range_type, primary_key=True, autoincrement=False),
            sa.Column(RANGE_END, range_type, nullable=False),
        ]
    empty_columns += [
        sa.Column(CACHED_AT, UtcDateTime(), nullable=False),
        sa.Column(EXPIRES_AT, UtcDateTime(), nullable=True),
    ]
    empty = sa.Table(data.name + EMPTY_SUFFIX, metadata, *empty_columns, schema=data.schema)
    return CacheTables(
        data=data,
        empty=empty,
        primary_keys=keys,
        range_column=range_column,
        scope_columns=scope,
        kinds=kinds,
        data_columns=tuple(c.name for c in data.columns if c.name not in (CACHED_AT, EXPIRES_AT)),
    )
