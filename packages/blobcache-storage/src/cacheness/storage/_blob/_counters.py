"""Thread-safe event counters for composite backends (private)."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Named integer counters that threads may bump concurrently.

    Example:
        >>> counters = Counters("hits", "misses")
        >>> counters.add("hits"); counters.add("hits", 2)
        >>> counters.snapshot()
        {'hits': 3, 'misses': 0}
    """

    def __init__(self, *names: str) -> None:
        self._names = names
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` (one of the names given at creation)."""
        if name not in self._names:
            raise KeyError(f"unknown counter {name!r}; known: {', '.join(self._names)}")
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """Return the current values of every counter, in creation order."""
        with self._lock:
            return {name: self._counts[name] for name in self._names}

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts.clear()
