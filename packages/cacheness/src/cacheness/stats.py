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
from collections.abc import Mapping
from typing import Any

from cacheness._telemetry import counted
from cacheness.storage import instrumentation

__all__ = ["COUNTERS", "CacheStats"]

COUNTERS = (
    "hits",
    "misses",
    "puts",
    "evictions",
    "expirations",
    "errors",
    "integrity_failures",
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
    With an OpenTelemetry provider configured, every count is also recorded as the
    metric of the same name (``cacheness.cache.hits``...) with ``labels`` as attributes
    (see ``docs/observability.md``).

    Args:
        labels: attributes of the metrics (the cache's metadata and blob backends).
    """

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self.labels: dict[str, str] = dict(labels or {})

    def add(self, *, handler: str | None = None, **increments: int) -> None:
        """Add to several counters at once, e.g. ``add(puts=1, bytes_written=512)``.

        ``handler`` labels the metrics (the handler that stored the value).
        """
        with self._lock:
            for name, amount in increments.items():
                self._counts[name] += amount
        counted(increments, self.labels, handler=handler)

    def record_hit(
        self, bytes_read: int = 0, handler: str | None = None, *, memory: bool = False
    ) -> None:
        """Count a hit that read ``bytes_read`` stored bytes (written by ``handler``;
        ``memory``: served from memory)."""
        with self._lock:  # every cache hit comes here: no keyword-argument loop
            counts = self._counts
            counts["hits"] += 1
            counts["bytes_read"] += bytes_read
            if memory:
                counts["memory_hits"] += 1
        counted(
            {"hits": 1, "bytes_read": bytes_read, "memory_hits": int(memory)},
            self.labels,
            handler=handler,
        )

    def record_memory_hit(self) -> None:
        """Count a hit served by the memory layer (``record_hit(memory=True)``, cheaper)."""
        with self._lock:
            counts = self._counts
            counts["hits"] += 1
            counts["memory_hits"] += 1
        if instrumentation() is not None:
            counted({"hits": 1, "bytes_read": 0, "memory_hits": 1}, self.labels)

    def record_miss(
        self,
        *,
        expired: bool = False,
        error: bool = False,
        integrity: bool = False,
        signature: bool = False,
        reason: str | None = None,
    ) -> None:
        """Count a miss (an expired entry, an unreadable one, or one whose signature
        failed is a miss too).

        ``integrity``: the entry was unreadable because its bytes were missing or did
        not match (also an error); ``signature``: its signature failed (also an error).
        ``reason`` labels the metric (default: from the flags, else ``absent``).
        """
        with self._lock:
            counts = self._counts
            counts["misses"] += 1
            if expired:
                counts["expirations"] += 1
            if error or integrity or signature:
                counts["errors"] += 1
            if integrity:
                counts["integrity_failures"] += 1
            if signature:
                counts["invalid_signatures"] += 1
        if reason is None and signature:
            reason = "signature"
        elif reason is None:
            reason = "error" if error or integrity else "expired" if expired else "absent"
        counted(
            {
                "misses": 1,
                "expirations": int(expired),
                "errors": int(error or integrity or signature),
                "integrity_failures": int(integrity),
                "invalid_signatures": int(signature),
            },
            self.labels,
            reason=reason,
        )

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
