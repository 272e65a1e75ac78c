"""The SQL schema of the metadata index, in SQLAlchemy Core (private).

One schema serves SQLite and PostgreSQL; only column variants differ (``jsonb`` and the
``"C"`` collation on PostgreSQL): text columns use the ``"C"`` collation there so that
ordering and prefix ranges follow Unicode code points, as SQLite and Python do.
:class:`UtcMicros` maps the integer timestamps to aware datetimes for users of the table
in Core. Statements are built with Core, compiled for the dialect
(:func:`compile_statement`) and run on the DB-API connection, which keeps SQLAlchemy's
per-call overhead off the hot paths; the row codec is in ``_sqlrows.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from cacheness.storage._metadata._sqlrows import (
    METADATA_TEXT,
    Statement,
    from_micros,
    to_micros,
    validate_identifier,
)


class UtcMicros(sa.types.TypeDecorator[datetime]):
    """A UTC datetime stored as ``BIGINT`` microseconds since the epoch."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        """Aware datetime -> microseconds."""
        return None if value is None else to_micros(value)

    def process_result_value(self, value: int | None, dialect: Dialect) -> datetime | None:
        """Microseconds -> aware UTC datetime."""
        return None if value is None else from_micros(value)


def _text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _json(dialect: str) -> sa.types.TypeEngine[Any]:
    if dialect != "postgresql":
        return sa.Text()
    from sqlalchemy.dialects import postgresql

    return postgresql.JSONB()


def build_tables(name: str, schema: str | None, dialect: str) -> tuple[sa.Table, sa.Table]:
    """Return the ``(entries, info)`` tables of an index named ``name``.

    Indexes: the primary key on ``key``; ``created_at``, ``accessed_at`` (eviction and
    expiry scans) and ``handler``; on PostgreSQL a GIN ``jsonb_path_ops`` index on
    ``metadata`` serves equality filters (``@>``).
    """
    validate_identifier("table name", name)
    if schema is not None:
        validate_identifier("schema name", schema)
    meta = sa.MetaData(schema=schema)
    entries = sa.Table(
        name,
        meta,
        sa.Column("key", _text(), primary_key=True),
        sa.Column("blob_ref", _text(), nullable=False),
        sa.Column("handler", _text(), nullable=False),
        sa.Column("format", _text(), nullable=False),
        sa.Column("format_info", sa.Text(), nullable=False),
        sa.Column("codec", _text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("raw_size", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", _text(), nullable=False),
        sa.Column("etag", _text(), nullable=True),
        sa.Column("version_id", _text(), nullable=True),
        sa.Column("created_at", UtcMicros(), nullable=False),
        sa.Column("updated_at", UtcMicros(), nullable=False),
        sa.Column("accessed_at", UtcMicros(), nullable=False),
        sa.Column("access_count", sa.BigInteger(), nullable=False),
        sa.Column("metadata", _json(dialect), nullable=False),
        sa.Column("signature", _text(), nullable=True),
        sa.Column("inline", sa.LargeBinary(), nullable=True),
    )
    if dialect == "postgresql":
        entries.append_column(sa.Column(METADATA_TEXT, sa.Text(), nullable=True))
    for column in ("created_at", "accessed_at", "handler"):
        sa.Index(f"ix_{name}_{column}", entries.c[column])
    if dialect == "postgresql":
        sa.Index(
            f"ix_{name}_metadata",
            entries.c.metadata,
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        )
    info = sa.Table(
        f"{name}_info",
        meta,
        sa.Column("name", _text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    return entries, info


def compile_statement(
    statement: ClauseElement, dialect: Dialect, *, reusable: bool = True
) -> Statement:
    """Compile a Core statement for ``dialect`` into a :class:`Statement`."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    if not isinstance(compiled, SQLCompiler):  # pragma: no cover - DDL is not compiled here
        raise TypeError(f"not a SQL statement: {statement!r}")
    params = dict(compiled.params)
    escaped = getattr(compiled, "escaped_bind_names", None) or {}
    if dialect.positional:
        raw_names = tuple(compiled.positiontup or ())
        names = raw_names
    else:
        raw_names = tuple(params)
        names = tuple(escaped.get(name, name) for name in raw_names)
    sources = tuple(name[2:] if name.startswith("p_") else name for name in raw_names)
    compiled_values = {
        source: params[name]
        for name, source in zip(raw_names, sources, strict=True)
        if not name.startswith("p_")
    }
    return Statement(compiled.string, names, sources, compiled_values, dialect.positional, reusable)
