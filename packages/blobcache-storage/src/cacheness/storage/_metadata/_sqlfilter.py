"""Compile parsed filters and orderings to SQLAlchemy expressions (private).

The semantics are those of :mod:`cacheness.storage._filters` (type-strict metadata
comparisons, missing paths match only ``$ne``/``$nin``/``$exists: False``); the
Python evaluator there is the reference and the conformance suite checks that both
agree. Every operand and every metadata path is a bound parameter.

SQLite reads metadata with ``json_type``/``json_extract`` and a quoted JSON path
(``$."a"."b"``); a key holding a double quote, a backslash or a control character, which
SQLite's path syntax cannot spell the same way in every SQLite version, is looked up with
``json_each`` subqueries instead (slower, exact). PostgreSQL uses ``jsonb`` operators:
``@>`` containment for equality (served by the GIN index), ``#>``/``#>>`` with a
``text[]`` path otherwise,
casting numbers to ``numeric`` only where ``jsonb_typeof`` says they are numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from cacheness.storage._filters import And, Condition, Expr, Or, OrderBy
from cacheness.storage._metadata._entries import encode_json
from cacheness.storage._metadata._sqlrows import to_micros

_COMPARE: Final[dict[str, Callable[[Any, Any], ColumnElement[bool]]]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
_MAX_CODE_POINT: Final = 0x10FFFF
_SQLITE_NUMBER: Final = ("integer", "real")


def prefix_upper(prefix: str) -> str | None:
    """Return the smallest string above every string starting with ``prefix``.

    ``prefix <= s < prefix_upper(prefix)`` holds exactly for the strings ``s`` that
    start with ``prefix`` (code point order); None means "no upper bound".

    Example:
        >>> prefix_upper("exp_"), prefix_upper("a\\U0010ffff"), prefix_upper("")
        ('exp`', 'b', None)
    """
    chars = list(prefix)
    while chars and ord(chars[-1]) == _MAX_CODE_POINT:
        chars.pop()
    if not chars:
        return None
    code = ord(chars[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters; UTF-8 skips them
        code = 0xE000
    chars[-1] = chr(code)
    return "".join(chars)


def _prefix(expr: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    upper = prefix_upper(prefix)
    lower = expr >= sa.literal(prefix, sa.Text)
    return lower if upper is None else sa.and_(lower, expr < sa.literal(upper, sa.Text))


def _not(expr: ColumnElement[bool]) -> ColumnElement[bool]:
    # SQL's NULL (a missing JSON path) must count as "false" before negating.
    return sa.not_(sa.func.coalesce(expr, sa.false()))


class _Compiler:
    def __init__(self, table: sa.Table, dialect: str) -> None:
        self.table = table
        self.dialect = dialect
        self.column = table.c.metadata

    def compile(self, expr: Expr) -> ColumnElement[bool]:
        if isinstance(expr, Condition):
            if expr.kind == "json":
                return self.metadata(expr)
            return self.field(expr)
        if isinstance(expr, And):
            return sa.and_(sa.true(), *(self.compile(item) for item in expr.items))
        if isinstance(expr, Or):
            return sa.or_(*(self.compile(item) for item in expr.items))
        return _not(self.compile(expr.item))

    # ------------------------------------------------------------------ entry fields

    def field(self, cond: Condition) -> ColumnElement[bool]:
        column = self.table.c[cond.field]
        convert = to_micros if cond.kind == "time" else (lambda value: value)
        if cond.op == "$prefix":
            return _prefix(column, cond.value)
        if cond.op in ("$in", "$nin"):
            values = [convert(value) for value in cond.value]
            return column.in_(values) if cond.op == "$in" else column.not_in(values)
        return _COMPARE[cond.op](column, convert(cond.value))

    # ------------------------------------------------------------------ metadata

    def metadata(self, cond: Condition) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            return _PostgresPath(self.column, cond.path).condition(cond)
        return _SqlitePath(self.column, cond.path).condition(cond)


class _JsonPath:
    """Dialect-specific access to one metadata path; ``condition`` is shared."""

    def condition(self, cond: Condition) -> ColumnElement[bool]:
        op, operand = cond.op, cond.value
        if op == "$exists":
            return self.exists() if operand else sa.not_(self.exists())
        if op == "$eq":
            return self.equals(operand)
        if op == "$ne":
            return _not(self.equals(operand))
        if op == "$in":
            return self.one_of(operand)
        if op == "$nin":
            return _not(self.one_of(operand))
        if op == "$prefix":
            return sa.and_(self.is_string(), _prefix(self.text(), operand))
        compare = _COMPARE[op]
        if isinstance(operand, str):
            return sa.and_(self.is_string(), compare(self.text(), sa.literal(operand, sa.Text)))
        return self.compare_number(compare, operand)

    def one_of(self, operands: Sequence[Any]) -> ColumnElement[bool]:
        if not operands:
            return sa.false()
        return sa.or_(*(self.equals(operand) for operand in operands))

    def exists(self) -> ColumnElement[bool]:
        raise NotImplementedError

    def equals(self, operand: Any) -> ColumnElement[bool]:
        raise NotImplementedError

    def is_string(self) -> ColumnElement[bool]:
        raise NotImplementedError

    def text(self) -> ColumnElement[Any]:
        raise NotImplementedError

    def compare_number(
        self, compare: Callable[[Any, Any], ColumnElement[bool]], operand: float
    ) -> ColumnElement[bool]:
        raise NotImplementedError

    def order(self) -> list[ColumnElement[Any]]:
        raise NotImplementedError


def _plain_label(segment: str) -> bool:
    """True when SQLite's quoted path label ``"segment"`` names exactly this key."""
    return '"' not in segment and "\\" not in segment and all(" " <= c != "\x7f" for c in segment)


class _SqlitePath(_JsonPath):
    def __init__(self, column: sa.Column[Any], path: tuple[str, ...]) -> None:
        self.column = column
        self.segments = path
        self.plain = all(_plain_label(segment) for segment in path)
        self.path = "$" + "".join(f'."{segment}"' for segment in path)

    def _path(self) -> ColumnElement[str]:
        return sa.literal(self.path, sa.Text)

    def _member(self, column: str) -> ColumnElement[Any]:
        """``column`` (type or value) of the last key, found with ``json_each`` lookups."""
        document: ColumnElement[Any] = self.column
        *parents, last = self.segments
        for segment in parents:
            each = sa.func.json_each(document).table_valued("key", "value", "type")
            document = (
                sa.select(each.c.value)
                .where(each.c.key == sa.literal(segment, sa.Text), each.c.type == "object")
                .scalar_subquery()
            )
        each = sa.func.json_each(document).table_valued("key", "value", "type")
        found = sa.select(each.c[column]).where(each.c.key == sa.literal(last, sa.Text))
        return found.scalar_subquery()

    def kind(self) -> ColumnElement[Any]:
        if not self.plain:
            return self._member("type")
        return sa.func.json_type(self.column, self._path())

    def value(self) -> ColumnElement[Any]:
        if not self.plain:
            return self._member("value")
        return sa.func.json_extract(self.column, self._path())

    def exists(self) -> ColumnElement[bool]:
        return self.kind().is_not(None)

    def equals(self, operand: Any) -> ColumnElement[bool]:
        if operand is None:
            return self.kind() == "null"
        if isinstance(operand, bool):
            return self.kind() == ("true" if operand else "false")
        if isinstance(operand, str):
            # json_extract first: it is cheap to reject, and SQLite stops at the first false
            return sa.and_(self.value() == sa.literal(operand, sa.Text), self.kind() == "text")
        return sa.and_(self.value() == operand, self.kind().in_(_SQLITE_NUMBER))

    def is_string(self) -> ColumnElement[bool]:
        return self.kind() == "text"

    def text(self) -> ColumnElement[Any]:
        return self.value()

    def compare_number(
        self, compare: Callable[[Any, Any], ColumnElement[bool]], operand: float
    ) -> ColumnElement[bool]:
        return sa.and_(compare(self.value(), operand), self.kind().in_(_SQLITE_NUMBER))

    def order(self) -> list[ColumnElement[Any]]:
        kind = self.kind()
        rank = sa.case(
            {
                "null": 1,
                "true": 2,
                "false": 2,
                "integer": 3,
                "real": 3,
                "text": 4,
                "array": 5,
                "object": 6,
            },
            value=kind,
            else_=0,
        )
        number = sa.case(
            {"true": 1, "false": 0, "integer": self.value(), "real": self.value()},
            value=kind,
            else_=sa.null(),
        )
        text = sa.case({"text": self.value()}, value=kind, else_=sa.null())
        return [rank, number, text]


def _postgresql() -> Any:
    """SQLAlchemy's PostgreSQL dialect module: imported by PostgreSQL filters only."""
    from sqlalchemy.dialects import postgresql

    return postgresql


class _PostgresPath(_JsonPath):
    def __init__(self, column: sa.Column[Any], path: tuple[str, ...]) -> None:
        self.column = column
        self.path = path

    @staticmethod
    def _array(path: Sequence[str]) -> ColumnElement[Any]:
        return sa.literal(list(path), _postgresql().ARRAY(sa.Text))

    def node(self) -> ColumnElement[Any]:
        node = self.column.op("#>", return_type=_postgresql().JSONB)(self._array(self.path))
        # jsonb paths index arrays with numeric keys; filters address objects only.
        guards = [
            sa.func.jsonb_typeof(
                self.column.op("#>", return_type=_postgresql().JSONB)(self._array(self.path[:i]))
            )
            == "object"
            for i, segment in enumerate(self.path)
            if i and segment.lstrip("-").isdigit()
        ]
        if guards:
            return sa.case((sa.and_(*guards), node), else_=sa.null())
        return node

    def kind(self) -> ColumnElement[Any]:
        return sa.func.jsonb_typeof(self.node())

    def text(self) -> ColumnElement[Any]:
        return sa.collate(self.node().op("#>>", return_type=sa.Text)(self._array(())), "C")

    def exists(self) -> ColumnElement[bool]:
        return self.node().is_not(None)

    def equals(self, operand: Any) -> ColumnElement[bool]:
        document: Any = operand
        for segment in reversed(self.path):
            document = {segment: document}
        return self.column.op("@>", return_type=sa.Boolean)(
            sa.cast(sa.literal(encode_json(document), sa.Text), _postgresql().JSONB)
        )

    def is_string(self) -> ColumnElement[bool]:
        return self.kind() == "string"

    def _number(self) -> ColumnElement[Any]:
        text = self.node().op("#>>", return_type=sa.Text)(self._array(()))
        return sa.case(
            (self.kind() == "number", sa.cast(text, sa.Numeric)),
            (self.kind() == "boolean", sa.case((text == "true", 1), else_=0)),
            else_=sa.null(),
        )

    def compare_number(
        self, compare: Callable[[Any, Any], ColumnElement[bool]], operand: float
    ) -> ColumnElement[bool]:
        # repr() is the shortest exact decimal of a float: compare as numeric, exactly
        bound = sa.cast(sa.literal(repr(operand), sa.Text), sa.Numeric)
        return sa.and_(self.kind() == "number", compare(self._number(), bound))

    def order(self) -> list[ColumnElement[Any]]:
        kind = self.kind()
        rank = sa.case(
            {"null": 1, "boolean": 2, "number": 3, "string": 4, "array": 5, "object": 6},
            value=kind,
            else_=0,
        )
        text = sa.case((kind == "string", self.text()), else_=sa.null())
        return [rank, self._number(), text]


def compile_filter(expr: Expr, table: sa.Table, dialect: str) -> ColumnElement[bool]:
    """Return the WHERE clause of a parsed filter for ``dialect``."""
    return _Compiler(table, dialect).compile(expr)


def order_components(spec: OrderBy, table: sa.Table, dialect: str) -> list[ColumnElement[Any]]:
    """Return the ORDER BY expressions of ``spec``; ``key`` always comes last."""
    key = table.c.key
    if spec.field == "key":
        return [key]
    if spec.field != "metadata":
        return [table.c[spec.field], key]
    path: _JsonPath
    if dialect == "postgresql":
        path = _PostgresPath(table.c.metadata, spec.path)
    else:
        path = _SqlitePath(table.c.metadata, spec.path)
    return [*path.order(), key]


def after(
    components: Sequence[ColumnElement[Any]], last: Sequence[Any], descending: bool
) -> ColumnElement[bool]:
    """Rows strictly after the row whose order values are ``last`` (keyset paging).

    The lexicographic condition is an ``OR`` of terms, which no index can serve: each
    page would scan every row before it (a listing of n rows read n²/page rows). Every
    term implies ``first >= last[0]`` (``<=`` descending), so that bound is added in
    front: the same rows, and the planner starts the scan at the previous page's end.

    Example:
        >>> t = sa.table("t", sa.column("a"), sa.column("k"))
        >>> print(after([t.c.a, t.c.k], [1, "x"], descending=False))
        t.a >= :a_1 AND (t.a > :a_2 OR t.a = :a_3 AND t.k > :k_1)
    """
    terms = []
    for index, (component, value) in enumerate(zip(components, last, strict=True)):
        if value is None:
            continue  # nothing sorts strictly past NULL within one rank
        equal = [
            prior.is_(None) if prior_value is None else prior == prior_value
            for prior, prior_value in zip(components[:index], last[:index], strict=True)
        ]
        beyond = component < value if descending else component > value
        terms.append(sa.and_(*equal, beyond))
    if not terms:
        return sa.false()
    if len(terms) == 1 or last[0] is None:
        return sa.or_(*terms)
    first = components[0]
    bound = first <= last[0] if descending else first >= last[0]
    return sa.and_(bound, sa.or_(*terms))
