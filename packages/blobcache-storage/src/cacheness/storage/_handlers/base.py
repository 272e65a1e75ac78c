"""The handler interface, serialization options, and the registry that picks a handler.

A :class:`Handler` turns one kind of Python object into stored bytes and back:
``can_handle(obj)`` says whether it takes the object, ``dump(obj, sink, options)``
streams the stored (compressed) bytes into a write-only ``sink`` and returns a
:class:`FormatInfo` that says how to read them, and ``load(source, info, options)``
reads them back. The metadata entry keeps ``handler``, ``format``, ``codec``,
``raw_size`` and ``format_info`` (the ``details``), so loading never guesses.

A :class:`HandlerRegistry` orders handlers by priority (higher first; among equal
priorities the most recently registered first) and asks each in turn. A handler's
``dump`` may decline an object it cannot store faithfully by raising
:class:`ObjectDeclinedError` before writing a byte; :meth:`HandlerRegistry.dump` then moves
on to the next handler (this is how a DataFrame Arrow cannot hold ends up pickled).

The built-in handlers, from first to last: ``raw`` (bytes, bytearray, memoryview, str),
``plain`` (dict/list/tuple/scalars/datetime via msgpack), ``numpy``, ``pandas``,
``arrow``, ``polars``, and ``objects`` (pickle protocol 5, the fallback for
everything else). :func:`register_handler` and friends act on the process-wide
default registry; a store may hold its own (:meth:`HandlerRegistry.copy`).

Example:
    >>> import io
    >>> from cacheness.storage import default_registry, handler_for
    >>> handler_for({"lr": 0.01, "layers": (64, 32)}).name
    'plain'
    >>> sink = io.BytesIO()
    >>> info = default_registry().dump({"layers": (64, 32)}, sink)
    >>> info.handler, info.format, info.codec
    ('plain', 'msgpack', 'none')
    >>> default_registry().load(io.BytesIO(sink.getvalue()), info)
    {'layers': (64, 32)}
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Final

import msgspec

from cacheness.storage._compression import CodecSettings, check_codec
from cacheness.storage._streams import CountingSink
from cacheness.storage.errors import ConfigError, ObjectDeclinedError, SerializationError

if TYPE_CHECKING:
    from cacheness.storage._entry import Entry


log = logging.getLogger(__name__)

DATAFRAME_FORMATS: Final[tuple[str, ...]] = ("auto", "arrow", "parquet")
"""Values of :attr:`SerializationOptions.dataframe_format`."""

MMAP_MODES: Final[tuple[str | None, ...]] = (None, "r", "c")
"""Values of :attr:`SerializationOptions.mmap_mode` (read-only or copy-on-write)."""

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


# --------------------------------------------------------------------------- records


class FormatInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a handler wrote, and what its ``load`` needs to read it back.

    Attributes:
        handler: name of the handler that wrote the bytes (``"numpy"``...).
        format: the handler's format tag (``"blosc2-chunks"``, ``"arrow-ipc"``...).
        codec: compression of the stored bytes (``"zstd"``, ``"blosc2"``, ``"none"``...).
        raw_size: bytes before compression; decoders refuse to produce more.
        details: small JSON-able facts ``load`` needs (dtype, shape, kind...). They
            are stored in the metadata entry as ``format_info``.

    Example:
        >>> info = FormatInfo(handler="raw", format="bytes", codec="none", raw_size=3)
        >>> info.details
        {}
    """

    handler: str
    format: str
    codec: str
    raw_size: int
    details: dict[str, Any] = msgspec.field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: Entry) -> FormatInfo:
        """Return the format info recorded in a metadata entry.

        Example:
            >>> from cacheness.storage import Entry
            >>> entry = Entry.new("k", handler="raw", format="bytes", raw_size=3)
            >>> FormatInfo.from_entry(entry).handler
            'raw'
        """
        return cls(
            handler=entry.handler,
            format=entry.format,
            codec=entry.codec,
            raw_size=entry.raw_size,
            details=dict(entry.format_info),
        )


class SerializationOptions(CodecSettings, frozen=True, kw_only=True):
    """Settings passed to every handler, for one store or one call.

    The compression fields are those of
    :class:`~cacheness.storage._compression.CodecSettings` (options are codec settings).

    Attributes:
        codec: ``"auto"`` (each handler's default, skipped for small or incompressible
            data), ``"zstd"``, ``"gzip"``, ``"blosc2"`` or ``"none"``. Arrow-based
            formats apply ``zstd`` inside the Arrow stream; see the serialization docs.
        level: zstd (-7..22, default 3) or gzip (0..9, default 6) level.
        blosc2_codec: Blosc2 inner codec (``lz4``, ``lz4hc``, ``zstd``, ``zlib``, ``blosclz``).
        blosc2_clevel: Blosc2 level 0..9.
        blosc2_shuffle: ``noshuffle``, ``shuffle`` or ``bitshuffle``.
        nthreads: compression threads; None uses every core this process may use.
        chunk_size: streaming chunk in bytes (Blosc2 chunk, array slab).
        auto_min_size: ``auto`` never compresses payloads smaller than this.
        auto_sample_size: bytes ``auto`` compresses to decide.
        auto_min_saving: ``auto`` compresses only if the sample shrinks by this fraction.
        dataframe_format: ``"auto"`` (pandas and pyarrow: Arrow IPC; polars: Parquet),
            ``"arrow"`` or ``"parquet"`` (portable, smaller, slower).
        allow_cloudpickle: fall back to cloudpickle for lambdas, closures and local
            classes that pickle refuses. Off by default: such blobs embed code that
            only loads under the same Python version and source.
        mmap_mode: ``"r"`` or ``"c"`` to memory-map uncompressed numpy arrays stored in
            local files (as ``numpy.load``); writable modes are refused because a
            stored blob must not change under its hash.

    Raises:
        ConfigError: a value is unknown or out of range.

    Example:
        >>> options = SerializationOptions(codec="zstd", level=19)
        >>> options.compression.level_for("zstd")
        19
        >>> SerializationOptions.from_mapping({"codec": "lz5"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: unknown compression codec 'lz5'; known: auto, ...
    """

    codec: str = "auto"
    dataframe_format: str = "auto"
    allow_cloudpickle: bool = False
    mmap_mode: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_codec(self.codec, allow_auto=True)
        if self.dataframe_format not in DATAFRAME_FORMATS:
            raise ConfigError(
                f"dataframe_format must be one of {', '.join(DATAFRAME_FORMATS)}; "
                f"got {self.dataframe_format!r}"
            )
        if self.mmap_mode not in MMAP_MODES:
            raise ConfigError(
                f"mmap_mode must be None, 'r' (read-only) or 'c' (copy-on-write); got "
                f"{self.mmap_mode!r}. Writable maps ('r+', 'w+') are refused: a stored blob "
                "must not change under its recorded hash"
            )
        if not isinstance(self.allow_cloudpickle, bool):
            raise ConfigError(f"allow_cloudpickle must be a bool, got {self.allow_cloudpickle!r}")

    @property
    def compression(self) -> CodecSettings:
        """The codec settings (these options themselves: they are a ``CodecSettings``)."""
        return self

    def replace(self, **changes: Any) -> SerializationOptions:
        """Return a copy with ``changes`` applied (validated).

        Example:
            >>> SerializationOptions().replace(codec="none").codec
            'none'
        """
        return msgspec.structs.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SerializationOptions:
        """Build options from a dict (e.g. a config file section).

        Raises:
            ConfigError: unknown keys, wrong types or invalid values.

        Example:
            >>> SerializationOptions.from_mapping({"codec": "gzip", "level": 9}).level
            9
        """
        unknown = set(values) - set(cls.__struct_fields__)
        if unknown:
            raise ConfigError(
                f"unknown serialization options: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(cls.__struct_fields__)}"
            )
        try:
            return msgspec.convert(dict(values), cls)
        except msgspec.ValidationError as exc:
            if isinstance(exc.__cause__, ConfigError):  # raised by __post_init__
                raise exc.__cause__ from None
            raise ConfigError(f"invalid serialization options: {exc}") from exc


DEFAULT_OPTIONS: Final = SerializationOptions()
"""The options used when none are given."""


# --------------------------------------------------------------------------- handler


class Handler(ABC):
    """Turns one kind of object into stored bytes and back.

    Subclasses set ``name`` (lowercase, ``[a-z0-9_.-]``) and implement the three
    methods. ``can_handle`` must be cheap and must not import heavy packages: check
    :func:`cacheness.storage._optional.is_loaded` before ``isinstance`` against an
    optional library's types.

    Example:
        >>> import io, json
        >>> class JsonHandler(Handler):
        ...     name = "json-list"
        ...     def can_handle(self, obj):
        ...         return type(obj) is list
        ...     def dump(self, obj, sink, options):
        ...         data = json.dumps(obj).encode()
        ...         sink.write(data)
        ...         return self.format_info("json", "none", len(data))
        ...     def load(self, source, info, options, *, local_path=None):
        ...         return json.loads(source.read())
        >>> handler = JsonHandler()
        >>> sink = io.BytesIO()
        >>> info = handler.dump([1, 2], sink, DEFAULT_OPTIONS)
        >>> handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS)
        [1, 2]
    """

    name: ClassVar[str]

    @abstractmethod
    def can_handle(self, obj: Any) -> bool:
        """Return True if this handler stores ``obj`` (cheaply; no heavy imports)."""

    @abstractmethod
    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Write ``obj``'s stored bytes to ``sink``; return what ``load`` needs.

        ``sink`` is write-only: never seek, tell or close it.

        Raises:
            ObjectDeclinedError: (before writing anything) another handler should take it.
            SerializationError: ``obj`` cannot be stored.
        """

    @abstractmethod
    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Read the object back from ``source`` (the stored bytes).

        ``local_path`` is set when the same bytes sit in a local file (memory-mapping).

        Raises:
            IntegrityError: the bytes do not match what ``info`` records.
            SerializationError: the bytes cannot be decoded.
        """

    def format_info(self, format: str, codec: str, raw_size: int, /, **details: Any) -> FormatInfo:
        """Return a :class:`FormatInfo` naming this handler (a convenience for ``dump``)."""
        return FormatInfo(
            handler=self.name, format=format, codec=codec, raw_size=raw_size, details=details
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={getattr(self, 'name', None)!r})"


_SIGNATURES: Final = {
    "can_handle": ["obj"],
    "dump": ["obj", "sink", "options"],
    "load": ["source", "info", "options"],
}


def _validate_handler(handler: object) -> Handler:
    if isinstance(handler, type):
        if not issubclass(handler, Handler):
            raise TypeError(f"{handler.__qualname__} must subclass {Handler.__qualname__}")
        if inspect.isabstract(handler):
            missing = ", ".join(sorted(getattr(handler, "__abstractmethods__", ())))
            raise TypeError(f"handler {handler.__qualname__} does not implement: {missing}")
        handler = handler()
    if not isinstance(handler, Handler):
        raise TypeError(
            f"register a Handler instance or subclass, got {type(handler).__qualname__}: "
            f"{handler!r}"
        )
    name = getattr(handler, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"handler {type(handler).__qualname__} needs a class attribute `name`: lowercase "
            f"letters, digits, '_', '.', '-' (at most 64), starting with a letter; got {name!r}"
        )
    for method, params in _SIGNATURES.items():
        try:
            signature = inspect.signature(getattr(handler, method))
            signature.bind(*params)
            if method == "load":
                signature.bind(*params, local_path=None)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"handler {name!r}: {method}() must accept ({', '.join(params)}"
                f"{', *, local_path=None' if method == 'load' else ''}): {exc}"
            ) from exc
    return handler


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class _Slot:
    priority: int
    seq: int
    handler: Handler


BUILTIN_PRIORITIES: Final[Mapping[str, int]] = {
    "raw": 60,
    "plain": 50,
    "numpy": 40,
    "pandas": 30,
    "arrow": 20,
    "polars": 10,
    "objects": -100,
}
"""Priorities of the built-in handlers (user handlers default to 0: after the typed
built-ins, before the pickle fallback)."""

_BUILTIN_PATHS: Final = {
    "raw": "cacheness.storage._handlers.raw:RawHandler",
    "plain": "cacheness.storage._handlers.plain:PlainHandler",
    "numpy": "cacheness.storage._handlers.numpy:NumpyHandler",
    "pandas": "cacheness.storage._handlers.pandas:PandasHandler",
    "arrow": "cacheness.storage._handlers.arrow:ArrowHandler",
    "polars": "cacheness.storage._handlers.polars:PolarsHandler",
    "objects": "cacheness.storage._handlers.objects:ObjectsHandler",
}


class HandlerRegistry:
    """Handlers ordered by priority; picks the one that stores an object.

    Reads (:meth:`for_object`, :meth:`get`) take no lock: they see an immutable
    snapshot that registration replaces.

    Example:
        >>> registry = HandlerRegistry.with_builtins()
        >>> registry.list()
        ['raw', 'plain', 'numpy', 'pandas', 'arrow', 'polars', 'objects']
        >>> registry.for_object(b"bytes").name
        'raw'
        >>> registry.unregister("objects")
        >>> registry.for_object(object())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.SerializationError: no registered handler can store object...
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._slots: tuple[_Slot, ...] = ()
        self._by_name: dict[str, _Slot] = {}

    @classmethod
    def with_builtins(cls) -> HandlerRegistry:
        """Return a registry holding the built-in handlers at their default priorities."""
        registry = cls()
        for name, path in _BUILTIN_PATHS.items():
            module, _, attr = path.partition(":")
            handler_cls = getattr(importlib.import_module(module), attr)
            registry.register(handler_cls(), priority=BUILTIN_PRIORITIES[name])
        return registry

    def register(
        self, handler: Handler | type[Handler], *, priority: int = 0, replace: bool = True
    ) -> Handler:
        """Add ``handler`` (an instance, or a class to instantiate) at ``priority``.

        Higher priorities are asked first; among equal priorities the handler
        registered last is asked first. A handler with the name of a registered one
        replaces it.

        Args:
            handler: the handler instance or class.
            priority: dispatch priority (built-ins: raw 60, plain 50, numpy 40, pandas 30,
                arrow 20, polars 10, objects -100).
            replace: when False, a name already registered raises ``ConfigError``.

        Returns:
            The registered instance.

        Raises:
            TypeError: not a :class:`Handler`, abstract methods left, or a method
                with the wrong signature.
            ConfigError: bad ``name`` or ``priority``, or the name is taken and
                ``replace`` is False.
        """
        instance = _validate_handler(handler)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ConfigError(f"priority must be an int, got {priority!r}")
        with self._lock:
            if not replace and instance.name in self._by_name:
                raise ConfigError(f"a handler named {instance.name!r} is already registered")
            slot = _Slot(priority, next(self._seq), instance)
            by_name = {**self._by_name, instance.name: slot}
            self._publish(by_name)
        return instance

    def unregister(self, name: str) -> None:
        """Remove the handler called ``name``.

        Raises:
            ConfigError: no handler has that name.
        """
        with self._lock:
            if name not in self._by_name:
                raise ConfigError(f"no handler named {name!r}; registered: {self._known()}")
            by_name = dict(self._by_name)
            del by_name[name]
            self._publish(by_name)

    def _publish(self, by_name: dict[str, _Slot]) -> None:
        self._by_name = by_name
        self._slots = tuple(sorted(by_name.values(), key=lambda s: (-s.priority, -s.seq)))

    def list(self) -> list[str]:
        """Return the handler names in the order they are asked."""
        return [slot.handler.name for slot in self._slots]

    def priority(self, name: str) -> int:
        """Return the priority ``name`` was registered with.

        Raises:
            ConfigError: no handler has that name.
        """
        slot = self._by_name.get(name)
        if slot is None:
            raise ConfigError(f"no handler named {name!r}; registered: {self._known()}")
        return slot.priority

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Handler:
        """Return the handler called ``name`` (as recorded in an entry).

        Raises:
            SerializationError: no such handler is registered in this registry; the
                message says how to fix it.
        """
        slot = self._by_name.get(name)
        if slot is None:
            raise SerializationError(
                f"no handler named {name!r} is registered (registered: {self._known()}); "
                "register the handler that wrote the entry (register_handler) before loading it"
            )
        return slot.handler

    def for_object(self, obj: Any) -> Handler:
        """Return the first handler, by priority, whose ``can_handle(obj)`` is True.

        A handler whose ``can_handle`` raises is logged and skipped.

        Raises:
            SerializationError: no handler takes the object (the message names its type).
        """
        for slot in self._slots:
            if self._accepts(slot.handler, obj):
                return slot.handler
        raise SerializationError(
            f"no registered handler can store object of type {_type_name(obj)} "
            f"(registered: {self._known()}); register a handler for it"
        )

    def dump(
        self, obj: Any, sink: BinaryIO, options: SerializationOptions = DEFAULT_OPTIONS
    ) -> FormatInfo:
        """Store ``obj`` with the first handler that takes it; return its :class:`FormatInfo`.

        A handler that declines (:class:`ObjectDeclinedError`) before writing passes the
        object on to the next handler that can take it.

        Raises:
            SerializationError: no handler can store ``obj``, or the chosen handler
                failed (the sink then holds partial bytes: discard it).
            CompressionError: compression failed.
        """
        counting = CountingSink(sink)
        reasons: list[str] = []
        for slot in self._slots:
            handler = slot.handler
            if not self._accepts(handler, obj):
                continue
            try:
                info = handler.dump(obj, counting, options)
            except ObjectDeclinedError as exc:
                if counting.written:
                    raise SerializationError(
                        f"handler {handler.name!r} declined an object of type "
                        f"{_type_name(obj)} after writing {counting.written} bytes"
                    ) from exc
                log.debug("handler %r declined %s: %s", handler.name, _type_name(obj), exc)
                reasons.append(f"{handler.name}: {exc}")
                continue
            return self._checked(handler, info)
        why = f" ({'; '.join(reasons)})" if reasons else ""
        raise SerializationError(
            f"no registered handler can store object of type {_type_name(obj)}{why}; "
            f"registered: {self._known()}"
        )

    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions = DEFAULT_OPTIONS,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Load an object with the handler ``info`` names.

        Raises:
            SerializationError: the handler is not registered, or cannot decode.
            IntegrityError: the stored bytes do not match ``info``.
        """
        return self.get(info.handler).load(source, info, options, local_path=local_path)

    def copy(self) -> HandlerRegistry:
        """Return an independent registry with the same handlers and priorities."""
        clone = HandlerRegistry()
        with self._lock:
            slots = sorted(self._by_name.values(), key=lambda s: s.seq)
        for slot in slots:
            clone.register(slot.handler, priority=slot.priority)
        return clone

    def _known(self) -> str:
        return ", ".join(self.list()) or "none"

    @staticmethod
    def _accepts(handler: Handler, obj: Any) -> bool:
        try:
            return bool(handler.can_handle(obj))
        except Exception:
            log.error(
                "handler %r raised in can_handle(%s); skipping it",
                handler.name,
                _type_name(obj),
                exc_info=True,
            )
            return False

    @staticmethod
    def _checked(handler: Handler, info: object) -> FormatInfo:
        if not isinstance(info, FormatInfo):
            raise SerializationError(
                f"handler {handler.name!r} returned {type(info).__name__} from dump(); "
                "it must return a FormatInfo"
            )
        if info.details:
            try:
                msgspec.json.encode(info.details)
            except (TypeError, msgspec.EncodeError) as exc:
                raise SerializationError(
                    f"handler {handler.name!r} returned details that are not JSON-able "
                    f"({exc}); metadata backends store them as JSON"
                ) from exc
        return info


def _type_name(obj: object) -> str:
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# --------------------------------------------------------------------------- default registry

_default: HandlerRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> HandlerRegistry:
    """Return the process-wide registry (created with the built-ins on first use).

    Example:
        >>> default_registry() is default_registry()
        True
    """
    global _default
    registry = _default
    if registry is None:
        with _default_lock:
            if _default is None:
                _default = HandlerRegistry.with_builtins()
            registry = _default
    return registry


def register_handler(
    handler: Handler | type[Handler], *, priority: int = 0, replace: bool = True
) -> Handler:
    """Register ``handler`` in the default registry (see :meth:`HandlerRegistry.register`).

    Raises:
        TypeError: not a complete :class:`Handler`.
        ConfigError: bad name or priority.

    Example:
        >>> import io, fractions
        >>> class FractionHandler(Handler):
        ...     name = "fraction"
        ...     def can_handle(self, obj):
        ...         return type(obj) is fractions.Fraction
        ...     def dump(self, obj, sink, options):
        ...         data = f"{obj.numerator}/{obj.denominator}".encode()
        ...         sink.write(data)
        ...         return self.format_info("text", "none", len(data))
        ...     def load(self, source, info, options, *, local_path=None):
        ...         return fractions.Fraction(source.read().decode())
        >>> _ = register_handler(FractionHandler, priority=50)
        >>> handler_for(fractions.Fraction(1, 3)).name
        'fraction'
        >>> unregister_handler("fraction")
    """
    return default_registry().register(handler, priority=priority, replace=replace)


def unregister_handler(name: str) -> None:
    """Remove ``name`` from the default registry.

    Raises:
        ConfigError: no handler has that name.
    """
    default_registry().unregister(name)


def list_handlers() -> list[str]:
    """Return the default registry's handler names in dispatch order.

    Example:
        >>> list_handlers()[-1]
        'objects'
    """
    return default_registry().list()


def get_handler(name: str) -> Handler:
    """Return the default registry's handler called ``name``.

    Raises:
        SerializationError: no handler has that name.

    Example:
        >>> get_handler("numpy").name
        'numpy'
    """
    return default_registry().get(name)


def handler_for(obj: Any) -> Handler:
    """Return the default registry's handler for ``obj``.

    Raises:
        SerializationError: no handler takes it (the message names the type).

    Example:
        >>> handler_for("text").name, handler_for(object()).name
        ('raw', 'objects')
    """
    return default_registry().for_object(obj)
