"""Canonical, type-tagged form of key parameters (private; the public API is ``cacheness.keys``).

A value is turned into a tree that MessagePack can encode (via msgspec) without losing
its type:

* ``str``, ``bytes``, ``bool``, ``None``, ``int`` (64-bit range) and ``float`` stay as they
  are: MessagePack already tells them apart. Every NaN becomes the one canonical quiet NaN.
* Every other value becomes a list whose first element is a *marker*: an empty
  MessagePack extension object whose type code names the kind of value (tuple, set,
  datetime, ndarray, ...). A user value can never canonicalise to a bare marker, so a
  plain ``list`` (an array without a leading marker) cannot be confused with anything.
* Unordered containers (dict, set, frozenset) are sorted: by the strings themselves when
  every key/element is a ``str``, otherwise by the encoded bytes of each key/element.

The marker codes and the layout of each kind are part of the key schema: changing any of
them changes keys and requires a new ``KEY_SCHEMA_VERSION``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import PosixPath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import msgspec
from msgspec.msgpack import Ext

if TYPE_CHECKING:
    from fractions import Fraction

__all__ = [
    "Canonicalizer",
    "HashUnknown",
    "KeyProblem",
    "PathMode",
    "encode",
    "qualified_name",
]

HashUnknown: TypeAlias = Literal["error", "pickle"]
PathMode: TypeAlias = Literal["content", "stat"]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_NAN = float("nan")
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)


def _marker(code: int) -> Ext:
    return Ext(code, b"")


# Marker codes: part of the key schema, never renumber.
M_TUPLE = _marker(1)
M_DICT = _marker(2)
M_SET = _marker(3)
M_FROZENSET = _marker(4)
M_BIGINT = _marker(5)
M_COMPLEX = _marker(6)
M_DECIMAL = _marker(7)
M_FRACTION = _marker(8)
M_RANGE = _marker(9)
M_UUID = _marker(10)
M_DATETIME = _marker(11)
M_NAIVE_DATETIME = _marker(12)
M_DATE = _marker(13)
M_TIME = _marker(14)
M_TIMEDELTA = _marker(15)
M_ENUM = _marker(16)
M_FLAG = _marker(17)
M_TYPE = _marker(18)
M_FILE = _marker(19)
M_DIR = _marker(20)
M_FILE_STAT = _marker(21)
M_DIR_STAT = _marker(22)
M_PURE_PATH = _marker(23)
M_RECORD = _marker(24)
M_CACHE_KEY = _marker(25)
M_PICKLE = _marker(26)
M_SUBCLASS = _marker(27)
M_BYTEARRAY = _marker(28)
M_MEMORYVIEW = _marker(29)
M_UNSET = _marker(30)
M_SURROGATE_STR = _marker(31)
M_NDARRAY = _marker(40)
M_NDARRAY_OBJECT = _marker(41)
M_MASKED_ARRAY = _marker(42)
M_NUMPY_SCALAR = _marker(43)
M_NUMPY_DTYPE = _marker(44)
M_PD_FRAME = _marker(50)
M_PD_SERIES = _marker(51)
M_PD_INDEX = _marker(52)
M_PD_MULTIINDEX = _marker(53)
M_PD_ARRAY = _marker(54)
M_PD_CATEGORICAL = _marker(55)
M_PD_TIMESTAMP = _marker(56)
M_PD_TIMEDELTA = _marker(57)
M_PD_NAT = _marker(58)
M_PD_NA = _marker(59)


_encode: Callable[[Any], bytes] = msgspec.msgpack.Encoder().encode


def encode(tree: Any) -> bytes:
    """Return the MessagePack bytes of a canonical tree (smallest int/str/bin forms, float64).

    A ``str`` holding lone surrogates (an undecodable file name, say) has no UTF-8 form;
    such strings alone are encoded as a tagged list of their ``surrogatepass`` bytes.
    """
    try:
        return _encode(tree)
    except UnicodeEncodeError:
        return _encode(_without_surrogates(tree))


def _without_surrogates(tree: Any) -> Any:
    if type(tree) is list:
        return [_without_surrogates(x) for x in tree]
    if type(tree) is str:
        try:
            tree.encode("utf-8")
        except UnicodeEncodeError:
            return [M_SURROGATE_STR, tree.encode("utf-8", "surrogatepass")]
    return tree


class KeyProblem(Exception):  # noqa: N818 - internal signal, turned into a public error
    """A value cannot be part of a key; ``where`` collects the location, innermost first."""

    def __init__(
        self, error: type[Exception], message: str, *, value_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.value_type = value_type
        self.where: list[str] = []


def qualified_name(cls: type) -> str:
    """Return ``module.QualName`` of a class (stable across runs, unlike ``repr``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _float(value: float) -> float:
    return value if value == value else _NAN


class Canonicalizer:
    """Turns one call's values into canonical trees; holds the options and cycle guard."""

    __slots__ = ("_active", "hash_unknown", "path_mode")

    def __init__(self, hash_unknown: HashUnknown, path_mode: PathMode) -> None:
        self.hash_unknown = hash_unknown
        self.path_mode = path_mode
        self._active: set[int] = set()

    # -- entry points -------------------------------------------------------------------

    def value(self, v: Any) -> Any:
        """Return the canonical tree of ``v``."""
        t = type(v)
        if t is str or t is bool or v is None or t is bytes:
            return v
        if t is int:
            return v if _INT_MIN <= v <= _INT_MAX else _bigint(self, v)
        if t is float:
            return v if v == v else _NAN
        handler = _EXACT.get(t)
        if handler is not None:
            return handler(self, v)
        return self._other(v, t)

    def items(self, values: Any, marker: Ext | None = None) -> list[Any]:
        """Canonicalise an ordered sequence, optionally behind ``marker``."""
        out: list[Any] = [] if marker is None else [marker]
        append = out.append
        value = self.value
        for i, x in enumerate(values):
            t = type(x)
            if t is str or t is bool or x is None or t is bytes:
                append(x)
                continue
            if t is int and _INT_MIN <= x <= _INT_MAX:
                append(x)
                continue
            try:
                append(value(x))
            except KeyProblem as problem:
                problem.where.append(f"[{i}]")
                raise
        return out

    def fields(self, obj: Any, marker: Ext, tag: str, names: Any) -> list[Any]:
        """Canonicalise ``obj`` by the named attributes, in the given order."""
        self.enter(obj)
        out: list[Any] = [marker, tag]
        for name in names:
            try:
                out.append(name)
                out.append(self.value(getattr(obj, name)))
            except KeyProblem as problem:
                problem.where.append(f".{name}")
                raise
        self.leave(obj)
        return out

    def enter(self, container: Any) -> None:
        """Mark ``container`` as being encoded; a second visit on the path is a cycle."""
        ident = id(container)
        if ident in self._active:
            raise KeyProblem(
                ValueError,
                f"the value contains a reference cycle through a {type(container).__name__}; "
                "a cycle has no finite canonical form (break it, or pass key_func=)",
            )
        self._active.add(ident)

    def leave(self, container: Any) -> None:
        """Undo :meth:`enter` once ``container`` is encoded."""
        self._active.discard(id(container))

    def unsupported(self, v: Any, why: str = "") -> KeyProblem:
        """Build the problem raised for a value of an unsupported type."""
        name = qualified_name(type(v))
        return KeyProblem(
            TypeError,
            f"values of type {name!r} are not supported{why}",
            value_type=name,
        )

    # -- everything that is not an exact built-in type ----------------------------------

    def _other(self, v: Any, t: type) -> Any:
        fractions = sys.modules.get("fractions")  # a Fraction exists only once it is loaded
        if fractions is not None and t is fractions.Fraction:
            _EXACT[t] = _fraction  # dispatched like the other exact types from now on
            return _fraction(self, v)
        if isinstance(v, type):
            return [M_TYPE, v.__module__, v.__qualname__]
        if getattr(t, "__cache_key__", None) is not None:
            self.enter(v)
            try:
                out = [M_CACHE_KEY, qualified_name(t), self.value(v.__cache_key__())]
            except KeyProblem as problem:
                problem.where.append(".__cache_key__()")
                raise
            self.leave(v)
            return out
        if isinstance(v, enum.Enum):
            if isinstance(v, enum.Flag):
                return [M_FLAG, qualified_name(t), self.value(v.value)]
            return [M_ENUM, qualified_name(t), v.name]
        if "numpy" in sys.modules or "pandas" in sys.modules:
            from cacheness import _keys_data

            out = _keys_data.canonical(self, v)
            if out is not None:
                return out
        names = _record_fields(v, t)
        if names is not None:
            return self.fields(v, M_RECORD, qualified_name(t), names)
        for base in t.__mro__[1:]:
            handler = _EXACT.get(base)
            if handler is not None:
                return self._subclass(v, t, base, handler)
        if self.hash_unknown == "pickle":
            return self._pickled(v, t)
        raise self.unsupported(v)

    def _subclass(self, v: Any, t: type, base: type, handler: _Handler) -> Any:
        state = getattr(v, "__dict__", None)
        if state:
            raise self.unsupported(
                v,
                f": it subclasses {base.__name__} but carries instance attributes "
                f"({', '.join(sorted(map(str, state))[:5])}) that its {base.__name__} value "
                "does not show",
            )
        return [M_SUBCLASS, qualified_name(t), handler(self, v)]

    def _pickled(self, v: Any, t: type) -> Any:
        try:
            import pickle  # only hash_unknown='pickle' needs it

            data = pickle.dumps(v, protocol=5)
        except Exception as exc:
            problem = self.unsupported(v, f" and it cannot be pickled either ({exc})")
            raise problem from exc
        return [M_PICKLE, qualified_name(t), data]


_Handler: TypeAlias = Callable[[Canonicalizer, Any], Any]


def _record_fields(v: Any, t: type) -> Any:
    """Field names of a record-like object (dataclass, Struct, NamedTuple, attrs, pydantic)."""
    if dataclasses.is_dataclass(v):
        return [f.name for f in dataclasses.fields(v) if f.compare]
    if isinstance(v, msgspec.Struct):
        return getattr(t, "__struct_fields__", None)
    if isinstance(v, tuple):
        return getattr(t, "_fields", None)
    attributes = getattr(t, "__attrs_attrs__", None)
    if attributes is not None:
        return [a.name for a in attributes if a.eq]
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(v, pydantic.BaseModel):
        return list(getattr(t, "model_fields", ()))
    return None


# -- handlers for exact built-in and standard-library types --------------------------------


# The handlers of str, bytes, int and float are reached only through subclasses (exact
# instances are handled inline in Canonicalizer.value). Unbound base-class methods give
# the exact built-in value, whatever the subclass overrides.


def _str(c: Canonicalizer, v: str) -> str:
    return str.__str__(v)


def _bytes(c: Canonicalizer, v: bytes) -> bytes:
    return bytes.__bytes__(v)


def _int(c: Canonicalizer, v: int) -> Any:
    v = int.__index__(v)
    return v if _INT_MIN <= v <= _INT_MAX else _bigint(c, v)


def _bigint(c: Canonicalizer, v: int) -> Any:
    size = (v.bit_length() + 8) // 8  # room for the sign bit
    return [M_BIGINT, v.to_bytes(size, "big", signed=True)]


def _float_value(c: Canonicalizer, v: float) -> float:
    return _float(float.__float__(v))


def _list(c: Canonicalizer, v: list[Any]) -> list[Any]:
    c.enter(v)
    out = c.items(v)
    c.leave(v)
    return out


def _tuple(c: Canonicalizer, v: tuple[Any, ...]) -> list[Any]:
    return c.items(v, M_TUPLE)


def _dict(c: Canonicalizer, v: dict[Any, Any]) -> list[Any]:
    c.enter(v)
    out: list[Any] = [M_DICT]
    if all(type(k) is str for k in v):
        append = out.append
        value = c.value
        for k in sorted(v):
            append(k)
            x = v[k]
            t = type(x)
            if t is str or t is bool or x is None or t is bytes:
                append(x)
                continue
            if t is int and _INT_MIN <= x <= _INT_MAX:
                append(x)
                continue
            try:
                append(value(x))
            except KeyProblem as problem:
                problem.where.append(f"[{k!r}]")
                raise
    else:
        pairs = []
        for k, x in v.items():
            try:
                pairs.append((encode(c.value(k)), encode(c.value(x))))
            except KeyProblem as problem:
                problem.where.append(f"[{k!r}]")
                raise
        pairs.sort()
        for kb, xb in pairs:
            out.append(msgspec.Raw(kb))
            out.append(msgspec.Raw(xb))
    c.leave(v)
    return out


def _unordered(c: Canonicalizer, v: set[Any] | frozenset[Any], marker: Ext) -> list[Any]:
    if all(type(x) is str for x in v):
        return [marker, *sorted(v)]
    try:
        encoded = sorted(encode(c.value(x)) for x in v)
    except KeyProblem as problem:
        problem.where.append("{...}")
        raise
    return [marker, *map(msgspec.Raw, encoded)]


def _set(c: Canonicalizer, v: set[Any]) -> list[Any]:
    return _unordered(c, v, M_SET)


def _frozenset(c: Canonicalizer, v: frozenset[Any]) -> list[Any]:
    return _unordered(c, v, M_FROZENSET)


def _bytearray(c: Canonicalizer, v: bytearray) -> list[Any]:
    return [M_BYTEARRAY, bytes(v)]


def _memoryview(c: Canonicalizer, v: memoryview) -> list[Any]:
    return [M_MEMORYVIEW, v.tobytes()]


def _complex(c: Canonicalizer, v: complex) -> list[Any]:
    return [M_COMPLEX, _float(v.real), _float(v.imag)]


def _decimal(c: Canonicalizer, v: Decimal) -> list[Any]:
    # as_tuple keeps the exponent: Decimal("1.0") and Decimal("1.00") differ on purpose.
    sign, digits, exponent = v.as_tuple()
    return [M_DECIMAL, sign, "".join(map(str, digits)), exponent]


def _fraction(c: Canonicalizer, v: Fraction) -> list[Any]:
    return [M_FRACTION, c.value(v.numerator), c.value(v.denominator)]


def _range(c: Canonicalizer, v: range) -> list[Any]:
    return [M_RANGE, c.value(v.start), c.value(v.stop), c.value(v.step)]


def _uuid(c: Canonicalizer, v: uuid.UUID) -> list[Any]:
    return [M_UUID, v.bytes]


def _datetime(c: Canonicalizer, v: dt.datetime) -> list[Any]:
    if v.utcoffset() is None:
        return [M_NAIVE_DATETIME, _micros(v - _EPOCH_NAIVE)]
    return [M_DATETIME, _micros(v - _EPOCH_UTC)]


def _date(c: Canonicalizer, v: dt.date) -> list[Any]:
    return [M_DATE, v.toordinal()]


def _time(c: Canonicalizer, v: dt.time) -> list[Any]:
    micros = ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
    offset = v.utcoffset()
    return [M_TIME, micros, None if offset is None else _micros(offset)]


def _timedelta(c: Canonicalizer, v: dt.timedelta) -> list[Any]:
    return [M_TIMEDELTA, _micros(v)]


def _path(c: Canonicalizer, v: Any) -> list[Any]:
    from cacheness import _keys_paths

    return _keys_paths.canonical(v, c.path_mode)


def _pure_path(c: Canonicalizer, v: PurePosixPath | PureWindowsPath) -> list[Any]:
    flavour = "windows" if isinstance(v, PureWindowsPath) else "posix"
    return [M_PURE_PATH, flavour, str(v)]


def _unset(c: Canonicalizer, v: Any) -> list[Any]:
    return [M_UNSET]


_EXACT: dict[type, _Handler] = {
    str: _str,
    bytes: _bytes,
    int: _int,
    float: _float_value,
    list: _list,
    tuple: _tuple,
    dict: _dict,
    set: _set,
    frozenset: _frozenset,
    bytearray: _bytearray,
    memoryview: _memoryview,
    complex: _complex,
    Decimal: _decimal,
    range: _range,
    uuid.UUID: _uuid,
    dt.datetime: _datetime,
    dt.date: _date,
    dt.time: _time,
    dt.timedelta: _timedelta,
    PosixPath: _path,
    WindowsPath: _path,
    PurePosixPath: _pure_path,
    PureWindowsPath: _pure_path,
    type(msgspec.UNSET): _unset,
}
