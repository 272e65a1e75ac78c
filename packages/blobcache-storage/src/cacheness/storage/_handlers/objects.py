"""The ``objects`` handler: everything else, via pickle protocol 5 (+ zstd).

The fallback at the end of the registry. Large buffers inside the object (numpy arrays
in a dict, ``bytes`` in a dataclass...) travel out of band, straight from their memory
into the compressor and back into fresh buffers, instead of being copied into the
pickle first.

**Loading a pickle runs code** named by the stored bytes: only load blobs your own
process or team wrote (the store's signing feature guards against tampering).

**cloudpickle** (``SerializationOptions(allow_cloudpickle=True)``) also stores what
pickle refuses: lambdas, closures, classes defined inside functions. It is off by
default because such blobs embed the code itself (bytecode and constants), which only
loads on the same Python version and silently keeps the old code when the source
changes; pickle, by contrast, stores a reference to importable code.

When nothing can pickle an object, :class:`~cacheness.storage.errors.SerializationError`
names its type and, found by pickling the object's parts, the attribute path to the
culprit (``obj.model.cache._lock``).

Example:
    >>> import io, threading
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> handler = ObjectsHandler()
    >>> sink = io.BytesIO()
    >>> info = handler.dump(complex(1, 2), sink, DEFAULT_OPTIONS)
    >>> info.format, handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS)
    ('pickle5', (1+2j))
    >>> handler.dump({"lock": threading.Lock()}, io.BytesIO(), DEFAULT_OPTIONS)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.SerializationError: cannot pickle object of type dict: obj['lock']...
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

from cacheness.storage._handlers._common import open_reader, write_parts
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage.errors import SerializationError

log = logging.getLogger(__name__)

_PROTOCOL: Final = 5
_FORMATS: Final = ("pickle5", "cloudpickle")
_U64: Final = 8
_U32: Final = 4
_MAX_PATH_DEPTH: Final = 32
_MAX_CHILDREN: Final = 10_000


class ObjectsHandler(Handler):
    """Stores any picklable object (pickle protocol 5, out-of-band buffers).

    The stored stream (before compression) is the pickle's length and bytes followed
    by the out-of-band buffers, each with its length. Format ``"pickle5"``, or
    ``"cloudpickle"`` when the cloudpickle fallback stored it.

    Example:
        >>> ObjectsHandler().can_handle(object())
        True
    """

    name = "objects"
    executes_code = True  # unpickling runs code named by the bytes

    def can_handle(self, obj: Any) -> bool:
        """Always True: this is the fallback (``dump`` reports what cannot be pickled)."""
        return True

    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Pickle ``obj`` and write it, compressed per ``options`` (``auto``: zstd).

        Raises:
            SerializationError: neither pickle (nor cloudpickle, when allowed) can
                store ``obj``; the message names the type and the failing attribute path.
        """
        fmt = "pickle5"
        try:
            data, buffers = _pickle(pickle.dumps, obj)
        except Exception as exc:
            if not options.allow_cloudpickle:
                raise _pickle_error(obj, exc, cloudpickle_hint=True) from exc
            log.debug("pickle refused %s (%s); trying cloudpickle", type(obj).__qualname__, exc)
            import cloudpickle

            try:
                data, buffers = _pickle(cloudpickle.dumps, obj)
            except Exception as exc2:
                raise _pickle_error(obj, exc2, cloudpickle_hint=False) from exc2
            fmt = "cloudpickle"
        parts: list[Any] = [len(data).to_bytes(_U64, "little"), data]
        parts.append(len(buffers).to_bytes(_U32, "little"))
        for buffer in buffers:
            parts += (buffer.nbytes.to_bytes(_U64, "little"), buffer)
        codec, raw_size = write_parts(sink, parts, options)
        return self.format_info(fmt, codec, raw_size)

    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Unpickle the stored object.

        Raises:
            IntegrityError: the stored bytes do not match the recorded size, or their
                internal lengths are inconsistent.
            SerializationError: unknown format, or unpickling failed (e.g. the class
                it names can no longer be imported).
        """
        if info.format not in _FORMATS:
            raise SerializationError(f"the objects handler cannot read format {info.format!r}")
        reader = open_reader(source, info.codec, info.raw_size, options)
        data = reader.read_exact(int.from_bytes(reader.read_exact(_U64), "little"))
        count = int.from_bytes(reader.read_exact(_U32), "little")
        buffers = []
        for _ in range(count):
            buffers.append(reader.read_exact(int.from_bytes(reader.read_exact(_U64), "little")))
        reader.finish()
        try:
            return pickle.loads(data, buffers=buffers)
        except Exception as exc:
            raise SerializationError(
                f"cannot unpickle the stored object ({type(exc).__name__}: {exc}); the "
                "classes it names must be importable under the same module paths as when "
                "it was stored"
            ) from exc


def _pickle(dumps: Callable[..., bytes], obj: Any) -> tuple[bytes, list[memoryview]]:
    buffers: list[pickle.PickleBuffer] = []
    data = dumps(obj, protocol=_PROTOCOL, buffer_callback=buffers.append)
    return data, [_contiguous(buffer) for buffer in buffers]


def _contiguous(buffer: pickle.PickleBuffer) -> memoryview:
    try:
        return buffer.raw()  # no copy
    except BufferError:  # a strided buffer: stored in C order, like bytes(view) would be
        return memoryview(memoryview(buffer).tobytes())


# --------------------------------------------------------------------------- diagnostics


def _pickle_error(obj: Any, exc: BaseException, *, cloudpickle_hint: bool) -> SerializationError:
    path, culprit, reason = _locate(obj, exc)
    where = f"{path} (a {_qualname(culprit)})" if path != "obj" else "the object itself"
    notes = "; ".join(getattr(exc, "__notes__", ()))
    detail = f"{reason}" + (f" [{notes}]" if notes else "")
    hint = "Make it picklable (__getstate__/__reduce__), leave that part out, or register a "
    hint += "handler for the type"
    if cloudpickle_hint and _looks_like_code(culprit, reason):
        hint += "; lambdas, closures and local classes need allow_cloudpickle=True"
    return SerializationError(
        f"cannot pickle object of type {_qualname(obj)}: {where}: {detail}. {hint}"
    )


def _locate(obj: Any, exc: BaseException) -> tuple[str, Any, str]:
    """Walk into ``obj`` to the deepest part that still fails to pickle."""
    path, current, reason = "obj", obj, str(exc)
    for _ in range(_MAX_PATH_DEPTH):
        for label, child in _children(current):
            try:
                pickle.dumps(child, protocol=_PROTOCOL, buffer_callback=_discard)
            except Exception as child_exc:  # noqa: BLE001 - reported in the raised error
                path, current, reason = path + label, child, str(child_exc)
                break
        else:
            break
    return path, current, reason


def _discard(_buffer: pickle.PickleBuffer) -> None:
    return None  # out of band and dropped: diagnostics never copy large buffers


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        items: Iterator[tuple[str, Any]] = (
            pair
            for key, value in obj.items()
            for pair in ((f"[{key!r}]", value), (f".keys() {key!r}", key))
        )
    elif isinstance(obj, list | tuple):
        items = ((f"[{i}]", value) for i, value in enumerate(obj))
    elif isinstance(obj, set | frozenset):
        items = ((f" item {value!r}", value) for value in obj)
    else:
        items = _attributes(obj)
    for count, item in enumerate(items):
        if count >= _MAX_CHILDREN:
            return
        yield item


def _attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        for name, value in state.items():
            yield f".{name}", value
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                yield f".{name}", getattr(obj, name)


def _looks_like_code(culprit: Any, reason: str) -> bool:
    return (
        callable(culprit)
        or isinstance(culprit, type)
        or "local object" in reason
        or ("lambda" in reason)
    )


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
