"""The metadata filter language shared by every metadata backend.

A filter is a mapping from field names to a value (equality) or to a mapping of
operators, e.g. ``{"metadata.project": "ml", "size": {"$gt": 10_000}}``. Conditions on
several fields must all hold. ``$and``, ``$or`` (lists of filters) and ``$not`` (a
filter) combine filters. An empty filter (or ``None``) matches every entry.

Fields:

* ``key``, ``blob_ref``, ``handler``, ``format``, ``codec``, ``content_hash``: strings;
* ``size``, ``raw_size``, ``access_count``: integers (``int`` or ``float`` operands);
* ``created_at``, ``updated_at``, ``accessed_at``: timestamps; operands are
  timezone-aware ``datetime`` objects or ISO-8601 strings with an offset;
* ``metadata.<path>``: a value inside the user's metadata; dots separate the keys of
  nested objects (``metadata.train.lr``). A backslash escapes a dot or a backslash that
  belongs to a key (``metadata.a\\.b`` names the key ``"a.b"``);
  :func:`metadata_field` writes the escapes. Arrays are not indexed into.

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $prefix $exists``.

Semantics, identical in every backend:

* Comparisons are type-strict on metadata: a string never equals a number, ``True``
  never equals ``1``, ``1`` equals ``1.0``. A missing path or a value of another type
  matches no ``$eq``/``$gt``/``$lt``/... condition, so ``$ne`` and ``$nin`` match it.
* ``$gt``/``$gte``/``$lt``/``$lte`` compare numbers with numbers and strings with
  strings (by Unicode code point); ``$prefix`` matches strings.
* ``$exists`` (metadata only): the path is present (a JSON ``null`` is present).

Values are data, never code: SQL backends bind every value and every metadata path as a
parameter. Anything the language does not know is a :class:`~cacheness.storage.errors.FilterError`
(also a ``ValueError``) naming the culprit, never "match all"; so is a string operand or
path key holding NUL or a lone surrogate, which no stored string can contain. Every other
metadata key can be named, quotes, backslashes and control characters included.

Example:
    >>> from cacheness.storage import Entry
    >>> from cacheness.storage import matches
    >>> entry = Entry.new("exp_1", size=20_000, metadata={"project": "ml", "train": {"lr": 0.1}})
    >>> matches(entry, {"metadata.project": "ml", "size": {"$gt": 10_000}})
    True
    >>> matches(entry, {"metadata.train.lr": {"$lt": 0.01}})
    False
    >>> matches(entry, {"$or": [{"key": {"$prefix": "exp_"}}, {"handler": "numpy"}]})
    True
    >>> matches(entry, {"size": {"$regex": "^1"}})
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.FilterError: unknown operator '$regex' on field 'size'; known: $eq, ...
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import msgspec

from cacheness.storage._text import text_problem
from cacheness.storage._validate import is_number
from cacheness.storage.errors import FilterError

if TYPE_CHECKING:
    from cacheness.storage._entry import Entry


Filter: TypeAlias = Mapping[str, Any]
"""A filter as users write it, e.g. ``{"metadata.project": "ml", "size": {"$gt": 10}}``."""

FieldKind: TypeAlias = Literal["str", "int", "time", "json"]
"""How a field's values compare: strings, integers, timestamps or metadata (JSON)."""

FIELDS: Final[Mapping[str, FieldKind]] = {
    "key": "str",
    "blob_ref": "str",
    "handler": "str",
    "format": "str",
    "codec": "str",
    "content_hash": "str",
    "size": "int",
    "raw_size": "int",
    "access_count": "int",
    "created_at": "time",
    "updated_at": "time",
    "accessed_at": "time",
}
"""Entry fields a filter may name, besides ``metadata.<path>``."""

ORDER_FIELDS: Final[tuple[str, ...]] = (
    "key",
    "handler",
    "size",
    "raw_size",
    "created_at",
    "updated_at",
    "accessed_at",
    "access_count",
)
"""Fields ``query(order_by=...)`` accepts, besides ``metadata.<path>``."""

COMPARISON_OPERATORS: Final[tuple[str, ...]] = (
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$prefix",
    "$exists",
)
"""Operators that apply to one field."""

LOGICAL_OPERATORS: Final[tuple[str, ...]] = ("$and", "$or", "$not")
"""Operators that combine filters (top level of a filter mapping)."""

INT64_MAX: Final[int] = 2**63 - 1
"""Largest integer operand (SQL backends store 64-bit integers)."""

_RANGE_OPS = frozenset({"$gt", "$gte", "$lt", "$lte"})
_LIST_OPS = frozenset({"$in", "$nin"})
_METADATA = "metadata"


class Condition(msgspec.Struct, frozen=True):
    """One validated ``field operator value`` condition.

    Attributes:
        field: the entry field (``"key"``...) or ``"metadata"``.
        path: the keys inside ``metadata`` (empty for entry fields).
        kind: how values compare (see :data:`FieldKind`).
        op: the operator (``"$eq"``...).
        value: the normalized operand: a tz-aware UTC ``datetime`` for timestamps, a
            tuple for ``$in``/``$nin``, a ``bool`` for ``$exists``.
    """

    field: str
    path: tuple[str, ...]
    kind: FieldKind
    op: str
    value: Any

    @property
    def name(self) -> str:
        """The field as written in the filter (``"metadata.a.b"``)."""
        return metadata_field(*self.path) if self.path else self.field


class And(msgspec.Struct, frozen=True):
    """All of ``items`` hold (no items: matches everything)."""

    items: tuple[Expr, ...]


class Or(msgspec.Struct, frozen=True):
    """At least one of ``items`` holds."""

    items: tuple[Expr, ...]


class Not(msgspec.Struct, frozen=True):
    """``item`` does not hold."""

    item: Expr


Expr: TypeAlias = Condition | And | Or | Not
"""A parsed, validated filter."""


class OrderBy(msgspec.Struct, frozen=True):
    """A validated ``order_by`` field: an entry field, or ``metadata`` with a path."""

    field: str
    path: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The field as written (``"metadata.score"``)."""
        return metadata_field(*self.path) if self.path else self.field


# --------------------------------------------------------------------------- parsing


def parse_filter(filter: Filter | Expr | None) -> Expr:
    """Validate ``filter`` and return its parsed form.

    Args:
        filter: a filter mapping, or ``None`` (matches everything); a form parsed
            already is returned as it is.

    Returns:
        An :data:`Expr` tree that backends evaluate or compile.

    Raises:
        FilterError: unknown field or operator, wrongly typed operand, malformed shape.

    Example:
        >>> parse_filter({"size": {"$gte": 1, "$lt": 10}})
        And(items=(Condition(field='size', path=(), kind='int', op='$gte', value=1), \
Condition(field='size', path=(), kind='int', op='$lt', value=10)))
        >>> parse_filter({"created_at": {"$gt": "2026-01-01T00:00:00"}})
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.FilterError: field 'created_at': timestamp '2026-01-01T00:00:00' \
has no UTC offset; write '2026-01-01T00:00:00+00:00' or pass an aware datetime
    """
    if filter is None:
        return And(())
    if isinstance(filter, And | Or | Not | Condition):
        return filter
    if not isinstance(filter, Mapping):
        raise FilterError(f"a filter must be a mapping, got {type(filter).__name__}: {filter!r}")
    items: list[Expr] = []
    for name, spec in filter.items():
        if not isinstance(name, str):
            raise FilterError(f"filter field names must be strings, got {name!r}")
        if name.startswith("$"):
            items.append(_parse_logical(name, spec))
        else:
            items.extend(_parse_field(name, spec))
    return items[0] if len(items) == 1 else And(tuple(items))


def combine_filters(*filters: Filter | None) -> Filter | None:
    """Return a filter that all of ``filters`` must match; None when none is given.

    ``None`` and empty filters are left out; one filter is returned as it is, several
    are joined with ``$and``. Nothing is parsed here: backends validate the result.

    Raises:
        FilterError: a filter is neither None nor a mapping.

    Example:
        >>> combine_filters({"key": {"$prefix": "exp_"}}, None, {"size": {"$gt": 10}})
        {'$and': [{'key': {'$prefix': 'exp_'}}, {'size': {'$gt': 10}}]}
        >>> combine_filters(None, {}) is None
        True
    """
    parts: list[Filter] = []
    for filter in filters:
        if filter is None:
            continue
        if not isinstance(filter, Mapping):
            raise FilterError(
                f"a filter must be a mapping such as {{'metadata.owner': 'ana'}}, "
                f"got {type(filter).__name__} {filter!r}"
            )
        if filter:
            parts.append(filter)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _parse_logical(name: str, spec: Any) -> Expr:
    if name == "$not":
        if not isinstance(spec, Mapping):
            raise FilterError(f"'$not' takes a filter mapping, got {spec!r}")
        return Not(parse_filter(spec))
    if name in ("$and", "$or"):
        if isinstance(spec, Mapping | str | bytes) or not isinstance(spec, Iterable):
            raise FilterError(f"{name!r} takes a non-empty list of filters, got {spec!r}")
        parts = tuple(parse_filter(_require_mapping(name, part)) for part in spec)
        if not parts:
            raise FilterError(f"{name!r} takes a non-empty list of filters, got an empty list")
        return And(parts) if name == "$and" else Or(parts)
    known = ", ".join(LOGICAL_OPERATORS)
    raise FilterError(f"unknown top-level operator {name!r}; known: {known}")


def _require_mapping(name: str, part: Any) -> Mapping[str, Any]:
    if not isinstance(part, Mapping):
        raise FilterError(f"{name!r} takes a list of filter mappings, got an item {part!r}")
    return part


def _split_field(name: str) -> tuple[str, tuple[str, ...], FieldKind]:
    if name in FIELDS:
        return name, (), FIELDS[name]
    head, dot, rest = name.partition(".")
    if head == _METADATA:
        if not dot or not rest:
            raise FilterError(
                f"field {name!r}: name a value inside metadata, e.g. 'metadata.project'"
            )
        return _METADATA, _metadata_path(name, rest), "json"
    known = ", ".join([*FIELDS, "metadata.<path>"])
    raise FilterError(f"unknown field {name!r}; known: {known}")


def metadata_field(*path: str) -> str:
    r"""Return the filter field naming the metadata value at ``path`` (keys, outermost first).

    Dots and backslashes inside a key are escaped with a backslash, so any key can be
    named, whatever characters it holds.

    Raises:
        FilterError: no key given, or a key that is not a non-empty string.

    Example:
        >>> metadata_field("train", "lr")
        'metadata.train.lr'
        >>> metadata_field("lr.max", "a\\b")
        'metadata.lr\\.max.a\\\\b'
        >>> parse_filter({metadata_field("lr.max"): 1}).path
        ('lr.max',)
    """
    if not path:
        raise FilterError("metadata_field needs at least one key")
    for segment in path:
        if not isinstance(segment, str) or not segment:
            raise FilterError(f"metadata keys must be non-empty strings, got {segment!r}")
    escaped = (segment.replace("\\", "\\\\").replace(".", "\\.") for segment in path)
    return ".".join((_METADATA, *escaped))


def _metadata_path(name: str, rest: str) -> tuple[str, ...]:
    path: list[str] = []
    if "\\" not in rest:  # the common case: no escapes
        path = rest.split(".")
        rest = ""
    current: list[str] = []
    chars = iter(rest)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in (".", "\\"):
                found = "\\" + escaped
                raise FilterError(
                    f"field {name!r}: a backslash in a metadata path escapes a dot or a "
                    f"backslash, got {found!r}; metadata_field() writes the escapes"
                )
            current.append(escaped)
        elif char == ".":
            path.append("".join(current))
            current = []
        else:
            current.append(char)
    if rest:
        path.append("".join(current))
    for segment in path:
        if not segment:
            raise FilterError(f"field {name!r}: empty key in the metadata path")
        _text(name, "metadata path key", segment)
    return tuple(path)


def _parse_field(name: str, spec: Any) -> list[Condition]:
    field, path, kind = _split_field(name)
    if not isinstance(spec, Mapping):
        return [_condition(name, field, path, kind, "$eq", spec)]
    if not spec:
        raise FilterError(f"field {name!r}: empty operator mapping; use e.g. {{'$eq': value}}")
    conditions = []
    for op, operand in spec.items():
        if not (isinstance(op, str) and op.startswith("$")):
            raise FilterError(
                f"field {name!r}: expected operators such as '$eq', got key {op!r}; "
                "to match a nested value, name it with a dotted path (metadata.a.b)"
            )
        conditions.append(_condition(name, field, path, kind, op, operand))
    return conditions


def _condition(
    name: str, field: str, path: tuple[str, ...], kind: FieldKind, op: str, operand: Any
) -> Condition:
    if op not in COMPARISON_OPERATORS:
        known = ", ".join(COMPARISON_OPERATORS)
        raise FilterError(f"unknown operator {op!r} on field {name!r}; known: {known}")
    if op == "$exists":
        if kind != "json":
            raise FilterError(
                f"'$exists' applies to metadata paths only; entry field {name!r} always exists"
            )
        if not isinstance(operand, bool):
            raise FilterError(f"field {name!r}: '$exists' takes True or False, got {operand!r}")
        return Condition(field, path, kind, op, operand)
    if op in _LIST_OPS:
        if isinstance(operand, str | bytes | Mapping) or not isinstance(operand, Iterable):
            raise FilterError(f"field {name!r}: {op!r} takes a list of values, got {operand!r}")
        values = tuple(_operand(name, kind, op, item) for item in operand)
        return Condition(field, path, kind, op, values)
    return Condition(field, path, kind, op, _operand(name, kind, op, operand))


def _operand(name: str, kind: FieldKind, op: str, value: Any) -> Any:
    if op == "$prefix" and kind not in ("str", "json"):
        raise FilterError(f"'$prefix' applies to string fields, not to {kind} field {name!r}")
    if kind == "str" or op == "$prefix":
        if not isinstance(value, str):
            raise FilterError(f"field {name!r}: {op!r} takes a string, got {value!r}")
        return _text(name, f"{op!r} operand", value)
    if kind == "int":
        return _number(name, op, value)
    if kind == "time":
        return _timestamp(name, value)
    return _json_scalar(name, op, value)


def _number(name: str, op: str, value: Any) -> int | float:
    if not is_number(value):
        raise FilterError(f"field {name!r}: {op!r} takes a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"field {name!r}: {op!r} takes a finite number, got {value!r}")
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise FilterError(f"field {name!r}: {value} is outside the 64-bit integer range")
    return value


def _timestamp(name: str, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise FilterError(f"field {name!r}: {value!r} is not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            raise FilterError(
                f"field {name!r}: timestamp {value!r} has no UTC offset; "
                f"write '{value}+00:00' or pass an aware datetime"
            )
        return parsed.astimezone(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise FilterError(
                f"field {name!r}: naive datetime {value!r}; pass a timezone-aware datetime "
                "(e.g. datetime.now(timezone.utc))"
            )
        return value.astimezone(UTC)
    raise FilterError(
        f"field {name!r}: expected a timezone-aware datetime or an ISO-8601 string, got {value!r}"
    )


def _text(name: str, what: str, value: str) -> str:
    """A string operand or path key: it must be a string an index can store."""
    problem = text_problem(value)
    if problem:
        raise FilterError(
            f"field {name!r}: {what} {value!r} {problem}, which no stored string can; remove it"
        )
    return value


def _json_scalar(name: str, op: str, value: Any) -> Any:
    if op in _RANGE_OPS:
        if isinstance(value, str):
            return _text(name, f"{op!r} operand", value)
        if isinstance(value, bool) or value is None:
            raise FilterError(f"field {name!r}: {op!r} takes a number or a string, got {value!r}")
        return _number(name, op, value)
    if isinstance(value, str):
        return _text(name, f"{op!r} operand", value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(name, op, value)
    raise FilterError(
        f"field {name!r}: {op!r} takes a string, number, bool or None, got "
        f"{type(value).__name__} {value!r}; compare nested values with a dotted path"
    )


def parse_order_by(order_by: str) -> OrderBy:
    """Validate an ``order_by`` field name.

    Raises:
        FilterError: the field cannot be ordered by.

    Example:
        >>> parse_order_by("metadata.score")
        OrderBy(field='metadata', path=('score',))
    """
    if not isinstance(order_by, str):
        raise FilterError(f"order_by must be a field name, got {order_by!r}")
    if order_by in ORDER_FIELDS:
        return OrderBy(order_by)
    head, dot, rest = order_by.partition(".")
    if head == _METADATA and dot and rest:
        return OrderBy(_METADATA, _metadata_path(order_by, rest))
    known = ", ".join([*ORDER_FIELDS, "metadata.<path>"])
    raise FilterError(f"cannot order by {order_by!r}; known: {known}")


# --------------------------------------------------------------------------- evaluation

_MISSING: Final = object()


def _lookup(metadata: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metadata
    for segment in path:
        if type(value) is not dict:
            return _MISSING
        value = value.get(segment, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _same_kind(value: Any, operand: Any) -> bool:
    """True when a metadata value and an operand compare under the type-strict rules."""
    value_type, operand_type = type(value), type(operand)
    if operand_type is str or operand_type is bool:
        return value_type is operand_type
    if operand is None:
        return value is None
    return value_type is int or value_type is float


_COMPARE: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "$eq": operator.eq,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _with(cond: Condition, **changes: Any) -> Condition:
    return msgspec.structs.replace(cond, **changes)


def _json_predicate(cond: Condition) -> Callable[[Any], bool]:
    """A predicate over the value found at ``cond.path`` (``_MISSING`` when absent)."""
    op, operand = cond.op, cond.value
    if op == "$exists":
        return (lambda v: v is not _MISSING) if operand else (lambda v: v is _MISSING)
    if op == "$prefix":
        return lambda v: type(v) is str and v.startswith(operand)
    if op in ("$ne", "$nin"):
        positive = _json_predicate(_with(cond, op="$eq" if op == "$ne" else "$in"))
        return lambda v: not positive(v)
    if op == "$in":
        members = [_json_predicate(_with(cond, op="$eq", value=item)) for item in operand]
        return lambda v: any(member(v) for member in members)
    compare = _COMPARE[op]
    return lambda v: _same_kind(v, operand) and compare(v, operand)


def _field_predicate(cond: Condition) -> Callable[[Any], bool]:
    op, operand = cond.op, cond.value
    if op == "$prefix":
        return lambda v: v.startswith(operand)
    if op == "$ne":
        return lambda v: v != operand
    if op == "$in":
        members = set(operand)
        return lambda v: v in members
    if op == "$nin":
        excluded = set(operand)
        return lambda v: v not in excluded
    compare = _COMPARE[op]
    return lambda v: compare(v, operand)


def _compile(expr: Expr) -> Callable[[Entry], bool]:
    if isinstance(expr, Condition):
        if expr.kind == "json":
            test, path = _json_predicate(expr), expr.path
            if len(path) == 1:
                (segment,) = path
                return lambda e: test(e.metadata.get(segment, _MISSING))
            return lambda e: test(_lookup(e.metadata, path))
        field_test, getter = _field_predicate(expr), operator.attrgetter(expr.field)
        return lambda e: field_test(getter(e))
    if isinstance(expr, And):
        parts = [_compile(item) for item in expr.items]
        if not parts:
            return lambda e: True
        if len(parts) == 1:
            return parts[0]
        return lambda e: all(part(e) for part in parts)
    if isinstance(expr, Or):
        parts = [_compile(item) for item in expr.items]
        return lambda e: any(part(e) for part in parts)
    inner = _compile(expr.item)
    return lambda e: not inner(e)


def compile_predicate(filter: Filter | Expr | None) -> Callable[[Entry], bool]:
    """Return a function that tells whether an entry matches ``filter``.

    The filter is validated once; the returned function is what the memory and JSON
    backends run over their entries.

    Raises:
        FilterError: the filter is invalid.

    Example:
        >>> from cacheness.storage import Entry
        >>> is_big = compile_predicate({"size": {"$gte": 1000}})
        >>> is_big(Entry.new("a", size=5)), is_big(Entry.new("b", size=5000))
        (False, True)
    """
    return _compile(parse_filter(filter))


def matches(entry: Entry, filter: Filter | Expr | None) -> bool:
    """Return True when ``entry`` matches ``filter`` (see :func:`compile_predicate`).

    Example:
        >>> from cacheness.storage import Entry
        >>> matches(Entry.new("k", metadata={"n": 1}), {"metadata.n": 1.0})
        True
    """
    return compile_predicate(filter)(entry)


# --------------------------------------------------------------------------- ordering

_RANK_MISSING, _RANK_NULL, _RANK_BOOL, _RANK_NUMBER, _RANK_STR, _RANK_LIST, _RANK_DICT = range(7)


def json_rank(value: Any) -> int:
    """Return the sort rank of a metadata value's JSON type.

    Ordering by ``metadata.<path>`` sorts first by this rank (missing < null < booleans <
    numbers < strings < arrays < objects), then by value within booleans, numbers and
    strings, then by key. Every backend orders the same way.

    Example:
        >>> [json_rank(v) for v in (None, False, 3, "a", [], {})]
        [1, 2, 3, 4, 5, 6]
    """
    value_type = type(value)
    if value is None:
        return _RANK_NULL
    if value_type is bool:
        return _RANK_BOOL
    if value_type is int or value_type is float:
        return _RANK_NUMBER
    if value_type is str:
        return _RANK_STR
    if value_type is list:
        return _RANK_LIST
    if value_type is dict:
        return _RANK_DICT
    return _RANK_MISSING


def sort_key(order_by: str | OrderBy) -> Callable[[Entry], tuple[Any, ...]]:
    """Return the sort key function for ``order_by`` (ties are broken by ``key``).

    Raises:
        FilterError: the field cannot be ordered by.

    Example:
        >>> from cacheness.storage import Entry
        >>> entries = [Entry.new("b", size=1), Entry.new("a", size=1), Entry.new("c", size=0)]
        >>> [e.key for e in sorted(entries, key=sort_key("size"))]
        ['c', 'a', 'b']
    """
    spec = order_by if isinstance(order_by, OrderBy) else parse_order_by(order_by)
    if spec.field == "key":
        return lambda e: (e.key,)
    if spec.field != _METADATA:
        getter = operator.attrgetter(spec.field)
        return lambda e: (getter(e), e.key)
    path = spec.path

    def metadata_key(entry: Entry) -> tuple[Any, ...]:
        value = _lookup(entry.metadata, path)
        if value is _MISSING:
            return (_RANK_MISSING, 0, "", entry.key)
        rank = json_rank(value)
        if rank in (_RANK_BOOL, _RANK_NUMBER):
            return (rank, value, "", entry.key)
        return (rank, 0, value if rank == _RANK_STR else "", entry.key)

    return metadata_key
