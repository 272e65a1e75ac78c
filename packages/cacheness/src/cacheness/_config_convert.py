"""Plain data <-> the config dataclasses, copies and layering (private to cacheness.config).

msgspec converts every leaf value (so a wrong type is an error naming the field); the
walk over the dataclasses is ours because msgspec ignores unknown keys of dataclasses and
does not build dataclasses that have ``InitVar`` fields (the flat shortcuts).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any, Final, TypeVar, cast

import msgspec

from cacheness.storage import ConfigError, did_you_mean

__all__ = [
    "check_types",
    "copy_value",
    "explicit_fields",
    "field_types",
    "fields_of",
    "from_mapping",
    "init_names",
    "is_section",
    "mark_explicit",
    "overlay",
    "same_backend",
    "to_builtins",
    "tracks_explicit",
]

T = TypeVar("T")

_EXPLICIT = "_explicit_fields"


def explicit_fields(obj: object) -> frozenset[str]:
    """Return the fields of a config dataclass that were set explicitly (not defaulted)."""
    return getattr(obj, _EXPLICIT, frozenset())


def mark_explicit(obj: object, names: Iterable[str]) -> None:
    """Record ``names`` as set explicitly on ``obj`` (besides those recorded already)."""
    object.__setattr__(obj, _EXPLICIT, explicit_fields(obj) | frozenset(names))


RENAMED_FIELDS: Final = {
    "ttl": "default_ttl_seconds",
    "ttl_seconds": "default_ttl_seconds",
    "default_ttl": "default_ttl_seconds",
    "default_ttl_hours": "default_ttl_seconds",
    "max_size_mb": "max_cache_size_mb",
    "max_size": "max_cache_size_mb",
    "size_limit": "max_cache_size_mb",
    "max_cache_size": "max_cache_size_mb",
    "backend": "metadata_backend",
    "directory": "cache_dir",
    "location": "cache_dir",
    "path": "cache_dir",
    "eviction": "eviction_policy",
}
"""Names people write for configuration fields (other caches', Cacheness 0.4's) -> ours."""


def suggest_name(name: str, known: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for a field name: a known rename, else the closest.

    Example:
        >>> suggest_name("ttl", ["default_ttl_seconds", "max_entries"])
        " (did you mean 'default_ttl_seconds'?)"
    """
    names = list(known)
    renamed = RENAMED_FIELDS.get(name)
    if renamed is not None and renamed in names:
        return f" (did you mean {renamed!r}?)"
    return did_you_mean(name, names)


def tracks_explicit(cls: type[T]) -> type[T]:
    """Make a config dataclass record which fields its constructor was given.

    A value given explicitly wins over lower layers (environment, file) even when it
    equals the default: ``CacheConfig(eviction_policy="lru")`` means lru. The record is
    an attribute beside the fields, so equality and encoding ignore it.
    """
    init = cls.__init__
    parameters = list(inspect.signature(init).parameters)[1:]
    field_names = frozenset(field_types(cls)) - set(init_shortcuts(cls))

    known = frozenset(parameters)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if not known.issuperset(kwargs):
            name = sorted(kwargs.keys() - known)[0]
            raise TypeError(
                f"{cls.__name__}() got an unknown field {name!r}{suggest_name(name, parameters)};"
                f" it takes: {', '.join(parameters)}"
            )
        object.__setattr__(self, _EXPLICIT, frozenset())  # __post_init__ may add to it
        init(self, *args, **kwargs)
        given = {*parameters[: len(args)], *kwargs}
        mark_explicit(self, given & field_names)

    type.__setattr__(cls, "__init__", __init__)
    return cls


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Return the resolved type of every field and ``InitVar`` of the dataclass ``cls``."""
    found = _FIELD_TYPES.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = {
            name: hint.type if isinstance(hint, dataclasses.InitVar) else hint
            for name, hint in hints.items()
        }
        _FIELD_TYPES[cls] = found
    return found


def fields_of(obj: object) -> list[str]:
    """Return the field names of a config dataclass (an instance or the class)."""
    if not dataclasses.is_dataclass(obj):
        raise TypeError(f"not a config dataclass: {obj!r}")
    return [f.name for f in dataclasses.fields(obj)]


def init_shortcuts(cls: type) -> list[str]:
    """Return the ``InitVar`` names of the dataclass ``cls`` (its flat shortcuts)."""
    return [n for n, h in typing.get_type_hints(cls).items() if isinstance(h, dataclasses.InitVar)]


def init_names(cls: type) -> list[str]:
    """Return the names ``cls(...)`` accepts: its fields, then its ``InitVar`` shortcuts."""
    shortcuts = init_shortcuts(cls)
    names = [name for name in field_types(cls) if name not in shortcuts]
    return names + shortcuts


def is_section(value: object) -> bool:
    """Return True for a config dataclass instance (a section or the whole config)."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _convert(value: Any, hint: Any, where: str) -> Any:
    try:
        return msgspec.convert(value, hint)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def from_mapping(cls: type[T], data: object, where: str) -> T:
    """Build ``cls`` from a mapping, converting each value to its field's type.

    Raises:
        ConfigError: ``data`` is not a mapping, has a key ``cls`` does not know, or a
            value of the wrong type; the message names the key, e.g. ``metadata.backend``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where} must be a mapping of settings, got {type(data).__name__} {data!r}"
        )
    known = init_names(cls)
    hints = field_types(cls)
    values: dict[str, Any] = {}
    prefix = f"{where}." if where else ""
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"unknown configuration key {prefix}{key}{suggest_name(key, known)}; "
                f"known keys{' of ' + where if where else ''}: {', '.join(known)}"
            )
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[key] = from_mapping(hint, value, f"{prefix}{key}")
        else:
            values[key] = _convert(value, hint, f"{prefix}{key}")
    return cls(**values)


def check_types(obj: object, where: str = "") -> list[str]:
    """Return one message per field of ``obj`` (recursively) holding a wrongly typed value."""
    problems: list[str] = []
    hints = field_types(type(obj))
    prefix = f"{where}." if where else ""
    for name in fields_of(obj):
        value = getattr(obj, name)
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if isinstance(value, hint):
                problems += check_types(value, f"{prefix}{name}")
            else:
                problems.append(
                    f"{prefix}{name}: expected a {hint.__name__}, got {type(value).__name__}"
                )
            continue
        try:
            msgspec.convert(value, hint)
        except msgspec.ValidationError as exc:
            problems.append(f"{prefix}{name}: {exc}")
    return problems


def copy_value(value: T) -> T:
    """Copy config data: sections, dicts and lists are copied, other objects shared.

    Backend instances and handler classes in a config are shared, never deep-copied.
    """
    if is_section(value):
        changes = {name: copy_value(getattr(value, name)) for name in fields_of(value)}
        copy = type(value)(**changes)  # the constructor, not replace(): no shortcut re-folding
        object.__setattr__(copy, _EXPLICIT, explicit_fields(value))
        return copy
    if isinstance(value, dict):
        return cast(T, {k: copy_value(v) for k, v in value.items()})  # a dict, as given
    if isinstance(value, list):
        return cast(T, [copy_value(v) for v in value])  # a list, as given
    return value


def same_backend(a: object, b: object) -> bool:
    """Return True when two ``backend`` values name the same backend (instances: identity)."""
    return a is b or (isinstance(a, str) and isinstance(b, str) and a == b)


def _names_other_backend(upper: Any, lower: Any, default: Any) -> bool:
    if not hasattr(upper, "backend") or same_backend(upper.backend, lower.backend):
        return False
    return "backend" in explicit_fields(upper) or not same_backend(upper.backend, default.backend)


def overlay(lower: T, upper: T, default: T) -> T:
    """Return ``lower`` with every value of ``upper`` that was set explicitly on top.

    A value counts as set when its constructor was given it (see
    :func:`tracks_explicit`) or when it differs from ``default``. Options dicts are
    merged key by key. A backend section of ``upper`` that names another backend than
    ``lower`` (explicitly, or by a value other than the default) replaces ``lower``'s
    section as a whole: settings made for one backend do not carry over to another.
    """
    values: dict[str, Any] = {}
    explicit = explicit_fields(upper)
    for name in fields_of(upper):
        low, up, base = (getattr(obj, name) for obj in (lower, upper, default))
        if is_section(up):
            if up == base and not explicit_fields(up):
                values[name] = copy_value(low)
            elif _names_other_backend(up, low, base):
                values[name] = copy_value(up)
            else:
                values[name] = overlay(low, up, base)
        elif isinstance(up, dict):
            values[name] = {**copy_value(low), **copy_value(up)}
        else:
            chosen = up if name in explicit or up != base else low
            values[name] = copy_value(chosen)
    result = type(upper)(**values)
    object.__setattr__(result, _EXPLICIT, explicit_fields(lower) | explicit)
    return result


def _encode_hook(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, type) and "<locals>" not in value.__qualname__:
        return f"{value.__module__}:{value.__qualname__}"  # a handler class, by import path
    raise ConfigError(
        f"cannot write a {type(value).__name__} object into a configuration file: "
        "configure backends and handlers by name (or 'module:Class' path) and pass "
        "ready-made objects in code instead"
    )


def to_builtins(obj: object) -> dict[str, Any]:
    """Return ``obj`` (a config dataclass) as JSON-able dicts, lists and scalars.

    Raises:
        ConfigError: the config holds an object that has no plain-data form (a backend
            instance, a handler instance, a client...).
    """
    result = msgspec.to_builtins(obj, enc_hook=_encode_hook)
    if not isinstance(result, dict):  # pragma: no cover - dataclasses encode as dicts
        raise ConfigError(f"{type(obj).__name__} did not encode as a mapping")
    return result
