"""Rows of the SQL metadata index <-> entries, and compiled statements (private).

Nothing here imports SQLAlchemy: the sqlite backend's common operations on its default
table run on statements compiled ahead of time (``_sqlite_statements.py``), so opening
an existing index and reading or writing entries by key never loads it. The schema
itself (tables, DDL, filters) is built with SQLAlchemy Core in ``_sqlcore.py``.

Storage choices:

* timestamps are ``BIGINT`` microseconds since the Unix epoch (UTC): exact, compact,
  and ordered and range-filtered by plain integer comparison on both dialects;
* ``metadata`` is JSON text on SQLite and ``jsonb`` on PostgreSQL, which also keeps the
  exact JSON text in ``metadata_text`` (``jsonb`` normalises numbers); reads return it;
* ``format_info`` is JSON text, ``inline`` a ``BLOB``/``bytea``.

Example:
    >>> row = entry_params(Entry.new("k", size=3))
    >>> row_to_entry([row[name] for name in COLUMNS]).size
    3
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from cacheness.storage._entry import Entry
from cacheness.storage._metadata._entries import encode_json
from cacheness.storage._metadata.base import PayloadInfo
from cacheness.storage.errors import ConfigError

SCHEMA_VERSIONS: Final[Mapping[str, int]] = {"sqlite": 1, "postgresql": 2}
"""The table layout each dialect writes, recorded as ``schema_version`` in ``<table>_info``.

1: the first layout. 2 (PostgreSQL only): the ``metadata_text`` column holding the exact
JSON text of ``metadata``, kept right by a trigger against writers unaware of it; older
tables are migrated by the step registered in ``postgresql.py`` (this package). SQLite
tables stay at 1 (their ``metadata`` is the exact text already).
"""

METADATA_TEXT: Final = "metadata_text"
"""PostgreSQL's column with the exact JSON text of ``metadata``."""

COLUMNS: Final[tuple[str, ...]] = tuple(Entry.__struct_fields__)
"""Column names, in the order of the entry fields (and of every selected row)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def to_micros(value: datetime) -> int:
    """Return an aware datetime as integer microseconds since the epoch.

    Example:
        >>> to_micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC))
        1000005
    """
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """Return integer microseconds since the epoch as an aware UTC datetime.

    Example:
        >>> from_micros(1000005).isoformat()
        '1970-01-01T00:00:01.000005+00:00'
    """
    return _EPOCH + timedelta(0, 0, value)


def validate_identifier(kind: str, name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ``ConfigError``."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"{kind} {name!r} is not a plain identifier: use 1-40 ASCII letters, digits "
            "and underscores, not starting with a digit"
        )
    return name


def entry_params(entry: Entry) -> dict[str, Any]:
    """Return the DB-API parameter values of a (normalized) entry, by column name."""
    return {
        "key": entry.key,
        "blob_ref": entry.blob_ref,
        "handler": entry.handler,
        "format": entry.format,
        "format_info": encode_json(entry.format_info),
        "codec": entry.codec,
        "size": entry.size,
        "raw_size": entry.raw_size,
        "content_hash": entry.content_hash,
        "etag": entry.etag,
        "version_id": entry.version_id,
        "created_at": to_micros(entry.created_at),
        "updated_at": to_micros(entry.updated_at),
        "accessed_at": to_micros(entry.accessed_at),
        "access_count": entry.access_count,
        "metadata": encode_json(entry.metadata),
        "signature": entry.signature,
        "inline": entry.inline,
    }


_TEMPLATE: Final = Entry.new("row")
_json_decoder = msgspec.json.Decoder()


def row_to_entry(row: Sequence[Any]) -> Entry:
    """Build an entry from a row whose first columns are :data:`COLUMNS`, in order.

    Rows were validated when they were written, so the entry is filled in place on a
    copy of a template instead of going through ``Entry.__init__`` (about a third of
    the time of reading 1,000 entries).
    """
    entry: Entry = _TEMPLATE.__copy__()  # type: ignore[attr-defined]  # msgspec's stubs lack Struct.__copy__
    entry.key = row[0]
    entry.blob_ref = row[1]
    entry.handler = row[2]
    entry.format = row[3]
    entry.format_info = {} if row[4] == "{}" else _json_decoder.decode(row[4])
    entry.codec = row[5]
    entry.size = row[6]
    entry.raw_size = row[7]
    entry.content_hash = row[8]
    entry.etag = row[9]
    entry.version_id = row[10]
    # Positional timedelta arguments are measurably faster; equal timestamps (a new
    # entry has three) share one immutable datetime.
    created, updated, accessed = row[11], row[12], row[13]
    entry.created_at = created_at = _EPOCH + timedelta(0, 0, created)
    entry.updated_at = updated_at = (
        created_at if updated == created else _EPOCH + timedelta(0, 0, updated)
    )
    entry.accessed_at = updated_at if accessed == updated else _EPOCH + timedelta(0, 0, accessed)
    entry.access_count = row[14]
    metadata = row[15]  # SQLite and PostgreSQL (cast to text) both give JSON text
    entry.metadata = metadata if type(metadata) is dict else _json_decoder.decode(metadata)
    entry.signature = row[16]
    inline = row[17]
    entry.inline = None if inline is None else bytes(inline)
    return entry


def row_to_payload(row: Sequence[Any]) -> PayloadInfo:
    """Build a :class:`PayloadInfo` from a row of the ``PAYLOAD_FIELDS`` columns, in order,
    optionally followed by the ``PAYLOAD_STATE_FIELDS`` columns (metadata, accessed_at)."""
    key, blob_ref, handler, fmt, format_info, codec, size, raw_size, content_hash = row[:9]
    signature, inline = row[9], row[10]
    metadata = accessed_at = None
    if len(row) > 11:
        metadata, accessed_at = row[11], _EPOCH + timedelta(0, 0, row[12])
        if type(metadata) is not dict:  # SQLite and PostgreSQL (cast to text) give JSON text
            metadata = _json_decoder.decode(metadata)
    return PayloadInfo(
        key=key,
        blob_ref=blob_ref,
        handler=handler,
        format=fmt,
        format_info={} if format_info == "{}" else _json_decoder.decode(format_info),
        codec=codec,
        size=size,
        raw_size=raw_size,
        content_hash=content_hash,
        signature=signature,
        inline=None if inline is None else bytes(inline),
        metadata=metadata,
        accessed_at=accessed_at,
    )


class Statement(msgspec.Struct, frozen=True):
    """A compiled statement, ready for a DB-API cursor.

    Bind parameters named ``p_<name>`` take ``values[<name>]``; other parameters keep
    the value compiled into the statement (filter operands). ``reusable`` statements run
    many times with the same shape (worth a server-side prepared plan); the others are
    planned with their values each time (filters, ``IN`` lists: a generic plan made while
    a table was small would scan it once it has grown).
    """

    sql: str
    names: tuple[str, ...]
    sources: tuple[str, ...]
    compiled_values: Mapping[str, Any]
    positional: bool
    reusable: bool = True

    def bind(self, values: Mapping[str, Any] | None = None) -> Sequence[Any] | dict[str, Any]:
        """Return the DB-API parameters for ``values``."""
        if values is None:
            values = self.compiled_values
        elif self.compiled_values:
            values = {**self.compiled_values, **values}
        if self.positional:
            return tuple(map(values.__getitem__, self.sources))
        return {name: values[source] for name, source in zip(self.names, self.sources, strict=True)}

    def bind_sequence(self, values: Sequence[Any]) -> Sequence[Any] | dict[str, Any]:
        """Return the parameters of a statement whose binds are ``p_k0 .. p_kN``, in order."""
        if self.positional:
            return values
        return dict(zip(self.names, values, strict=True))


def widen_in_list(template: Statement, count: int) -> Statement:
    """Return the one-key statement ``template`` (``key IN (?)``, parameter ``p_k0``) for
    ``count`` keys (``p_k0`` .. ``p_k<count-1>``).

    Example:
        >>> one = Statement("SELECT 1 WHERE k IN (?)", ("p_k0",), ("k0",), {}, True, False)
        >>> widen_in_list(one, 3).sql
        'SELECT 1 WHERE k IN (?, ?, ?)'
    """
    if count == 1:
        return template
    names = tuple(f"p_k{i}" for i in range(count))
    if template.positional:
        one, many = "IN (?)", f"IN ({', '.join('?' * count)})"
    else:  # named (PostgreSQL's pyformat): %(p_k0)s, %(p_k1)s, ...
        one = "IN (%(p_k0)s)"
        many = "IN (" + ", ".join(f"%({name})s" for name in names) + ")"
    if template.sql.count(one) != 1 or template.names != ("p_k0",):
        raise ValueError(f"not a one-key IN statement: {template.sql!r}")
    return Statement(
        template.sql.replace(one, many),
        names,
        tuple(name[2:] for name in names),
        template.compiled_values,
        template.positional,
        template.reusable,
    )
