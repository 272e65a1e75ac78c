"""Size and count limits: which entries go when the cache is over them.

Policies order the entries and the first ones go:

* ``lru``: least recently read first (``accessed_at``),
* ``lfu``: least often read first (``access_count``; ties by key),
* ``fifo``: oldest write first (``created_at``).

After a put pushes the cache over ``max_cache_size_mb`` or ``max_entries``, one batch is
evicted that brings it down to 90 % of the limit, chosen by one ordered index query and
removed with one batch delete. The entry just written is never its own victim.

Checking the totals after every put would cost an aggregate query per put, so the
:class:`Evictor` keeps an estimate: the exact totals from the last check plus what this
process wrote since. Only when the estimate crosses a limit (or every
``resync_every`` puts, to see what other processes wrote) does it ask the index for the
exact totals. Other processes' writes are therefore noticed within ``resync_every`` puts.

Example:
    >>> from cacheness.storage import BlobStore
    >>> store = BlobStore(metadata_backend="memory", blob_backend="memory")
    >>> evictor = Evictor(store, max_bytes=None, max_entries=3, policy="fifo")
    >>> for i in range(5):
    ...     key = store.put(i, key=f"k{i}")
    ...     _ = evictor.after_put(key, size=1)
    >>> sorted(entry.key for entry in store.list_entries())
    ['k2', 'k3', 'k4']
"""

from __future__ import annotations

import logging
import threading
from typing import Final, Literal, TypeAlias

from cacheness.storage import BlobStore, ConfigError

__all__ = ["POLICIES", "EvictionPolicy", "Evictor"]

log = logging.getLogger(__name__)

EvictionPolicy: TypeAlias = Literal["lru", "lfu", "fifo"]

POLICIES: Final[dict[str, str]] = {
    "lru": "accessed_at",
    "lfu": "access_count",
    "fifo": "created_at",
}
"""Policy name → the entry field victims are ordered by (ascending)."""

TARGET_FRACTION: Final = 0.9
"""Eviction brings the cache down to this fraction of each limit."""


class Evictor:
    """Keeps one cache within its size and count limits.

    Args:
        store: the cache's BlobStore.
        max_bytes: limit on the stored bytes of all entries, or None.
        max_entries: limit on the number of entries, or None.
        policy: ``"lru"``, ``"lfu"`` or ``"fifo"``.
        resync_every: ask the index for exact totals at least every this many puts.

    Raises:
        ConfigError: a limit is not positive, or the policy is unknown.
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        max_bytes: int | None,
        max_entries: int | None,
        policy: str = "lru",
        resync_every: int = 100,
    ) -> None:
        if policy not in POLICIES:
            raise ConfigError(
                f"unknown eviction policy {policy!r}; choose one of {', '.join(POLICIES)}"
            )
        for name, limit in (("max_bytes", max_bytes), ("max_entries", max_entries)):
            if limit is not None and limit <= 0:
                raise ConfigError(f"{name} must be positive or None, got {limit!r}")
        self.store = store
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.policy = policy
        self._order_by = POLICIES[policy]
        self._resync_every = resync_every
        self._lock = threading.Lock()
        self._known: tuple[int, int] | None = None  # (bytes, entries) at the last check
        self._since = (0, 0)  # (bytes, entries) written by this process since then
        self._puts_since = 0

    @property
    def enabled(self) -> bool:
        """True when at least one limit is set."""
        return self.max_bytes is not None or self.max_entries is not None

    def after_put(self, key: str, size: int) -> int:
        """Account for a put of ``size`` stored bytes; evict if over a limit.

        Returns:
            The number of entries evicted.
        """
        if not self.enabled:
            return 0
        with self._lock:
            self._since = (self._since[0] + size, self._since[1] + 1)
            self._puts_since += 1
            if self._known is not None and self._puts_since < self._resync_every:
                estimate = (self._known[0] + self._since[0], self._known[1] + self._since[1])
                if not self._over(*estimate):
                    return 0
            total_bytes, total_entries = self._exact_totals()
            if not self._over(total_bytes, total_entries):
                return 0
            return self._evict(total_bytes, total_entries, keep=key)

    def enforce(self) -> int:
        """Evict if the cache is over a limit now (after a bulk import); return how many."""
        if not self.enabled:
            return 0
        with self._lock:
            total_bytes, total_entries = self._exact_totals()
            if not self._over(total_bytes, total_entries):
                return 0
            return self._evict(total_bytes, total_entries, keep=None)

    def make_room(self, *, keep: str | None = None) -> int:
        """Evict a tenth of the cache by its policy (a put found the disk full); return how many.

        Only a cache with a limit evicts on its own: its owner agreed that entries go
        when room is needed. Without limits this evicts nothing.
        """
        if not self.enabled:
            return 0
        with self._lock:
            total_bytes, total_entries = self._exact_totals()
            return self._evict(
                total_bytes,
                total_entries,
                keep=keep,
                bytes_to_free=total_bytes - int(total_bytes * TARGET_FRACTION),
                entries_to_free=total_entries - int(total_entries * TARGET_FRACTION),
            )

    def _over(self, total_bytes: int, total_entries: int) -> bool:
        return (self.max_bytes is not None and total_bytes > self.max_bytes) or (
            self.max_entries is not None and total_entries > self.max_entries
        )

    def _exact_totals(self) -> tuple[int, int]:
        totals = (self.store.total_size(), self.store.count())
        self._known, self._since, self._puts_since = totals, (0, 0), 0
        return totals

    def _evict(
        self,
        total_bytes: int,
        total_entries: int,
        *,
        keep: str | None,
        bytes_to_free: int | None = None,
        entries_to_free: int | None = None,
    ) -> int:
        if bytes_to_free is None:
            bytes_to_free = (
                total_bytes - int(self.max_bytes * TARGET_FRACTION)
                if self.max_bytes is not None and total_bytes > self.max_bytes
                else 0
            )
        if entries_to_free is None:
            entries_to_free = (
                total_entries - int(self.max_entries * TARGET_FRACTION)
                if self.max_entries is not None and total_entries > self.max_entries
                else 0
            )
        victims: list[str] = []
        freed = 0
        for entry in self.store.iter_entries(order_by=self._order_by, inline=False):
            if freed >= bytes_to_free and len(victims) >= entries_to_free:
                break
            if entry.key == keep:
                continue
            victims.append(entry.key)
            freed += entry.size
        deleted = self.store.delete_batch(victims) if victims else 0
        self._known = (max(total_bytes - freed, 0), max(total_entries - deleted, 0))
        log.info(
            "evicted %d entries (%d bytes, policy %s) to stay within the cache limits",
            deleted,
            freed,
            self.policy,
        )
        return deleted
