"""Increments of a range column and the grid of points they define.

A range query (``start_date=``/``end_date=``) asks for every point of a grid between
its bounds: every day, every 5 minutes, every business day, every 10th order id. Gap
detection works on grid *indices* (int64), so a range of ten years of minutes is two
integers, never a list of five million timestamps.

Grids are aligned to the Unix epoch (1970-01-01 00:00 UTC, or 0 for integers): 5-minute
bars sit at :00, :05, ...; ``"7D"`` steps fall on Thursdays like the epoch; business days
(``"1B"``) are Monday to Friday. Values off the grid (a 10:02 row on a 5-minute grid)
are kept and returned, but do not count as a grid point.

Example:
    >>> from datetime import date, timedelta
    >>> parse_time_increment("5min"), parse_time_increment("1D")
    (datetime.timedelta(seconds=300), datetime.timedelta(days=1))
    >>> axis = Axis.for_kind("date", parse_time_increment("1B"))
    >>> axis.ceil(date(2024, 1, 6)) == axis.index(date(2024, 1, 8))  # Saturday -> Monday
    True
    >>> axis.value(axis.floor(date(2024, 1, 7)))  # Sunday -> Friday
    datetime.date(2024, 1, 5)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np

from cacheness.storage.errors import ConfigError

__all__ = [
    "EPOCH_UTC",
    "Axis",
    "BusinessDays",
    "RangeKind",
    "parse_ordered_increment",
    "parse_time_increment",
]

RangeKind = Literal["date", "utc", "naive", "int"]

EPOCH_DATE = date(1970, 1, 1)
EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
# The business-day grid counts from a Monday; index 0 is 1970-01-05.
_BUSINESS_ANCHOR = np.datetime64("1970-01-05", "D")


@dataclass(frozen=True)
class BusinessDays:
    """A step of ``count`` business days (Monday to Friday), for Date columns."""

    count: int = 1


_UNITS: dict[str, timedelta | None] = {
    "us": timedelta(microseconds=1),
    "microsecond": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "millisecond": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "sec": timedelta(seconds=1),
    "second": timedelta(seconds=1),
    "t": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "minute": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "hr": timedelta(hours=1),
    "hour": timedelta(hours=1),
    "d": timedelta(days=1),
    "day": timedelta(days=1),
    "w": timedelta(weeks=1),
    "week": timedelta(weeks=1),
    "b": None,  # business days
    "bday": None,
    "businessday": None,
}
# pandas-style month/quarter/year aliases (case matters: "ms" is milliseconds, "MS" month
# starts) and the plain words; a lone "m" could be minutes or months.
_NOT_FIXED = {"M", "ME", "MS", "Q", "QE", "QS", "Y", "YE", "YS", "A", "m"}
_NOT_FIXED_WORDS = {"month", "quarter", "year"}
_INCREMENT = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*([A-Za-z]+)\s*$")


def parse_time_increment(value: object) -> timedelta | BusinessDays:
    """Return a time increment as a ``timedelta`` (or :class:`BusinessDays`).

    Accepts a positive ``timedelta``, a number of seconds, or a string: a count and a
    unit (``"30s"``, ``"5min"``, ``"15T"``, ``"2h"``, ``"1D"``, ``"1W"``, ``"1B"`` for
    business days; long names such as ``"5minutes"`` too).

    Raises:
        ConfigError: anything else, including months and years (not a fixed duration).

    Example:
        >>> parse_time_increment(300)
        datetime.timedelta(seconds=300)
        >>> parse_time_increment("2B")
        BusinessDays(count=2)
        >>> parse_time_increment("1M")
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.ConfigError: time_increment '1M' is not a fixed duration ...
    """
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ConfigError(f"time_increment must be positive, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(
            "time_increment must be a timedelta, a number of seconds or a string such as "
            f"'5min' or '1D', got {type(value).__name__}"
        )
    if not isinstance(value, str):
        if not value > 0:
            raise ConfigError(f"time_increment must be positive, got {value!r}")
        return timedelta(seconds=value)
    match = _INCREMENT.match(value)
    unit = match.group(2).lower() if match else ""
    if unit.endswith("s") and unit[:-1] in _UNITS and unit not in _UNITS:
        unit = unit[:-1]  # plural: "minutes", "days"
    if match and (match.group(2) in _NOT_FIXED or unit.rstrip("s") in _NOT_FIXED_WORDS):
        raise ConfigError(
            f"time_increment {value!r} is not a fixed duration (months and years vary); "
            "use days ('1D'), business days ('1B') or a timedelta; write minutes as 'min'"
        )
    if not match or unit not in _UNITS:
        raise ConfigError(
            f"time_increment {value!r} is not understood: use a count and a unit such as "
            "'30s', '5min', '2h', '1D', '1W' or '1B' (business days), or a timedelta"
        )
    count = float(match.group(1) or 1)
    step = _UNITS[unit]
    if step is None:
        if count != int(count) or count < 1:
            raise ConfigError(f"business-day increment {value!r} must be a whole number >= 1")
        return BusinessDays(int(count))
    result = step * count
    if result <= timedelta(0):
        raise ConfigError(f"time_increment must be positive, got {value!r}")
    return result


def parse_ordered_increment(value: object) -> int:
    """Return an ordered (integer key) increment: a positive int.

    Example:
        >>> parse_ordered_increment(10)
        10
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ConfigError(f"ordered_increment must be a positive integer, got {value!r}")
    return int(value)


class Axis:
    """A range column's values as int64 *units* and the grid of points on them.

    Units: days since the epoch (``date``), microseconds since the epoch (``utc`` and
    ``naive`` datetimes), the integer itself (``int``). Grid index ``i`` is the point
    ``i * step`` units (business days: the ``i``-th business day from 1970-01-05).
    """

    def __init__(self, kind: RangeKind, step: int, *, business: bool = False) -> None:
        self.kind: RangeKind = kind
        self.step = step
        self.business = business

    @classmethod
    def for_kind(cls, kind: RangeKind, increment: timedelta | BusinessDays | int) -> Axis:
        """The axis of a column of ``kind`` stepping by ``increment``.

        Raises:
            ConfigError: the increment does not fit the column (a business day on a
                datetime column, 5 minutes on a Date column, a timedelta on integers).
        """
        if kind == "int":
            if not isinstance(increment, int):
                raise ConfigError(
                    "an integer range column steps by ordered_increment (an int), "
                    f"not {increment!r}"
                )
            return cls(kind, increment)
        if isinstance(increment, int):
            raise ConfigError(
                f"a {kind} range column steps by time_increment, not ordered_increment"
            )
        if isinstance(increment, BusinessDays):
            if kind != "date":
                raise ConfigError("business-day increments ('1B') need a Date column")
            return cls(kind, increment.count, business=True)
        if kind == "date":
            if increment % timedelta(days=1):
                raise ConfigError(
                    f"a Date column steps by whole days, not {increment}; "
                    "use a DateTime column for finer increments"
                )
            return cls(kind, increment.days)
        return cls(kind, increment // _ONE_US)

    # -- values <-> units ---------------------------------------------------------
    def units(self, value: Any) -> int:
        """The units of one Python value of the column (already validated)."""
        if self.kind == "date":
            return int((value - EPOCH_DATE).days)
        if self.kind == "utc":
            return int((value - EPOCH_UTC) // _ONE_US)
        if self.kind == "naive":
            return int((value - EPOCH_NAIVE) // _ONE_US)
        return int(value)

    def units_of(self, values: list[Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The units of many Python values of the column (already validated)."""
        count = len(values)
        if self.kind == "date":
            ordinals = np.fromiter((v.toordinal() for v in values), dtype=np.int64, count=count)
            return ordinals - EPOCH_DATE.toordinal()
        if self.kind == "int":
            return np.fromiter(values, dtype=np.int64, count=count)
        return np.fromiter((self.units(v) for v in values), dtype=np.int64, count=count)

    def from_units(self, units: int) -> Any:
        """The Python value (``date``, aware or naive ``datetime``, ``int``) of ``units``."""
        if self.kind == "date":
            return EPOCH_DATE + timedelta(days=units)
        if self.kind == "utc":
            return EPOCH_UTC + timedelta(microseconds=units)
        if self.kind == "naive":
            return EPOCH_NAIVE + timedelta(microseconds=units)
        return units

    def series_units(self, values: Any) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Units of a column of the frames SqlCache reads (datetime64 or int64 values)."""
        array = np.asarray(values)
        if self.kind == "date":
            return array.astype("datetime64[D]").astype(np.int64)
        if self.kind in ("utc", "naive"):
            if getattr(values, "dtype", None) is not None and getattr(values.dtype, "tz", None):
                values = values.dt.tz_convert(None)  # a tz-aware pandas Series
                array = np.asarray(values)
            return array.astype("datetime64[us]").astype(np.int64)
        return array.astype(np.int64)

    # -- grid ----------------------------------------------------------------------
    def grid(
        self, units: np.ndarray[Any, np.dtype[np.int64]]
    ) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.bool_]]]:
        """Grid indices of ``units`` and a mask of those that are grid points."""
        if self.business:
            days = units.astype("datetime64[D]")
            count = np.busday_count(_BUSINESS_ANCHOR, days).astype(np.int64)
            on = np.is_busday(days) & (count % self.step == 0)
            return count // self.step, on
        return units // self.step, units % self.step == 0

    def index(self, value: Any) -> int:
        """The grid index of a value that is a grid point (or the one before it)."""
        return self.floor(value)

    def ceil(self, value: Any) -> int:
        """Index of the first grid point at or after ``value``."""
        units = self.units(value)
        if self.business:
            day = np.busday_offset(np.datetime64(units, "D"), 0, roll="forward")
            count = int(np.busday_count(_BUSINESS_ANCHOR, day))
            return -(-count // self.step)
        return -(-units // self.step)

    def floor(self, value: Any) -> int:
        """Index of the last grid point at or before ``value``."""
        units = self.units(value)
        if self.business:
            day = np.busday_offset(np.datetime64(units, "D"), 0, roll="backward")
            return int(np.busday_count(_BUSINESS_ANCHOR, day)) // self.step
        return units // self.step

    def value(self, index: int) -> Any:
        """The Python value of grid point ``index``."""
        if self.business:
            day = np.busday_offset(_BUSINESS_ANCHOR, index * self.step, roll="forward")
            return self.from_units(int(day.astype(np.int64)))
        return self.from_units(index * self.step)

    def steps(self, span: timedelta | int) -> int:
        """How many grid steps cover ``span`` (a duration, or a count of steps)."""
        if isinstance(span, int):
            return span
        if self.business:
            return -(-span.days // self.step)
        if self.kind == "date":
            return -(-span.days // self.step)
        return -(-(span // _ONE_US) // self.step)
