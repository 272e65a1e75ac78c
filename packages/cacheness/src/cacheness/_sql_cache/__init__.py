"""SqlCache: a pull-through cache for tabular data (private package; import from cacheness).

``from cacheness import SqlCache, SqlCacheAdapter`` loads this package (and SQLAlchemy)
on first use; ``import cacheness`` alone does not. One concept per module:

* :mod:`.cache`: :class:`SqlCache`, the class users hold: ``get_data``, builders, management;
* :mod:`.schema`: the cached table and the known-empty table, UTC timestamp columns;
* :mod:`.query`: query parameters checked against the table, fetcher keyword arguments;
* :mod:`.increments`: time and ordered increments, the grid a range is made of;
* :mod:`.gaps`: what a request lacks, grouped into fetcher calls;
* :mod:`.frames`: DataFrames out (table dtypes) and in (fetched frames checked);
* :mod:`.adapters`: :class:`SqlCacheAdapter` and plain fetcher functions;
* :mod:`.locks`: single flight across threads, processes and hosts;
* :mod:`.dialects`: SQLite, PostgreSQL and DuckDB specifics;
* :mod:`.result` and :mod:`.errors`: what calls return and raise.
"""

from cacheness.storage import import_optional

# numpy and pandas come with the extra; say so if they are missing.
import_optional("numpy", extra="sql", distribution="cacheness", purpose="SqlCache")

from cacheness._sql_cache.adapters import SqlCacheAdapter  # noqa: E402
from cacheness._sql_cache.cache import GapDetector, SqlCache  # noqa: E402
from cacheness._sql_cache.errors import (  # noqa: E402
    FetcherError,
    InvalidFetchedDataError,
    InvalidQueryError,
    SqlCacheError,
)
from cacheness._sql_cache.result import SqlCacheResult, SqlCacheStatus  # noqa: E402

__all__ = [
    "FetcherError",
    "GapDetector",
    "InvalidFetchedDataError",
    "InvalidQueryError",
    "SqlCache",
    "SqlCacheAdapter",
    "SqlCacheError",
    "SqlCacheResult",
    "SqlCacheStatus",
]
