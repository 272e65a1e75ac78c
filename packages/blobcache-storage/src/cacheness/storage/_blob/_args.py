"""Checks of the arguments blob backends take from callers (private).

Every public backend method refuses a wrongly typed argument with an error of
:mod:`cacheness.storage.errors` that says what to pass, before anything is read or
written: never a raw ``TypeError`` from deep inside, and never a silent surprise such
as an int taken as an open file descriptor (``open(1)`` is stdout) or as a size
(``bytes(3)`` is three zero bytes).

Example:
    >>> ref_list(("ab/abc", "cd/cde"))
    ['ab/abc', 'cd/cde']
    >>> ref_list("ab/abc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cacheness.storage.errors.InvalidBlobNameError: expected an iterable of blob references...
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from cacheness.storage.errors import ConfigError, InvalidBlobNameError, SerializationError


def ref_list(refs: Iterable[str]) -> list[str]:
    """``refs`` as a list; a lone string or a non-iterable is refused.

    Raises:
        InvalidBlobNameError: ``refs`` is a string, bytes or not iterable.
    """
    if isinstance(refs, str | bytes):
        raise InvalidBlobNameError(
            f"expected an iterable of blob references, got the single reference {refs!r}; "
            f"pass [{refs!r}]"
        )
    try:
        return list(refs)
    except TypeError as exc:
        raise InvalidBlobNameError(
            f"expected an iterable of blob references (a list...), got {type(refs).__name__}"
        ) from exc


def ref_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a str (a listing prefix, possibly empty).

    Raises:
        InvalidBlobNameError: ``prefix`` is not a str.
    """
    if not isinstance(prefix, str):
        raise InvalidBlobNameError(
            f"a reference prefix must be a str ('' lists everything), got {type(prefix).__name__}"
        )
    return prefix


def data_view(data: Any) -> memoryview:
    """Return ``data`` as a flat byte view.

    Raises:
        SerializationError: ``data`` is not a bytes-like object (an int is refused too,
            where ``bytes(3)`` would make three zero bytes).
    """
    if isinstance(data, int | str):
        raise SerializationError(
            f"blob data must be bytes-like (bytes, bytearray, memoryview...), got "
            f"{type(data).__name__}; encode text first"
        )
    try:
        view = memoryview(data)
    except TypeError as exc:
        raise SerializationError(
            f"blob data must be bytes-like (bytes, bytearray, memoryview...), got "
            f"{type(data).__name__}"
        ) from exc
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def local_file(path: Any, *, output: bool = False) -> str | os.PathLike[str]:
    """Return ``path`` if it names a local file (a str or an ``os.PathLike``).

    Args:
        path: the argument.
        output: the file is to be written: an existing directory is refused.

    Raises:
        ConfigError: ``path`` is not a path (an int would be taken as an open file
            descriptor), is empty, or, for an output, is a directory. The local file's
            own errors (missing, unreadable) stay ``OSError`` (``FileNotFoundError``...).
    """
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise ConfigError(
            f"expected a local file path (a non-empty str or os.PathLike), got "
            f"{type(path).__name__} {path!r}"
        )
    if output and os.path.isdir(path):
        raise ConfigError(f"{os.fspath(path)!r} is a directory; pass the path of a file")
    return path


def digest(expected: object) -> str:
    """Return ``expected`` if it is a str (a content hash or an ETag).

    Raises:
        ConfigError: ``expected`` is not a str.
    """
    if not isinstance(expected, str):
        raise ConfigError(
            f"expected must be a content hash or an ETag (a str), got {type(expected).__name__}"
        )
    return expected
