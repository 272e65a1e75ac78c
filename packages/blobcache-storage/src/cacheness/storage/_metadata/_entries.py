"""Validation and derivation of entries, shared by every metadata backend (private).

Every backend stores what :func:`normalize_entry` returns, so an entry reads back the
same from memory, a JSON file, SQLite or PostgreSQL: metadata and ``format_info`` go
through JSON (tuples become lists, a deep copy is taken), and anything a SQL database
could not store faithfully is refused up front with :class:`InvalidEntryError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from cacheness.storage._entry import MUTABLE_FIELDS, Entry, validate_key
from cacheness.storage._filters import INT64_MAX, OrderBy, parse_order_by
from cacheness.storage._text import text_problem
from cacheness.storage._validate import is_int
from cacheness.storage.errors import (
    EntryExistsError,
    EntryNotFoundError,
    FilterError,
    InvalidEntryError,
    InvalidKeyError,
    KeyImmutableError,
)

TIMESTAMP_FIELDS: Final = ("created_at", "updated_at", "accessed_at")
_TEXT_FIELDS: Final = ("blob_ref", "handler", "format", "codec", "content_hash")
_OPTIONAL_TEXT_FIELDS: Final = ("etag", "version_id", "signature")
_INT_FIELDS: Final = ("size", "raw_size", "access_count")
_JSON_FIELDS: Final = ("metadata", "format_info")
_MAX_DEPTH: Final = 64

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(Entry)


_UNSURE: Final = object()
_LONG_NUMBER: Final = re.compile(rb"[0-9]{19}")  # 18 digits always fit in 64 bits


def _exact_json_copy(value: object) -> Any:
    """A copy of ``value`` through JSON when that is certainly exact, else ``_UNSURE``.

    The fast path of :func:`json_problem` (one C round trip instead of a walk in Python):
    what msgspec cannot encode, what does not decode back equal (NaN, tuples, non-str
    keys, dates, bytes...), NUL characters, numbers of 19 digits or more (maybe beyond
    64 bits) and more brackets than the nesting limit go to the field-by-field check,
    which accepts or explains them.
    """
    try:
        encoded = _json_encoder.encode(value)
    except (TypeError, ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
        return _UNSURE
    if (
        b"\\u0000" in encoded
        or encoded.count(b"[") + encoded.count(b"{") > _MAX_DEPTH
        or _LONG_NUMBER.search(encoded)
    ):
        return _UNSURE
    copy = _json_decoder.decode(encoded)
    return copy if copy == value else _UNSURE


def encode_json(value: Any) -> str:
    """Encode a validated JSON value as compact text."""
    return _json_encoder.encode(value).decode()


def decode_json(text: str | bytes) -> Any:
    """Decode JSON text written by :func:`encode_json`."""
    return _json_decoder.decode(text)


def clone(entry: Entry) -> Entry:
    """Return a deep copy of ``entry`` (callers may mutate what a backend returns)."""
    return _entry_decoder.decode(_msgpack_encoder.encode(entry))


def _check_text(field: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        expected = "a str or None" if optional else "a str"
        raise InvalidEntryError(f"Entry.{field} must be {expected}, got {value!r}")
    problem = text_problem(value)
    if problem:
        raise InvalidEntryError(f"Entry.{field} {value!r} {problem}; remove it")


def _ascii_texts(values: tuple[object, ...]) -> bool:
    """True when every value is a str of ASCII without NUL (storable without a closer look)."""
    try:
        joined = "".join(values)  # type: ignore[arg-type]  # a non-str raises TypeError
    except TypeError:
        return False
    return joined.isascii() and "\x00" not in joined


def _check_json(field: str, value: object) -> None:
    """Refuse what JSON (and PostgreSQL's jsonb) cannot hold exactly."""
    problem = json_problem(value)
    if problem is not None:
        raise InvalidEntryError(f"Entry.{field}{problem}")


def metadata_problem(value: object) -> str | None:
    """Return why ``value`` cannot be stored as (part of) an entry's metadata, or None.

    Metadata is JSON that every index holds exactly: strings that encode as UTF-8 without
    NUL characters, integers of 64 bits, finite floats, string object keys, nesting up to
    64 levels. The cache layer asks this before it records key parameters.

    Example:
        >>> metadata_problem({"epochs": 10, "tags": ["a", "b"]}) is None
        True
        >>> metadata_problem({"big": 2**70})
        "['big']: 1180591620717411303424 does not fit in 64 bits; store it as a string"
    """
    if _exact_json_copy(value) is not _UNSURE:
        return None
    problem = json_problem(value)
    return None if problem is None else problem.removeprefix(": ").lstrip()


def json_problem(value: object, where: str = "", depth: int = 0) -> str | None:
    """Why ``value`` is no exact JSON: ``"<where>: <problem>"``, or None when it is."""
    if depth > _MAX_DEPTH:
        return f" is nested deeper than {_MAX_DEPTH} levels"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else f"{where}: the string {value!r} {problem}"
    if isinstance(value, int):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            return f"{where}: {value} does not fit in 64 bits; store it as a string"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where}: JSON cannot hold {value!r}"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where}: object keys must be strings, got {key!r}"
            problem = text_problem(key)
            if problem:
                return f"{where}: the key {key!r} {problem}"
            found = json_problem(item, f"{where}[{key!r}]", depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = json_problem(item, f"{where}[{index}]", depth + 1)
            if found is not None:
                return found
        return None
    return (
        f"{where}: {type(value).__name__} is not JSON data "
        "(use str, int, float, bool, None, lists and dicts)"
    )


def normalize_entry(entry: object) -> Entry:
    """Validate ``entry`` and return the copy a backend stores.

    Raises:
        InvalidEntryError: a field has the wrong type or a value SQL cannot store.
        InvalidKeyError: the key is invalid.
    """
    if not isinstance(entry, Entry):
        raise InvalidEntryError(f"expected an Entry, got {type(entry).__name__}: {entry!r}")
    validate_key(entry.key)
    # Every put comes here: the common case (ASCII texts, no optional texts, plain ints)
    # is answered in one pass; anything else gets the field-by-field checks and messages.
    texts = (entry.blob_ref, entry.handler, entry.format, entry.codec, entry.content_hash)
    if not _ascii_texts(texts):
        for field, text in zip(_TEXT_FIELDS, texts, strict=True):
            _check_text(field, text)
    signature = entry.signature  # set on most entries of a signing store: ASCII, quick
    if (
        entry.etag is not None
        or entry.version_id is not None
        or (signature is not None and not _ascii_texts((signature,)))
    ):
        for field in _OPTIONAL_TEXT_FIELDS:
            _check_text(field, getattr(entry, field), optional=True)
    counts = (entry.size, entry.raw_size, entry.access_count)
    if not all(type(value) is int and 0 <= value <= INT64_MAX for value in counts):
        for field, value in zip(_INT_FIELDS, counts, strict=True):
            if not is_int(value) or not 0 <= value <= INT64_MAX:
                raise InvalidEntryError(
                    f"Entry.{field} must be an int between 0 and 2**63-1, got {value!r}"
                )
    for field in TIMESTAMP_FIELDS:
        value = getattr(entry, field)
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise InvalidEntryError(
                f"Entry.{field} must be a timezone-aware datetime, got {value!r}"
            )
    json_values: dict[str, dict[str, Any]] = {}
    for field in _JSON_FIELDS:
        value = getattr(entry, field)
        if not isinstance(value, dict):
            raise InvalidEntryError(f"Entry.{field} must be a dict, got {value!r}")
        if not value:  # often format_info: nothing to check or to copy through JSON
            json_values[field] = {}
            continue
        copy = _exact_json_copy(value)
        if copy is _UNSURE:
            try:
                _check_json(field, value)
            except RecursionError:
                raise InvalidEntryError(f"Entry.{field} is nested too deeply") from None
            copy = _json_decoder.decode(_json_encoder.encode(value))
        json_values[field] = copy
    inline = entry.inline
    if inline is not None:
        if not isinstance(inline, bytes | bytearray | memoryview):
            raise InvalidEntryError(f"Entry.inline must be bytes or None, got {inline!r}")
        inline = bytes(inline)
    try:
        return msgspec.structs.replace(entry, inline=inline, **json_values)
    except (TypeError, ValueError) as exc:
        raise InvalidEntryError(f"invalid entry {entry.key!r}: {exc}") from exc


def validate_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check the field names of a partial update.

    Raises:
        KeyImmutableError: ``key`` is among the changes (rename with ``move``).
        InvalidEntryError: a name is not an entry field.
    """
    if "key" in changes:
        raise KeyImmutableError(
            f"an entry's key cannot be updated (asked to set key={changes['key']!r}); "
            "use move(src, dst) to rename an entry"
        )
    unknown = set(changes) - MUTABLE_FIELDS
    if unknown:
        raise InvalidEntryError(
            f"unknown Entry field(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(MUTABLE_FIELDS))}"
        )
    return dict(changes)


def checked_values(fields: Mapping[str, Any]) -> Entry:
    """Validate the values of a partial update on their own.

    Returns:
        A throwaway entry holding the normalized values (read the changed fields off it).

    Raises:
        InvalidEntryError: a value has the wrong type or cannot be stored.
    """
    try:
        probe = Entry.new("probe", **fields)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidEntryError(f"invalid update: {exc}") from exc
    return normalize_entry(probe)


def updated_entry(entry: Entry, changes: Mapping[str, Any]) -> Entry:
    """Return ``entry`` with validated ``changes`` applied, normalized for storage."""
    try:
        changed = msgspec.structs.replace(entry, **changes)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidEntryError(f"invalid update of {entry.key!r}: {exc}") from exc
    return normalize_entry(changed)


def checked_changes(changes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{key: {field: value}}`` with every key and field name checked (``update_many``)."""
    return {validate_key(key): validate_changes(fields) for key, fields in changes.items()}


def holds(entry: Entry, expected: Mapping[str, Any]) -> bool:
    """True when ``entry`` has every field value of ``expected`` (see ``update_many_if``)."""
    return all(getattr(entry, field) == value for field, value in expected.items())


def updated_entries(
    current: Mapping[str, Entry],
    checked: Mapping[str, Mapping[str, Any]],
    expect: Mapping[str, Mapping[str, Any]],
) -> dict[str, Entry]:
    """The entries of ``current`` with their ``checked`` changes applied, for the keys
    whose entry holds ``expect[key]``: what an ``update_many_if`` writes."""
    return {
        key: updated_entry(current[key], fields)
        for key, fields in checked.items()
        if key in current and holds(current[key], expect.get(key, {}))
    }


def copied_entry(source: Entry, key: str, changes: Mapping[str, Any], now: datetime) -> Entry:
    """The entry ``copy(source.key, key, **changes)`` writes.

    Timestamps are ``now`` and ``access_count`` is 0 unless ``changes`` say otherwise.
    """
    fields = validate_changes(changes)
    validate_key(key)
    base = {"created_at": now, "updated_at": now, "accessed_at": now, "access_count": 0}
    return updated_entry(msgspec.structs.replace(source, key=key), {**base, **fields})


def moved_entry(source: Entry, key: str, now: datetime) -> Entry:
    """The entry ``move(source.key, key)`` writes: same record, new key, ``updated_at=now``."""
    validate_key(key)
    return msgspec.structs.replace(source, key=key, updated_at=now)


def query_args(
    order_by: str, descending: bool, limit: int | None, offset: int
) -> tuple[OrderBy, int | None, int]:
    """Validate the arguments of ``query`` (shared by every backend).

    A ``limit`` or ``offset`` beyond what an index can count (2**63 - 1) means the
    same as that bound: no limit, or past the last entry (nothing). SQL engines
    refuse larger numbers, so they never reach one.

    Raises:
        FilterError: unknown ``order_by`` field, negative or non-integer limit/offset.
    """
    spec = parse_order_by(order_by)
    if not isinstance(descending, bool):
        raise FilterError(f"descending must be True or False, got {descending!r}")
    if limit is not None and (not is_int(limit) or limit < 0):
        raise FilterError(f"limit must be None or an int >= 0, got {limit!r}")
    if not is_int(offset) or offset < 0:
        raise FilterError(f"offset must be an int >= 0, got {offset!r}")
    if limit is not None and limit > INT64_MAX:
        limit = None
    return spec, limit, min(offset, INT64_MAX)


def unique_keys(keys: Iterable[str]) -> list[str]:
    """Validate ``keys`` and drop repeats, keeping the first occurrence's order."""
    if isinstance(keys, str):
        raise InvalidKeyError(f"expected an iterable of keys, got the single key {keys!r}")
    return list(dict.fromkeys(validate_key(key) for key in keys))


def exists_error(key: str) -> EntryExistsError:
    """The error raised when a create-only write finds ``key`` taken."""
    return EntryExistsError(
        f"an entry with key {key!r} already exists; pass overwrite=True to replace it"
    )


def not_found_error(key: str) -> EntryNotFoundError:
    """The error raised when ``copy``/``move`` cannot find their source."""
    return EntryNotFoundError(f"no entry with key {key!r}")
