"""Cache keys: a stable 128-bit hash of keyword arguments.

:func:`derive_key` turns the parameters of a cached computation into 32 lowercase hex
characters (XXH3-128) over a canonical, type-tagged MessagePack encoding of them:

* the order of keyword arguments, dict items and set elements does not matter;
* the type does: ``1``, ``1.0``, ``"1"``, ``True``, ``(1,)`` and ``[1]`` all give different keys;
* numpy arrays count by dtype, shape and bytes, pandas objects by content (values, index,
  columns, dtypes), ``pathlib.Path`` values by the content of the file or directory tree;
* dataclasses, msgspec Structs, NamedTuples, attrs and pydantic models count by their fields,
  and any object can take part by defining ``__cache_key__()``;
* keys are identical across processes, runs and platforms (no ``hash()``, ``id()``,
  ``repr()`` or pickle on the default path), and :data:`KEY_SCHEMA_VERSION` is part of
  every key so a deliberate change of the encoding invalidates old keys cleanly.

:func:`describe_params` gives the JSON form of the parameters, stored with a cache entry so
entries can be listed and queried by the arguments they were computed from.

Example:
    >>> from cacheness.keys import derive_key
    >>> key = derive_key({"model": "resnet", "epochs": 10})
    >>> key == derive_key({"epochs": 10, "model": "resnet"})
    True
    >>> key == derive_key({"model": "resnet", "epochs": 10.0})
    False
    >>> len(key), key == key.lower()
    (32, True)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Final, get_args

import msgspec
import xxhash

from cacheness._keys_canon import (
    Canonicalizer,
    HashUnknown,
    KeyProblem,
    PathMode,
    encode,
)
from cacheness.storage import metadata_problem
from cacheness.storage.errors import CacheError

__all__ = [
    "KEY_SCHEMA_VERSION",
    "HashUnknown",
    "PathMode",
    "UnsupportedKeyValueError",
    "derive_key",
    "describe_params",
]

logger = logging.getLogger(__name__)

KEY_SCHEMA_VERSION: Final = 1
"""Version of the canonical key encoding, hashed into every key.

Raised whenever the encoding of any value changes, so that keys derived by an older
version are never mistaken for new ones: they simply stop matching (misses, not wrong hits).
"""

_HASH_UNKNOWN = get_args(HashUnknown)
_PATH_MODES = get_args(PathMode)
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_NAN = float("nan")
_xxh3_128_hexdigest = xxhash.xxh3_128_hexdigest

_REMEMBERED: dict[tuple[Any, ...], str] = {}
"""Keys of parameters that are all short strings and 64-bit ints, by (schema version,
prefix, *items):
a pure function's results, so a repeated call (a hot ``get``, a decorated hit) costs a
dict lookup. Those two types never compare equal to each other nor to anything of
another type a lookup could bring (``True == 1`` but bools are not taken)."""
_REMEMBER_MAX: Final = 4096
_REMEMBER_STR: Final = 256


class UnsupportedKeyValueError(CacheError, TypeError):
    """A key parameter has a type that cannot be hashed stably.

    Attributes:
        parameter: where the value sits, e.g. ``"config.layers[2]"``.
        value_type: the qualified name of the offending type.

    Example:
        >>> from cacheness.keys import UnsupportedKeyValueError, derive_key
        >>> try:
        ...     derive_key({"callback": object()})
        ... except TypeError as exc:
        ...     print(isinstance(exc, UnsupportedKeyValueError), exc.parameter, exc.value_type)
        True callback builtins.object
    """

    def __init__(self, message: str, *, parameter: str, value_type: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.value_type = value_type


def derive_key(
    params: Mapping[str, Any],
    *,
    prefix: str | None = None,
    hash_unknown: HashUnknown = "error",
    path_mode: PathMode = "content",
) -> str:
    """Return the cache key of ``params``: 32 lowercase hex characters (XXH3-128).

    Args:
        params: the keyword arguments that identify a result, by parameter name.
        prefix: a namespace mixed into the key, e.g. a function's module, qualified name
            and version salt. ``None`` and ``""`` mean no namespace.
        hash_unknown: ``"error"`` (default) raises for values of unsupported types;
            ``"pickle"`` hashes their pickle bytes instead. Pickle bytes are **not
            guaranteed stable** across Python or library versions (nor for objects whose
            pickle embeds set order or addresses): expect misses, use with care.
        path_mode: how ``pathlib.Path`` values count: ``"content"`` (default) hashes the
            file's bytes, or every file's relative path and bytes for a directory;
            ``"stat"`` uses the absolute path, size and modification time instead (fast,
            reads nothing, but local to one machine).

    Returns:
        The key, e.g. ``"3f0c..."`` (always 32 characters from ``0-9a-f``).

    Raises:
        UnsupportedKeyValueError: a value (at any depth) has an unsupported type; also a
            :class:`TypeError`. The message says where, and the three ways out: pass
            ``key_func=``, implement ``__cache_key__``, or use ``hash_unknown="pickle"``.
        TypeError: a parameter name is not a string, or ``prefix`` is not a string.
        ValueError: an unknown option value, a reference cycle in a value, or a path that
            is neither a file nor a directory.
        FileNotFoundError: a ``Path`` value (or a symlink inside a directory) does not exist.

    Example:
        >>> derive_key({"x": 1, "y": [1, 2]})
        'c928db332c08141a342bfe091dc3874e'
        >>> derive_key({"x": 1}) != derive_key({"x": 1}, prefix="mymodule.train:v2")
        True
        >>> len({derive_key({"x": v}) for v in (1, 1.0, "1", True, (1,), [1])})
        6
    """
    if hash_unknown not in _HASH_UNKNOWN:
        raise ValueError(f"hash_unknown must be one of {_HASH_UNKNOWN}, not {hash_unknown!r}")
    if path_mode not in _PATH_MODES:
        raise ValueError(f"path_mode must be one of {_PATH_MODES}, not {path_mode!r}")
    if prefix is not None and type(prefix) is not str:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, not {type(prefix).__name__}")
        prefix = str.__str__(prefix)
    remembered = _remembered(params, prefix)
    if remembered is not None:
        key = _REMEMBERED.get(remembered)
        if key is not None:
            return key
    document: list[Any] = [KEY_SCHEMA_VERSION, prefix or None]
    append = document.append
    canonicalizer = None
    for name in _sorted_names(params):
        v = params[name]
        t = type(v)
        if (
            t is str
            or t is bool
            or v is None
            or t is bytes
            or (t is int and _INT_MIN <= v <= _INT_MAX)
        ):
            pass
        elif t is float:
            if v != v:
                v = _NAN  # every NaN is the same key
        else:
            if canonicalizer is None:
                canonicalizer = Canonicalizer(hash_unknown, path_mode)
            v = _canonical(name, v, canonicalizer)
        append(name if type(name) is str else _name(name))
        append(v)
    key = _xxh3_128_hexdigest(encode(document))
    if remembered is not None:
        if len(_REMEMBERED) >= _REMEMBER_MAX:
            _REMEMBERED.clear()
        _REMEMBERED[remembered] = key
    return key


def _remembered(params: Mapping[str, Any], prefix: str | None) -> tuple[Any, ...] | None:
    """What ``_REMEMBERED`` files ``params`` under, or None when they are not of its kinds."""
    for name, v in params.items():
        t = type(v)
        if type(name) is not str or not (
            (t is str and len(v) <= _REMEMBER_STR) or (t is int and _INT_MIN <= v <= _INT_MAX)
        ):
            return None
    return (KEY_SCHEMA_VERSION, prefix, *params.items())


def remembered_key(params: Mapping[str, Any], prefix: str | None = None) -> str | None:
    """The key :func:`derive_key` gave ``params`` (with ``prefix``) earlier in this
    process, or None: a lookup, for callers that check the parameters themselves."""
    if prefix is not None and type(prefix) is not str:
        return None
    filed = _remembered(params, prefix)
    return None if filed is None else _REMEMBERED.get(filed)


def _sorted_names(params: Mapping[str, Any]) -> list[str]:
    try:
        return sorted(params)
    except TypeError:
        for name in params:
            _name(name)
        raise


def _name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"parameter names must be str, got {name!r} ({type(name).__name__}); "
            "pass keyword arguments as a mapping of names to values"
        )
    return str.__str__(name)


def _canonical(name: str, value: Any, canonicalizer: Canonicalizer) -> Any:
    try:
        return canonicalizer.value(value)
    except KeyProblem as problem:
        error = _public_error(name, problem, canonicalizer.hash_unknown)
        raise error from problem.__cause__


def _public_error(name: str, problem: KeyProblem, hash_unknown: HashUnknown) -> Exception:
    location = name + "".join(reversed(problem.where))
    where = f"parameter {name!r}" + (f" (at {location})" if location != name else "")
    if problem.value_type is None:
        return problem.error(f"cannot derive a cache key from {where}: {problem.message}")
    ways = ["pass key_func= to build the key yourself"]
    owner = (
        "on a wrapper class"
        if problem.value_type.startswith("builtins.")
        else f"on {problem.value_type}"
    )
    ways.append(
        f"implement __cache_key__(self) {owner} returning a supported value "
        "(str, number, tuple, dict, dataclass, ...)"
    )
    if hash_unknown != "pickle":
        ways.append(
            "opt in with hash_unknown='pickle' (keys from pickle bytes are not guaranteed "
            "stable across Python or library versions)"
        )
    return UnsupportedKeyValueError(
        f"cannot derive a cache key from {where}: {problem.message}. To cache it anyway, "
        + ", or ".join(ways),
        parameter=location,
        value_type=problem.value_type,
    )


# -- the JSON form of key parameters --------------------------------------------------------


def _json_hook(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):
        return value.item()  # numpy scalars -> Python numbers, strings, bools
    raise TypeError(f"{type(value).__name__} has no JSON form")


_json_encode_raw = msgspec.json.Encoder(enc_hook=_json_hook, order="deterministic").encode
_json_decode = msgspec.json.decode
_JSON_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)
_PLAIN_ELEMENTS = (str, int, float, bool, bytes, type(None))


def _json_encode(value: Any) -> bytes:
    """JSON of ``value`` with every set in one order, whatever order it was built in."""
    return _json_encode_raw(_ordered_sets(value))


def _ordered_sets(value: Any) -> Any:
    """``value`` with sets of containers (frozensets, tuples) made lists in JSON order.

    msgspec sorts sets by comparing their elements, which for frozensets means the
    subset relation: a partial order, so the result would depend on insertion order.
    Sets of plain scalars are left to msgspec (numbers stay in numeric order).
    """
    kind = type(value)
    if kind is dict:
        return {k: _ordered_sets(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_ordered_sets(v) for v in value]
    if (kind is set or kind is frozenset) and not all(type(v) in _PLAIN_ELEMENTS for v in value):
        return sorted((_ordered_sets(v) for v in value), key=_json_encode_raw)
    return value


def describe_params(
    params: Mapping[str, Any], *, max_value_bytes: int = 1024
) -> dict[str, Any] | None:
    """Return the JSON form of the key parameters that have one, for storage and queries.

    A cache stores this dict with each entry so entries can be listed and filtered by
    the arguments they were computed from. It is a *description*, not the identity (that
    is :func:`derive_key`): tuples become lists, sets sorted lists, datetimes, UUIDs and
    Decimals strings, enums their values, dataclasses/Structs objects, paths strings,
    numpy scalars numbers, bytes base64, and NaN/infinity ``null`` (JSON has no such
    numbers). Parameters without a JSON form (arrays, DataFrames, arbitrary objects),
    whose JSON exceeds ``max_value_bytes``, or that a metadata index cannot hold (text
    with NUL characters or lone surrogates, integers beyond 64 bits) are left out; they
    still count in the key. Applying the function to the
    arguments of a query gives values that compare equal to the stored ones.

    Args:
        params: keyword arguments by name, as given to :func:`derive_key`.
        max_value_bytes: largest JSON encoding kept for one parameter.

    Returns:
        A dict sorted by parameter name, or ``None`` when no parameter has a JSON form.

    Raises:
        TypeError: a parameter name is not a string.

    Example:
        >>> import datetime, pathlib
        >>> describe_params({"when": datetime.date(2024, 5, 1), "shape": (3, 4),
        ...                  "src": pathlib.Path("data/in.csv"), "blob": object()})
        {'shape': [3, 4], 'src': 'data/in.csv', 'when': '2024-05-01'}
        >>> describe_params({"callback": print}) is None
        True
    """
    names = [_name(name) for name in _sorted_names(params)]
    if not names:
        return None
    try:
        whole = _json_encode(params)
    except _JSON_ERRORS:
        whole = None
    if whole is not None and len(whole) <= max_value_bytes:
        document: dict[str, Any] = _json_decode(whole)  # the JSON form of a dict
        if metadata_problem(document) is None:
            return document
    described: dict[str, Any] = {}
    for name in names:
        try:
            encoded = _json_encode(params[name])
        except _JSON_ERRORS as exc:
            logger.debug("key parameter %r has no JSON form (%s); not described", name, exc)
            continue
        if len(encoded) > max_value_bytes:
            logger.debug(
                "key parameter %r: JSON form of %d bytes exceeds max_value_bytes=%d; not described",
                name,
                len(encoded),
                max_value_bytes,
            )
            continue
        value = _json_decode(encoded)
        if metadata_problem({name: value}) is not None:
            logger.debug("key parameter %r cannot be stored in an index; not described", name)
            continue
        described[name] = value
    return described or None
