"""Where rows come from: the :class:`SqlCacheAdapter` interface, or a plain function.

An adapter describes the table (``get_table_definition``), reads a request
(``parse_query_params``, optional: the default understands key columns and
``start_<column>``/``end_<column>`` ranges) and fetches rows (``fetch_data``). A plain
``data_fetcher`` function is wrapped in :class:`FunctionAdapter`.

The fetcher is called with the *gap's* parameters under the caller's names: a caller
asking ``get_data(symbol="AAPL", start_date=..., end_date=...)`` gets its fetcher
called as ``fetch(symbol="AAPL", start_date=<gap start>, end_date=<gap end>)``; a list
given by the caller (``user_id=[1, 2, 3]``) reaches the fetcher as the list of the
missing values.

Example:
    >>> import pandas as pd, sqlalchemy as sa
    >>> users = sa.Table("users", sa.MetaData(),
    ...                  sa.Column("user_id", sa.Integer, primary_key=True),
    ...                  sa.Column("name", sa.String))
    >>> class Users(SqlCacheAdapter):
    ...     def get_table_definition(self):
    ...         return users
    ...     def fetch_data(self, user_id):
    ...         return pd.DataFrame({"user_id": user_id, "name": [f"user {i}" for i in user_id]})
    >>> Users().parse_query_params(user_id=[1, 2])
    {'user_id': [1, 2]}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from cacheness._sql_cache.result import DataFrame

__all__ = ["FunctionAdapter", "SqlCacheAdapter"]


class SqlCacheAdapter(ABC):
    """The source of a SqlCache's rows and the shape of its table.

    Subclasses implement :meth:`get_table_definition` and :meth:`fetch_data`, and may
    override :meth:`parse_query_params` to accept other parameter names.
    """

    @abstractmethod
    def get_table_definition(self) -> sa.Table:
        """The table rows are cached in: a :class:`sqlalchemy.Table` with a primary key.

        SqlCache works on a copy and adds ``cached_at`` and ``expires_at``.
        """

    @abstractmethod
    def fetch_data(self, **kwargs: Any) -> DataFrame:
        """Fetch the rows of one gap from the source.

        Args:
            **kwargs: the gap, under the caller's names: key columns (a value, or a list
                when the caller gave a list) and ``start_<column>``/``end_<column>``
                (inclusive) for the range column.

        Returns:
            A DataFrame whose columns are columns of the table (key columns asked for
            one value at a time may be left out); an empty frame when the source has
            no rows, which SqlCache remembers until the TTL runs out.
        """

    def parse_query_params(self, **kwargs: Any) -> dict[str, Any]:
        """Read ``get_data`` keyword arguments as ``{column: value | [values] | range}``.

        A range is ``{"start": ..., "end": ...}`` (inclusive). The default takes key
        columns by name and a range of ``column`` as ``start_column=``/``end_column=``;
        override it to accept other names (then ``fetch_data`` still receives the
        standard ones).

        Example:
            >>> import datetime as dt
            >>> FunctionAdapter(sa.Table("t", sa.MetaData(), sa.Column("day", sa.Date)),
            ...                 print).parse_query_params(start_day=dt.date(2024, 1, 1),
            ...                                           end_day=dt.date(2024, 1, 2))
            {'day': {'start': datetime.date(2024, 1, 1), 'end': datetime.date(2024, 1, 2)}}
        """
        from cacheness._sql_cache.query import parse_kwargs

        return parse_kwargs(set(self.get_table_definition().c.keys()), kwargs)


class FunctionAdapter(SqlCacheAdapter):
    """An adapter made of a table and a plain ``data_fetcher`` function."""

    def __init__(self, table: sa.Table, fetcher: Callable[..., DataFrame]) -> None:
        _require_callable(fetcher)
        self.table = table
        self.fetcher = fetcher

    def get_table_definition(self) -> sa.Table:
        return self.table

    def fetch_data(self, **kwargs: Any) -> DataFrame:
        return self.fetcher(**kwargs)

    def __repr__(self) -> str:
        name = getattr(self.fetcher, "__qualname__", repr(self.fetcher))
        return f"FunctionAdapter({self.table.name!r}, {name})"


def _require_callable(fetcher: object) -> None:
    """Refuse a ``data_fetcher`` that cannot be called (typed code cannot pass one)."""
    if not callable(fetcher):
        from cacheness.storage.errors import ConfigError

        raise ConfigError(f"data_fetcher must be callable, got {type(fetcher).__name__}")
