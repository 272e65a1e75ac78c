"""What a ``get_result`` call tells its caller: the rows and where they came from.

Example:
    >>> SqlCacheStatus.CACHED.value, SqlCacheStatus("source_failed").name
    ('cached', 'SOURCE_FAILED')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

__all__ = ["DataFrame", "SqlCacheResult", "SqlCacheStatus"]

# pandas.DataFrame; pandas ships no type information of its own (pandas-stubs is
# separate), and SqlCache never imports pandas for types.
DataFrame: TypeAlias = Any


class SqlCacheStatus(StrEnum):
    """Where the rows of one ``get_data`` call came from.

    * ``CACHED``: every requested row (or known absence) was in the table and fresh;
      the source was not called.
    * ``FETCHED``: the missing or expired parts were fetched from the source; every
      returned row is fresh.
    * ``STALE``: the source failed and ``stale_if_error`` served expired rows in place
      of fresh ones; no requested row is missing.
    * ``SOURCE_FAILED``: the source failed and ``stale_if_error`` returned what the table
      had; some requested rows are missing from the frame.
    """

    CACHED = "cached"
    FETCHED = "fetched"
    STALE = "stale"
    SOURCE_FAILED = "source_failed"


@dataclass(frozen=True)
class SqlCacheResult:
    """The answer of :meth:`SqlCache.get_result`.

    Attributes:
        data: the requested rows, sorted by the primary key (what ``get_data`` returns).
        status: where they came from (:class:`SqlCacheStatus`).
        fetches: the keyword arguments of every fetcher call this request made, in order
            (empty when nothing was fetched).
        rows_fetched: rows the fetcher returned, over all its calls.
        error: the fetcher's exception when the status is ``STALE`` or ``SOURCE_FAILED``.
    """

    data: DataFrame
    status: SqlCacheStatus
    fetches: tuple[dict[str, Any], ...] = field(default=())
    rows_fetched: int = 0
    error: BaseException | None = None
