"""Time to live, in seconds everywhere.

A TTL is a number of seconds (``float``) or None for "never expires". The helpers below
only make call sites read well: ``ttl_seconds=hours(6)``.

Storage records timestamps and never interprets them; the cache layer stores each
entry's absolute expiry time (UTC, seconds since the epoch) with the entry and treats an
entry whose expiry is in the past as a miss.

Example:
    >>> from cacheness.ttl import days, hours, minutes, seconds
    >>> seconds(90) == minutes(1.5) == 90.0
    True
    >>> hours(2), days(1)
    (7200.0, 86400.0)
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta

__all__ = ["days", "expiry_time", "hours", "minutes", "seconds", "validate_ttl"]


def seconds(value: float) -> float:
    """Return ``value`` seconds as a TTL."""
    return float(value)


def minutes(value: float) -> float:
    """Return ``value`` minutes in seconds."""
    return float(value) * 60.0


def hours(value: float) -> float:
    """Return ``value`` hours in seconds."""
    return float(value) * 3600.0


def days(value: float) -> float:
    """Return ``value`` days in seconds."""
    return float(value) * 86400.0


def validate_ttl(ttl_seconds: float | timedelta | None, what: str = "ttl_seconds") -> float | None:
    """Return the TTL as float seconds (None stays None), or raise ``ValueError``.

    A ``timedelta`` is accepted and converted. Zero, negative, NaN and infinite values
    are refused: use None for "never expires" and ``invalidate`` to drop an entry. A TTL
    too large to reach is accepted: an expiry past the year 9999 (about 2.5e11 seconds
    from now and beyond) never comes, and an integer beyond the float range counts as
    the largest float.

    Example:
        >>> validate_ttl(timedelta(minutes=5))
        300.0
        >>> validate_ttl(0)
        Traceback (most recent call last):
        ...
        ValueError: ttl_seconds must be a positive number of seconds or None (never expires), got 0
    """
    if ttl_seconds is None:
        return None
    if isinstance(ttl_seconds, timedelta):
        ttl_seconds = ttl_seconds.total_seconds()
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float):
        raise ValueError(
            f"{what} must be a number of seconds or None, got {type(ttl_seconds).__name__}"
        )
    if isinstance(ttl_seconds, int) and ttl_seconds > sys.float_info.max:
        return sys.float_info.max  # beyond any representable expiry: never comes
    if ttl_seconds <= 0 or not math.isfinite(ttl_seconds):
        raise ValueError(
            f"{what} must be a positive number of seconds or None (never expires), "
            f"got {ttl_seconds!r}"
        )
    return float(ttl_seconds)


def expiry_time(now: datetime, ttl_seconds: float | None) -> float | None:
    """Return the absolute expiry (seconds since the epoch) of a TTL starting ``now``.

    Example:
        >>> from datetime import UTC, datetime
        >>> expiry_time(datetime(2026, 1, 1, tzinfo=UTC), 60.0)
        1767225660.0
        >>> expiry_time(datetime(2026, 1, 1, tzinfo=UTC), None) is None
        True
    """
    return None if ttl_seconds is None else now.timestamp() + ttl_seconds
