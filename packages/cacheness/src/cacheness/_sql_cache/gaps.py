"""Gap detection: which parts of a request the table cannot answer yet.

A request is a set of keys: the product of the values asked for each key column, and,
for a range, every point of the range column's grid between the bounds (see
:mod:`.increments`). A key is *known* when the table holds a fresh row for it, or when
the source was asked for it and had nothing (a fresh entry in the known-empty table).
Everything else is missing: never fetched, expired, or provisional.

Missing keys become fetcher calls: one per contiguous run of grid points per series,
and series that miss exactly the same run share one call when the caller asked for a
list of them (``symbol=[...]``). Discrete lookups ask once for all missing values of
the last list-valued key column.

The live rows come from the one indexed query that also answers the request; the
known-empty table is read only when rows are missing, and only for those series.

Example:
    >>> import numpy as np
    >>> missing_runs(0, 9, np.array([0, 1, 2, 5, 6]), [(8, 9)])
    [(3, 4), (7, 7)]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from cacheness._sql_cache.increments import Axis
from cacheness._sql_cache.query import Between, Equals, OneOf, Query, Spec
from cacheness._sql_cache.result import DataFrame
from cacheness._sql_cache.schema import CacheTables, ColumnKind

__all__ = ["FetchRequest", "GapFinder", "KnownEmpty", "key_values", "missing_runs"]

Scope = tuple[Any, ...]


# (scopes, lowest, highest range value) -> {scope: [(range_start, range_end), ...]}
# or, for tables without a range column, (keys) -> set of known-empty keys.
class KnownEmpty(Protocol):
    """The known-empty entries of a table, looked up when rows are missing."""

    def keys(self, missing: Sequence[Scope]) -> set[Scope]:
        """Of ``missing`` keys (a table without a range column), those known to be empty."""
        ...

    def ranges(
        self, scopes: Sequence[Scope], low: Any, high: Any
    ) -> Mapping[Scope, list[tuple[Any, Any]]]:
        """The known-empty ranges of ``scopes`` that overlap ``low``..``high``."""
        ...


@dataclass(frozen=True)
class FetchRequest:
    """One fetcher call to make.

    Attributes:
        specs: what to ask for, per key column (turned into the fetcher's kwargs).
        scopes: the series (values of the non-range key columns) the call covers.
        lo, hi: grid indices of the range asked for (range requests), else None.
        keys: the full keys asked for (discrete requests).
        kwargs: the fetcher's keyword arguments when a custom gap detector gave them
            and they could not be read as specs (no negative caching then).
    """

    specs: Mapping[str, Spec]
    scopes: tuple[Scope, ...] = ()
    lo: int | None = None
    hi: int | None = None
    keys: tuple[Scope, ...] = ()
    kwargs: Mapping[str, Any] | None = field(default=None)


def missing_runs(
    lo: int, hi: int, points: np.ndarray[Any, Any], intervals: Iterable[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Runs of grid indices in ``lo..hi`` covered neither by ``points`` nor ``intervals``.

    ``points`` are known grid indices (any order, duplicates allowed); ``intervals`` are
    inclusive index ranges known to be empty.
    """
    if lo > hi:
        return []
    pts = np.unique(points[(points >= lo) & (points <= hi)])
    known: list[tuple[int, int]] = []
    if len(pts):
        breaks = np.flatnonzero(np.diff(pts) != 1)
        starts = np.concatenate(([pts[0]], pts[breaks + 1]))
        ends = np.concatenate((pts[breaks], [pts[-1]]))
        known = list(zip(starts.tolist(), ends.tolist(), strict=True))
    known += [(max(a, lo), min(b, hi)) for a, b in intervals if a <= hi and b >= lo and a <= b]
    known.sort()
    runs: list[tuple[int, int]] = []
    cursor = lo
    for a, b in known:
        if a > cursor:
            runs.append((cursor, a - 1))
        cursor = max(cursor, b + 1)
        if cursor > hi:
            break
    if cursor <= hi:
        runs.append((cursor, hi))
    return runs


def key_values(frame: DataFrame, column: str, kind: ColumnKind) -> list[Any]:
    """The Python values (as queries hold them) of a key column of a read frame."""
    series = frame[column]
    if kind == "date":
        return [value.date() for value in series]
    if kind in ("utc", "naive"):
        return list(series.dt.to_pydatetime())
    values: list[Any] = series.tolist()
    return values


def _scope_values(specs: Mapping[str, Spec], columns: Sequence[str]) -> list[Scope]:
    choices = []
    for column in columns:
        spec = specs[column]
        if isinstance(spec, Between):  # pragma: no cover - scope columns hold values
            raise TypeError(f"a scope column has a range: {spec!r}")
        choices.append(spec.values if isinstance(spec, OneOf) else (spec.value,))
    return list(itertools.product(*choices))


def _grouping_column(specs: Mapping[str, Spec], columns: Sequence[str]) -> str | None:
    listed = [column for column in columns if isinstance(specs[column], OneOf)]
    return listed[-1] if listed else None


def _shaped(spec: Spec, value: Any) -> Spec:
    """``value`` in the shape the caller used for this column (a list stays a list)."""
    return OneOf((value,)) if isinstance(spec, OneOf) else Equals(value)


class GapFinder:
    """Finds the missing parts of requests against one cache's tables."""

    def __init__(self, tables: CacheTables, axis: Axis | None, tail_steps: int = 0) -> None:
        self.tables = tables
        self.axis = axis
        self.tail_steps = tail_steps

    # -- range requests --------------------------------------------------------------
    def _grid_bounds(self, spec: Between) -> tuple[int, int]:
        assert self.axis is not None
        return self.axis.ceil(spec.start), self.axis.floor(spec.end)

    def _series_points(
        self, live: DataFrame, scopes: Sequence[Scope]
    ) -> dict[Scope, np.ndarray[Any, Any]]:
        """Grid indices of the live on-grid rows, per series."""
        assert self.axis is not None
        assert self.tables.range_column is not None
        columns = self.tables.scope_columns
        empty = np.empty(0, dtype=np.int64)
        if live.empty:
            return dict.fromkeys(scopes, empty)
        units = self.axis.series_units(live[self.tables.range_column])
        index, on_grid = self.axis.grid(units)
        if not columns:
            return {(): index[on_grid]}
        if any(self.tables.kinds[column] in ("date", "utc", "naive") for column in columns):
            names = [key_values(live, column, self.tables.kinds[column]) for column in columns]
            positions: dict[Scope, list[int]] = {}
            for row, scope in enumerate(zip(*names, strict=True)):
                positions.setdefault(scope, []).append(row)
            groups = {scope: np.asarray(rows) for scope, rows in positions.items()}
        else:
            indices = live.groupby(list(columns), sort=False).indices
            groups = {
                key if isinstance(key, tuple) else (key,): rows for key, rows in indices.items()
            }
        points: dict[Scope, np.ndarray[Any, Any]] = {}
        for scope in scopes:
            rows = groups.get(scope)
            points[scope] = empty if rows is None else index[rows][on_grid[rows]]
        return points

    def _all_complete(self, live: DataFrame, scopes: Sequence[Scope], expected: int) -> bool:
        """True when every series has all ``expected`` grid points (one count, no grouping).

        The frame holds only rows of the requested series, inside the requested range,
        one per key: no series has more than ``expected`` on-grid rows, so the total is
        ``expected`` times the series exactly when each of them is complete.
        """
        need = expected * len(scopes)
        return len(live) >= need and self._on_grid(live) == need

    def _on_grid(self, live: DataFrame) -> int:
        assert self.axis is not None
        assert self.tables.range_column is not None
        units = self.axis.series_units(live[self.tables.range_column])
        return int(np.count_nonzero(self.axis.grid(units)[1]))

    def _range_gaps(
        self, query: Query, live: DataFrame, known_empty: KnownEmpty
    ) -> list[FetchRequest]:
        assert self.axis is not None
        assert self.tables.range_column is not None
        specs, range_column = query.specs, self.tables.range_column
        between = specs[range_column]
        assert isinstance(between, Between)
        lo, hi = self._grid_bounds(between)
        if lo > hi:
            return []  # no grid point in the range (a weekend on a business-day grid)
        scope_columns = self.tables.scope_columns
        scopes = _scope_values(specs, scope_columns)
        expected = hi - lo + 1
        if self._all_complete(live, scopes, expected):
            return []  # the cached path: every series has every point
        points = self._series_points(live, scopes)
        runs = {
            scope: [] if len(points[scope]) == expected else missing_runs(lo, hi, points[scope])
            for scope in scopes
        }
        short = [scope for scope in scopes if runs[scope]]
        if not short:
            return []
        empties = known_empty.ranges(short, self.axis.value(lo), self.axis.value(hi))
        for scope in short:
            intervals = [
                (self.axis.ceil(start), self.axis.floor(end))
                for start, end in empties.get(scope, ())
            ]
            if intervals:
                runs[scope] = missing_runs(lo, hi, points[scope], intervals)
                if not runs[scope]:
                    continue
            if self.tail_steps and len(points[scope]):
                runs[scope] = _merged([(a - self.tail_steps, b) for a, b in runs[scope]])
        grouping = _grouping_column(specs, scope_columns)
        groups: dict[tuple[int, int, Scope], list[Scope]] = {}
        for scope in scopes:
            for a, b in runs[scope]:
                rest = tuple(
                    value
                    for column, value in zip(scope_columns, scope, strict=True)
                    if column != grouping
                )
                groups.setdefault((a, b, rest), []).append(scope)
        requests = []
        for (a, b, _), members in groups.items():
            request_specs: dict[str, Spec] = {}
            for position, column in enumerate(scope_columns):
                if column == grouping:
                    request_specs[column] = OneOf(tuple(scope[position] for scope in members))
                else:
                    request_specs[column] = _shaped(specs[column], members[0][position])
            request_specs[range_column] = Between(self.axis.value(a), self.axis.value(b))
            ordered = {key: request_specs[key] for key in self.tables.primary_keys}
            requests.append(FetchRequest(ordered, tuple(members), a, b))
        return requests

    # -- discrete requests -----------------------------------------------------------
    def _discrete_gaps(
        self, query: Query, live: DataFrame, known_empty: KnownEmpty
    ) -> list[FetchRequest]:
        keys = self.tables.primary_keys
        specs = query.specs
        expected = _scope_values(specs, keys)
        if live.empty:
            present: set[Scope] = set()
        else:
            present = set(
                zip(*(key_values(live, key, self.tables.kinds[key]) for key in keys), strict=True)
            )
        missing = [key for key in expected if key not in present]
        if not missing:
            return []
        missing = [
            key for key in missing if key not in self._known_empty_keys(missing, known_empty)
        ]
        if not missing:
            return []
        grouping = _grouping_column(specs, keys)
        groups: dict[Scope, list[Scope]] = {}
        for key in missing:
            rest = tuple(
                value for column, value in zip(keys, key, strict=True) if column != grouping
            )
            groups.setdefault(rest, []).append(key)
        requests = []
        scope_positions = [keys.index(column) for column in self.tables.scope_columns]
        for members in groups.values():
            request_specs: dict[str, Spec] = {}
            for position, column in enumerate(keys):
                if column == grouping:
                    request_specs[column] = OneOf(tuple(key[position] for key in members))
                else:
                    request_specs[column] = _shaped(specs[column], members[0][position])
            scopes = tuple(dict.fromkeys(tuple(key[p] for p in scope_positions) for key in members))
            requests.append(FetchRequest(request_specs, scopes, keys=tuple(members)))
        return requests

    def _known_empty_keys(self, missing: Sequence[Scope], known_empty: KnownEmpty) -> set[Scope]:
        range_column = self.tables.range_column
        if range_column is None:
            return known_empty.keys(missing)
        keys = self.tables.primary_keys
        where = keys.index(range_column)
        scope_positions = [keys.index(column) for column in self.tables.scope_columns]
        values = [key[where] for key in missing]
        scopes = list(dict.fromkeys(tuple(key[p] for p in scope_positions) for key in missing))
        empties = known_empty.ranges(scopes, min(values), max(values))
        covered = set()
        for key in missing:
            scope = tuple(key[p] for p in scope_positions)
            if any(start <= key[where] <= end for start, end in empties.get(scope, ())):
                covered.add(key)
        return covered

    def find(self, query: Query, live: DataFrame, known_empty: KnownEmpty) -> list[FetchRequest]:
        """The fetcher calls that would complete ``query``, given its ``live`` rows.

        Args:
            query: the checked request.
            live: its fresh rows (as SqlCache reads them).
            known_empty: looks up known-empty entries; called only when rows are missing.
        """
        if query.is_range:
            return self._range_gaps(query, live, known_empty)
        return self._discrete_gaps(query, live, known_empty)


def _merged(runs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs sorted, with overlapping or touching ones merged."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(runs):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
