"""Errors of SqlCache, part of the one hierarchy rooted at ``cacheness.storage.errors``.

* :class:`SqlCacheError` (a :class:`~cacheness.storage.errors.CacheError`) is the root.
* :class:`InvalidQueryError` (also a :class:`~cacheness.storage.errors.FilterError`, so a
  ``ValueError``): ``get_data`` was called with an unknown parameter, a missing key, a
  value of the wrong type or a range whose start is after its end.
* :class:`InvalidFetchedDataError` (also a ``ValueError``): the fetcher returned
  something that does not fit the table (not a DataFrame, unknown columns, wrong dtypes,
  duplicate or missing keys). Nothing of it is stored.
* :class:`FetcherError`: the fetcher raised. Its exception is the ``__cause__``; nothing
  of the failed call is stored.

Example:
    >>> from cacheness.storage.errors import CacheError
    >>> issubclass(InvalidQueryError, ValueError), issubclass(FetcherError, CacheError)
    (True, True)
"""

from __future__ import annotations

from cacheness.storage.errors import CacheError, FilterError

__all__ = ["FetcherError", "InvalidFetchedDataError", "InvalidQueryError", "SqlCacheError"]


class SqlCacheError(CacheError):
    """Root of the errors SqlCache raises on purpose."""


class InvalidQueryError(SqlCacheError, FilterError):
    """The parameters of a ``get_data`` (or ``invalidate_cache``) call are wrong."""


class InvalidFetchedDataError(SqlCacheError, ValueError):
    """The fetcher's answer does not fit the table; nothing of it was stored."""


class FetcherError(SqlCacheError):
    """The fetcher raised; ``__cause__`` is its exception and nothing was stored."""
