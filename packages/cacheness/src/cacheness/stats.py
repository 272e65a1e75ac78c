"""Cache statistics: what this cache object saw since it was opened (or reset).

Counters are per cache object and per process (cheap, lock-protected increments); entry
count and total size come from the index when :meth:`cacheness.get_stats` is called, so
they include what other processes stored.

Example:
    >>> from cacheness.stats import CacheStats
    >>> stats = CacheStats()
    >>> stats.record_hit(bytes_read=100)
    >>> stats.record_miss()
    >>> stats.snapshot()["hit_rate"]
    0.5
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["COUNTERS", "CacheStats"]

COUNTERS = (
    "hits",
    "misses",
    "puts",
    "evictions",
    "expirations",
    "errors",
    "invalid_signatures",
    "bytes_read",
    "bytes_written",
    "memory_hits",
)
"""Names of the counters, in the order they are reported."""


class CacheStats:
    """Thread-safe counters of one cache object.

    ``errors`` counts entries that could not be read back (missing or corrupt bytes, a
    decode failure) and were turned into misses; they are also counted as misses.
    ``invalid_signatures`` counts, among those, entries refused for their signature.
    ``memory_hits`` counts the hits the memory layer served (they are also ``hits``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)

    def add(self, **increments: int) -> None:
        """Add to several counters at once, e.g. ``add(puts=1, bytes_written=512)``."""
        with self._lock:
            for name, amount in increments.items():
                self._counts[name] += amount

    def record_hit(self, bytes_read: int = 0, *, memory: bool = False) -> None:
        """Count a hit that read ``bytes_read`` stored bytes (``memory``: served from memory)."""
        with self._lock:  # every cache hit comes here: no keyword-argument loop
            counts = self._counts
            counts["hits"] += 1
            counts["bytes_read"] += bytes_read
            if memory:
                counts["memory_hits"] += 1

    def record_miss(
        self, *, expired: bool = False, error: bool = False, signature: bool = False
    ) -> None:
        """Count a miss (an expired entry, an unreadable one, or one whose signature
        failed is a miss too)."""
        with self._lock:
            counts = self._counts
            counts["misses"] += 1
            if expired:
                counts["expirations"] += 1
            if error or signature:
                counts["errors"] += 1
            if signature:
                counts["invalid_signatures"] += 1

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)

    def snapshot(self) -> dict[str, Any]:
        """Return the counters and the hit rate (hits / (hits + misses), 0.0 before any get)."""
        with self._lock:
            counts: dict[str, Any] = dict(self._counts)
        lookups = counts["hits"] + counts["misses"]
        counts["hit_rate"] = counts["hits"] / lookups if lookups else 0.0
        return counts
