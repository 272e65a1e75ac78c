"""``memory``: a metadata backend in a ``dict`` of this process.

Fast and thread-safe, gone when the process ends (``scope = "process"``). Use it for
tests, notebooks and short-lived caches; entries are copied in and out, so mutating an
entry you got back never changes the index.

Example:
    >>> from cacheness.storage import Entry
    >>> from cacheness.storage import MemoryMetadataBackend
    >>> index = MemoryMetadataBackend()
    >>> index.put(Entry.new("a", size=1)) is None
    True
    >>> index.put(Entry.new("a", size=2)).size  # the replaced entry
    1
    >>> [entry.size for entry in index.query({"key": "a"})]
    [2]
"""

from __future__ import annotations

from typing import ClassVar

from cacheness.storage._metadata._dict import DictMetadataBackend
from cacheness.storage._pairing import Scope


class MemoryMetadataBackend(DictMetadataBackend):
    """Entries in memory, for one process; thread-safe.

    Example:
        >>> MemoryMetadataBackend().count()
        0
    """

    name: ClassVar[str] = "memory"
    scope: ClassVar[Scope] = "process"

    def change_token(self) -> int | None:
        """Return the number of committed changes: this process holds the whole index."""
        return self._writes

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._entries)} entries"
        return f"<MemoryMetadataBackend {state}>"
