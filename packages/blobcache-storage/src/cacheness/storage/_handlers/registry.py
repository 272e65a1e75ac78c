"""The handler registry: which handler stores an object, and which one loads an entry.

A :class:`HandlerRegistry` orders handlers by priority (higher first; among equal
priorities the most recently registered first) and asks each in turn. A handler's
``dump`` may decline an object it cannot store faithfully by raising
:class:`~cacheness.storage.errors.ObjectDeclinedError` before writing a byte;
:meth:`HandlerRegistry.dump` then moves on to the next handler.

The built-in handlers, from first to last: ``raw`` (bytes, bytearray, memoryview, str),
``plain`` (dict/list/tuple/scalars/datetime via msgpack), ``numpy``, ``pandas``,
``arrow``, ``polars``, and ``objects`` (pickle protocol 5, the fallback for
everything else). Their modules are imported when first asked: storing a dict imports
``raw`` and ``plain`` only. :func:`register_handler` and friends act on the
process-wide default registry; a store may hold its own (:meth:`HandlerRegistry.copy`).

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

import inspect
import itertools
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import msgspec

from cacheness.storage._handlers.base import (
    _NAME,
    DEFAULT_OPTIONS,
    FormatInfo,
    Handler,
    SerializationOptions,
)
from cacheness.storage._optional import import_path
from cacheness.storage._streams import CountingSink
from cacheness.storage._validate import is_int
from cacheness.storage.errors import ConfigError, ObjectDeclinedError, SerializationError

log = logging.getLogger(__name__)

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


class _Slot:
    """One registered handler: its name and priority, and the handler once imported."""

    __slots__ = ("handler", "name", "path", "priority", "seq")

    def __init__(
        self, name: str, priority: int, seq: int, handler: Handler | None, path: str = ""
    ) -> None:
        self.name = name
        self.priority = priority
        self.seq = seq
        self.handler = handler
        self.path = path  # "module:Class" of a built-in not imported yet

    def get(self) -> Handler:
        handler = self.handler
        if handler is None:  # a built-in asked for the first time: import its module now
            handler = _validate_handler(import_path(self.path))
            self.handler = handler
        return handler


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
_EXAMPLE_PATH: Final = "myproject.handlers:FractionHandler"


class HandlerRegistry:
    """Handlers ordered by priority; picks the one that stores an object.

    Reads (:meth:`for_object`, :meth:`get`) take no lock: they see an immutable
    snapshot that registration replaces. Built-in handlers are imported when first
    asked (storing a dict never imports the numpy handler).

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
        with registry._lock:
            by_name = {
                name: _Slot(name, BUILTIN_PRIORITIES[name], next(registry._seq), None, path)
                for name, path in _BUILTIN_PATHS.items()
            }
            registry._publish(by_name)
        return registry

    def register(
        self, handler: Handler | type[Handler] | str, *, priority: int = 0, replace: bool = True
    ) -> Handler:
        """Add ``handler`` (an instance, a class to instantiate, or its ``"module:Class"``
        import path) at ``priority``.

        Higher priorities are asked first; among equal priorities the handler
        registered last is asked first. A handler with the name of a registered one
        replaces it.

        Args:
            handler: the handler instance or class, or ``"package.module:Class"``.
            priority: dispatch priority (built-ins: raw 60, plain 50, numpy 40, pandas 30,
                arrow 20, polars 10, objects -100).
            replace: when False, a name already registered raises ``ConfigError``.

        Returns:
            The registered instance.

        Raises:
            TypeError: not a :class:`Handler`, abstract methods left, or a method
                with the wrong signature.
            ConfigError: bad ``name`` or ``priority``, an import path that is malformed
                or cannot be imported, or the name is taken and ``replace`` is False.
        """
        if isinstance(handler, str):
            path, handler = handler, _imported(handler)
            if not (isinstance(handler, Handler) or _is_handler_class(handler)):
                raise TypeError(f"{path!r} is not a Handler class or instance")
        instance = _validate_handler(handler)
        if not is_int(priority):
            raise ConfigError(f"priority must be an int, got {priority!r}")
        with self._lock:
            if not replace and instance.name in self._by_name:
                raise ConfigError(f"a handler named {instance.name!r} is already registered")
            slot = _Slot(instance.name, priority, next(self._seq), instance)
            self._publish({**self._by_name, instance.name: slot})
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
        return [slot.name for slot in self._slots]

    def priority(self, name: str) -> int:
        """Return the priority ``name`` was registered with.

        Raises:
            ConfigError: no handler has that name.
        """
        slot = self._by_name.get(name)
        if slot is None:
            raise ConfigError(f"no handler named {name!r}; registered: {self._known()}")
        return slot.priority

    def set_priority(self, name: str, priority: int) -> None:
        """Ask the handler called ``name`` at ``priority`` from now on (as if registered
        again, without importing a built-in that was not asked yet).

        Raises:
            ConfigError: no handler has that name, or ``priority`` is not an int.

        Example:
            >>> registry = HandlerRegistry.with_builtins()
            >>> registry.set_priority("objects", 100)
            >>> registry.list()[0]
            'objects'
        """
        if not is_int(priority):
            raise ConfigError(f"priority must be an int, got {priority!r}")
        with self._lock:
            slot = self._by_name.get(name)
            if slot is None:
                raise ConfigError(f"no handler named {name!r}; registered: {self._known()}")
            moved = _Slot(name, priority, next(self._seq), slot.handler, slot.path)
            self._publish({**self._by_name, name: moved})

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
        return slot.handler or slot.get()  # imported already: no call

    def can_execute_code(self) -> bool:
        """True when a registered handler loads bytes that can run code (pickle).

        Built-in handlers not imported yet are judged by name (only ``objects``
        unpickles), so asking imports nothing.

        Example:
            >>> registry = default_registry().copy()
            >>> registry.can_execute_code()
            True
            >>> registry.unregister("objects")
            >>> registry.can_execute_code()
            False
        """
        for slot in self._by_name.values():
            handler = slot.handler
            if handler is None:
                if slot.name == "objects":
                    return True
            elif handler.executes_code:
                return True
        return False

    def for_object(self, obj: Any) -> Handler:
        """Return the first handler, by priority, whose ``can_handle(obj)`` is True.

        A handler whose ``can_handle`` raises is logged and skipped.

        Raises:
            SerializationError: no handler takes the object (the message names its type).
        """
        for slot in self._slots:
            handler = slot.handler or slot.get()
            if self._accepts(handler, obj):
                return handler
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
            handler = slot.handler or slot.get()
            if not self._accepts(handler, obj):
                continue
            try:
                # the handler sees the sink write-only, as its contract says: writes counted
                info = handler.dump(obj, cast(BinaryIO, counting), options)
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
        with clone._lock:
            clone._publish(
                {
                    slot.name: _Slot(
                        slot.name, slot.priority, next(clone._seq), slot.handler, slot.path
                    )
                    for slot in slots
                }
            )
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


def _is_handler_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Handler)


def _imported(path: str) -> Any:
    """The object a user's ``"module:Class"`` path names; ``ConfigError`` if there is none."""
    try:
        return import_path(path)
    except ValueError as exc:
        raise ConfigError(
            f"{path!r} is not a 'module:Class' import path, e.g. {_EXAMPLE_PATH!r}"
        ) from exc
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {path!r}: {exc}") from exc


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
