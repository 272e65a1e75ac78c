"""The ``raw`` handler: ``bytes``, ``bytearray``, ``memoryview`` and ``str`` as they are.

The stored bytes are the object's own bytes (text as UTF-8, lone surrogates kept),
compressed with zstd when ``auto`` finds it worthwhile. The type comes back exactly:
a ``bytearray`` loads as a ``bytearray``, a typed ``memoryview`` (``format``, ``shape``)
as a memoryview of the same format and shape. Subclasses (``numpy.bytes_``, ``StrEnum``
members...) are left to the ``objects`` handler, which keeps their type.

Example:
    >>> import io
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> handler = RawHandler()
    >>> sink = io.BytesIO()
    >>> info = handler.dump("héllo", sink, DEFAULT_OPTIONS)
    >>> info.format, info.codec, info.raw_size, info.details
    ('bytes', 'none', 6, {'kind': 'str'})
    >>> handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS)
    'héllo'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, BinaryIO

from cacheness.storage._handlers._common import read_all, write_parts
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage.errors import SerializationError

_TYPES: dict[type, str] = {
    bytes: "bytes",
    bytearray: "bytearray",
    memoryview: "memoryview",
    str: "str",
}
_CASTABLE = re.compile(r"^[@=<>!]?[bBhHiIlLqQnNfdecp?]$")


class RawHandler(Handler):
    """Stores ``bytes``, ``bytearray``, ``memoryview`` and ``str`` (exact types).

    Format ``"bytes"``; ``details["kind"]`` is the type; memoryviews also record
    ``format`` and ``shape``.

    Example:
        >>> RawHandler().can_handle(bytearray(b"x")), RawHandler().can_handle(1)
        (True, False)
    """

    name = "raw"

    def can_handle(self, obj: Any) -> bool:
        """True for exact ``bytes``, ``bytearray``, ``memoryview`` and ``str``."""
        return type(obj) in _TYPES

    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Write the object's bytes (UTF-8 for text), compressed per ``options``.

        Raises:
            SerializationError: ``obj`` is not one of the four types.
        """
        kind = _TYPES.get(type(obj))
        if kind is None:
            raise SerializationError(f"the raw handler cannot store {type(obj).__qualname__}")
        details: dict[str, Any] = {"kind": kind}
        if kind == "str":
            data: Any = obj.encode("utf-8", "surrogatepass")
        elif kind == "memoryview":
            if obj.format != "B" or obj.ndim != 1:
                if not _CASTABLE.match(obj.format):
                    raise SerializationError(
                        f"a memoryview of format {obj.format!r} cannot be restored; store "
                        "obj.tobytes() or the object it views instead"
                    )
                details.update(format=obj.format, shape=list(obj.shape))
            data = obj.cast("B") if obj.c_contiguous else obj.tobytes()
        else:
            data = obj
        codec, raw_size = write_parts(sink, [data], options)
        return self.format_info("bytes", codec, raw_size, **details)

    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Return the stored object with its original type.

        Raises:
            IntegrityError: the stored bytes do not match the recorded size.
            SerializationError: unknown ``kind``, or text that is not UTF-8.
        """
        if info.format != "bytes":
            raise SerializationError(f"the raw handler cannot read format {info.format!r}")
        kind = info.details.get("kind", "bytes")
        data = read_all(source, info.codec, info.raw_size, options)
        if kind == "bytes":
            return bytes(data)
        if kind == "bytearray":
            return data if isinstance(data, bytearray) else bytearray(data)
        if kind == "str":
            try:
                return bytes(data).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise SerializationError(f"stored text is not UTF-8: {exc}") from exc
        if kind == "memoryview":
            return _memoryview(data, info.details)
        raise SerializationError(f"the raw handler does not know kind {kind!r}")


def _memoryview(data: Any, details: dict[str, Any]) -> memoryview:
    view = memoryview(bytes(data))
    fmt = details.get("format")
    shape = details.get("shape")
    if fmt is None:
        return view
    if not _CASTABLE.match(fmt):
        raise SerializationError(
            f"memoryview format {fmt!r} cannot be restored; the bytes are intact: load "
            "them with kind 'bytes'"
        )
    try:
        typed = view.cast(fmt.lstrip("@"))
        if shape is None or list(typed.shape or ()) == shape:
            return typed
        return typed.cast("B").cast(fmt.lstrip("@"), shape)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"cannot restore memoryview {fmt!r} {shape}: {exc}") from exc
