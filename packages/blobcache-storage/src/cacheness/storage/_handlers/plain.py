"""The ``plain`` handler: nested plain data as MessagePack, with nothing run on load.

Takes ``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``str``, ``bytes``, ``int``
(any size), ``float``, ``bool``, ``None``, and ``datetime``/``date``/``time``/``timedelta``
(naive, fixed-offset or ``zoneinfo`` zones), nested to any depth up to 100 levels.
Types are checked exactly, so a ``dict`` subclass, a ``numpy.float64`` or a ``pytz``
zone goes to the ``objects`` handler, which keeps its type.

MessagePack (encoded by msgspec) has no tuples, sets or rich dates, so those travel
as MessagePack extension values and come back as the same types: ``(1, 2)`` stays a
tuple, ``[1, 2]`` a list. Decoding only builds containers, numbers, strings and dates:
no code from the stored bytes ever runs.

Equal values give identical bytes when they iterate alike: dicts keep their insertion
order (it comes back too), and the members of a set or frozenset are stored sorted by
their encoding, so two equal sets - built in any order, in any process - store the same
bytes (and get one key in a content-addressed store).

Example:
    >>> import io
    >>> from datetime import datetime, timezone
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> handler = PlainHandler()
    >>> value = {"shape": (3, 4), "at": datetime(2026, 1, 2, tzinfo=timezone.utc), "n": 2**70}
    >>> sink = io.BytesIO()
    >>> info = handler.dump(value, sink, DEFAULT_OPTIONS)
    >>> handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS) == value
    True
    >>> handler.can_handle({"a": object()})
    False
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec

from cacheness.storage._handlers._common import read_all, write_parts
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage.errors import ObjectDeclinedError, SerializationError

MAX_DEPTH: Final = 100
"""Deepest nesting the plain handler takes (deeper data goes to ``objects``)."""

_MIN_INT: Final = -(1 << 63)
_MAX_INT: Final = (1 << 64) - 1
_SCALARS: Final = frozenset({str, float, bool, type(None), bytes})
_CONTAINERS: Final = frozenset({dict, list, tuple, set, frozenset})
_DATES: Final = frozenset({dt.datetime, dt.date, dt.time, dt.timedelta})

# MessagePack extension codes (application range 0..127)
_TUPLE, _SET, _FROZENSET, _DATETIME, _DATE, _TIME, _TIMEDELTA, _BIGINT = range(1, 9)
_TZ_NAIVE, _TZ_UTC, _TZ_OFFSET, _TZ_ZONE = range(4)


class _NotPlainError(Exception):
    """Internal: the value holds something the plain handler does not take."""


class PlainHandler(Handler):
    """Stores nested plain data (see the module docs) as ``msgpack``.

    Example:
        >>> PlainHandler().can_handle([1, (2.0, None), {"k": b"v"}])
        True
        >>> PlainHandler().can_handle([1, 2j])
        False
    """

    name = "plain"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)

    def can_handle(self, obj: Any) -> bool:
        """True if ``obj`` is plain data (containers are checked all the way down)."""
        kind = type(obj)
        if (
            kind not in _CONTAINERS
            and kind not in _DATES
            and kind is not int
            and kind not in _SCALARS
        ):
            return False
        try:
            _scan(obj, 0)
        except _NotPlainError:
            return False
        return True

    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Encode ``obj`` as MessagePack and write it, compressed per ``options``.

        Raises:
            ObjectDeclinedError: ``obj`` holds a value that is not plain data.
        """
        try:
            special = _scan(obj, 0)
        except _NotPlainError as exc:
            raise ObjectDeclinedError(f"not plain data: {exc}") from None
        try:
            payload = self._encoder.encode(_to_wire(obj) if special else obj)
        except UnicodeEncodeError as exc:  # a lone surrogate: not text MessagePack can hold
            problem = f"not plain data: a str that is not valid Unicode ({exc})"
            raise ObjectDeclinedError(problem) from None
        codec, raw_size = write_parts(sink, [payload], options)
        return self.format_info("msgpack", codec, raw_size)

    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Decode the stored MessagePack.

        Raises:
            IntegrityError: the stored bytes do not match the recorded size.
            SerializationError: the bytes are not valid MessagePack of this handler.
        """
        if info.format != "msgpack":
            raise SerializationError(f"the plain handler cannot read format {info.format!r}")
        data = read_all(source, info.codec, info.raw_size, options)
        try:
            return _DECODER.decode(data)
        except (msgspec.DecodeError, ValueError, TypeError, KeyError) as exc:
            raise SerializationError(f"stored msgpack data cannot be decoded: {exc}") from exc


# --------------------------------------------------------------------------- encoding


def _scan(obj: Any, depth: int) -> bool:
    """Return True if ``obj`` needs extension types; raise ``_NotPlainError`` if not plain."""
    kind = type(obj)
    if kind in _SCALARS:
        return False
    if kind is int:
        return not _MIN_INT <= obj <= _MAX_INT
    if depth >= MAX_DEPTH:
        raise _NotPlainError(f"nested deeper than {MAX_DEPTH} levels")
    depth += 1
    special = False
    if kind is dict:
        for key, value in obj.items():
            if type(key) is not str and _scan(key, depth):
                special = True
            simple = type(value) in _SCALARS or (
                type(value) is int and _MIN_INT <= value <= _MAX_INT
            )
            if not simple and _scan(value, depth):
                special = True
        return special
    if kind is list:
        for value in obj:
            simple = type(value) in _SCALARS or (
                type(value) is int and _MIN_INT <= value <= _MAX_INT
            )
            if not simple and _scan(value, depth):
                special = True
        return special
    if kind is tuple or kind is set or kind is frozenset:
        for value in obj:
            if type(value) not in _SCALARS:
                _scan(value, depth)
        return True
    if kind in _DATES:
        tz = getattr(obj, "tzinfo", None)
        if tz is not None and _tz_state(tz) is None:
            raise _NotPlainError(
                f"time zone {type(tz).__qualname__} (use zoneinfo or a fixed offset)"
            )
        return True
    raise _NotPlainError(f"{kind.__module__}.{kind.__qualname__}")


class _Ext:
    __slots__ = ("code", "payload")

    def __init__(self, code: int, payload: Any) -> None:
        self.code = code
        self.payload = payload


def _to_wire(obj: Any) -> Any:
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if kind is int:
        return obj if _MIN_INT <= obj <= _MAX_INT else _Ext(_BIGINT, str(obj))
    if kind is dict:
        return {_to_wire(k): _to_wire(v) for k, v in obj.items()}
    if kind is list:
        return [_to_wire(v) for v in obj]
    if kind is tuple:
        return _Ext(_TUPLE, [_to_wire(v) for v in obj])
    if kind is set:
        return _Ext(_SET, _in_canonical_order(obj))
    if kind is frozenset:
        return _Ext(_FROZENSET, _in_canonical_order(obj))
    if kind is dt.datetime:
        fields = [obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second]
        return _Ext(_DATETIME, [*fields, obj.microsecond, obj.fold, *_tz_known(obj.tzinfo)])
    if kind is dt.date:
        return _Ext(_DATE, [obj.year, obj.month, obj.day])
    if kind is dt.time:
        fields = [obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold]
        return _Ext(_TIME, [*fields, *_tz_known(obj.tzinfo)])
    if kind is dt.timedelta:
        return _Ext(_TIMEDELTA, [obj.days, obj.seconds, obj.microseconds])
    raise _NotPlainError(kind.__qualname__)  # pragma: no cover - _scan ran first


def _in_canonical_order(members: set[Any] | frozenset[Any]) -> list[Any]:
    """The members of a set, encoded, in the order of their encoded bytes.

    A set iterates in an order that depends on its history and, for strings, on the
    process's hash seed: equal sets must still give identical bytes (one content hash,
    one key in a content-addressed store), and a set has no order to keep.
    """
    wire = [_to_wire(member) for member in members]
    if len(wire) < 2:
        return wire
    encode = _WIRE_ENCODER.encode
    return [item for _, item in sorted(((encode(item), item) for item in wire), key=_first)]


def _first(pair: tuple[bytes, Any]) -> bytes:
    return pair[0]


def _tz_state(tz: dt.tzinfo | None) -> tuple[int, Any] | None:
    if tz is None:
        return (_TZ_NAIVE, None)
    if tz is dt.UTC:
        return (_TZ_UTC, None)
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None)
        name: str | None = tz.tzname(None)
        if name == dt.timezone(offset).tzname(None):
            name = None
        return (_TZ_OFFSET, [offset.days, offset.seconds, offset.microseconds, name])
    # a ZoneInfo can only exist once zoneinfo was imported: no import to find out
    zoneinfo = sys.modules.get("zoneinfo")
    key = getattr(tz, "key", None)
    if zoneinfo is not None and type(tz) is zoneinfo.ZoneInfo and key is not None:
        return (_TZ_ZONE, key)
    return None


def _tz_known(tz: dt.tzinfo | None) -> tuple[int, Any]:
    """The wire form of a time zone the scan accepted already."""
    state = _tz_state(tz)
    if state is None:  # pragma: no cover - _scan refused such a zone first
        raise _NotPlainError(f"time zone {type(tz).__qualname__}")
    return state


def _enc_hook(obj: Any) -> Any:
    if type(obj) is _Ext:
        return msgspec.msgpack.Ext(
            obj.code, msgspec.msgpack.encode(obj.payload, enc_hook=_enc_hook)
        )
    raise NotImplementedError(f"cannot encode {type(obj).__qualname__}")  # pragma: no cover


# --------------------------------------------------------------------------- decoding


def _ext_hook(code: int, data: memoryview) -> Any:
    payload = msgspec.msgpack.decode(data, ext_hook=_ext_hook)
    if code == _TUPLE:
        return tuple(payload)
    if code == _SET:
        return set(payload)
    if code == _FROZENSET:
        return frozenset(payload)
    if code == _DATETIME:
        year, month, day, hour, minute, second, micro, fold, tz_kind, tz_value = payload
        tz = _tz_from(tz_kind, tz_value)
        return dt.datetime(year, month, day, hour, minute, second, micro, tz, fold=fold)
    if code == _DATE:
        return dt.date(*payload)
    if code == _TIME:
        hour, minute, second, micro, fold, tz_kind, tz_value = payload
        return dt.time(hour, minute, second, micro, _tz_from(tz_kind, tz_value), fold=fold)
    if code == _TIMEDELTA:
        days, seconds, micro = payload
        return dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    if code == _BIGINT:
        return int(payload)
    raise ValueError(f"unknown msgpack extension code {code}")


def _tz_from(kind: int, value: Any) -> dt.tzinfo | None:
    if kind == _TZ_NAIVE:
        return None
    if kind == _TZ_UTC:
        return dt.UTC
    if kind == _TZ_OFFSET:
        days, seconds, micro, name = value
        offset = dt.timedelta(days=days, seconds=seconds, microseconds=micro)
        return dt.timezone(offset) if name is None else dt.timezone(offset, name)
    if kind == _TZ_ZONE:
        try:
            import zoneinfo

            return zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"time zone {value!r} is not available here: {exc}") from exc
    raise ValueError(f"unknown time zone kind {kind}")


_DECODER: Final = msgspec.msgpack.Decoder(ext_hook=_ext_hook)
_WIRE_ENCODER: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
