"""The process-wide default cache that ``@cached`` uses without ``cache_instance=``.

:func:`get_cache` creates it on first use from the configuration the environment gives
(``CACHENESS_DIR``, the other ``CACHENESS_*`` variables, a ``CACHENESS_CONFIG`` file; see
:func:`cacheness.config.resolve_config`), :func:`set_default_cache` installs your own,
:func:`reset_cache` closes it so the next use starts afresh. Caches created here are
closed when the interpreter exits; a cache you install stays yours to close.

Example:
    >>> import os, tempfile
    >>> from cacheness.cache import cacheness
    >>> mine = cacheness(cache_dir=tempfile.mkdtemp())
    >>> previous = set_default_cache(mine)
    >>> get_cache() is mine
    True
    >>> reset_cache()  # closes ``mine``; the next get_cache() makes a new one
    >>> _ = set_default_cache(previous)
"""

from __future__ import annotations

import atexit
import logging
import threading

from cacheness.cache import cacheness
from cacheness.storage.errors import CacheError

__all__ = ["get_cache", "reset_cache", "set_default_cache"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_default: cacheness | None = None
_owned: list[cacheness] = []  # made by get_cache(): closed at exit


def get_cache() -> cacheness:
    """Return the default cache, creating it on first use (thread-safe).

    The cache is built as ``cacheness()`` builds it: explicit configuration aside,
    ``CACHENESS_*`` environment variables (``CACHENESS_DIR`` for the directory) and a
    ``CACHENESS_CONFIG`` file apply, then the defaults (a SQLite index with files under
    the default cache directory).

    Returns:
        The cache ``@cached`` functions use when given no ``cache_instance``.

    Raises:
        ConfigError: the environment holds an invalid configuration.

    Example:
        >>> import tempfile
        >>> from cacheness.cache import cacheness
        >>> previous = set_default_cache(cacheness(cache_dir=tempfile.mkdtemp()))
        >>> get_cache() is get_cache()
        True
        >>> reset_cache()
        >>> _ = set_default_cache(previous)
    """
    cache = _default
    if cache is not None:
        return cache
    return _create_default()


def _create_default() -> cacheness:
    global _default
    with _lock:
        if _default is None:
            created = cacheness()
            _owned.append(created)
            _default = created
            log.debug("created the default cache %r", created)
        return _default


def set_default_cache(cache: cacheness | None) -> cacheness | None:
    """Make ``cache`` the default cache; return the one it replaces (None if none yet).

    The replaced cache is not closed (it may still be in use); caches ``get_cache``
    created are closed at exit all the same. ``None`` removes the default, so the next
    :func:`get_cache` creates one from the environment.

    Raises:
        TypeError: ``cache`` is not a ``cacheness`` instance.

    Example:
        >>> import tempfile
        >>> from cacheness.cache import cacheness
        >>> with cacheness(cache_dir=tempfile.mkdtemp()) as team:
        ...     previous = set_default_cache(team)
        ...     get_cache() is team
        ...     set_default_cache(previous) is team
        True
        True
    """
    global _default
    if cache is not None and not isinstance(cache, cacheness):
        raise TypeError(
            f"set_default_cache() takes a cacheness instance or None, not {type(cache).__name__}"
        )
    with _lock:
        previous, _default = _default, cache
    return previous


def reset_cache() -> None:
    """Close the default cache and forget it; the next :func:`get_cache` creates a new one.

    Use it after changing ``CACHENESS_DIR`` or other ``CACHENESS_*`` variables, and in
    tests. The default is closed whoever made it (``set_default_cache`` included).

    Example:
        >>> import tempfile
        >>> from cacheness.cache import cacheness
        >>> first = cacheness(cache_dir=tempfile.mkdtemp())
        >>> previous = set_default_cache(first)
        >>> reset_cache()  # closes ``first``
        >>> first.get(x=1)
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.StorageError: this cache is closed; create a new cacheness()
        >>> _ = set_default_cache(previous)
    """
    global _default
    with _lock:
        old, _default = _default, None
        if old is not None and old in _owned:
            _owned.remove(old)
    if old is not None:
        old.close()


def _close_owned() -> None:
    """Close the caches :func:`get_cache` created (run at interpreter exit)."""
    global _default
    with _lock:
        caches = list(_owned)
        _owned.clear()
        if _default in caches:
            _default = None
    for cache in caches:
        try:
            cache.close()
        except (CacheError, OSError):
            log.warning("closing the default cache %r at exit failed", cache, exc_info=True)


atexit.register(_close_owned)
