"""The in-process memory layer: values read recently, kept in front of the index and blobs.

A :class:`MemoryLayer` holds what ``get`` read, bounded by entries and bytes (LRU or
FIFO), and knows when each value was last known to be current:

* on an index that tells cheaply whether anything was committed (SQLite's
  ``PRAGMA data_version``, the memory index's write count: ``BlobStore.change_token``),
  a value is served while the token has not moved since it was read or checked;
  when it has moved, the next ``get`` asks the index for the key's payload (no blob
  read) and keeps the value if it is the same one;
* elsewhere (PostgreSQL, JSON) a value is served without asking the index for
  ``staleness_seconds`` after it was last checked; 0 asks on every ``get``.

A caller mutating a returned value never changes the next one: immutable values
(numbers, strings, bytes, tuples of them, Arrow tables...) are shared, arrays and
frames are copied on every hit, and small values kept inline in the index are decoded
again from bytes on every hit: plain data (dicts with string keys, lists, strings,
numbers, booleans, None, bytes) from MessagePack the layer encoded when it kept the
value (a decode of a few hundred nanoseconds), anything else from its stored bytes
(``BlobStore.decoder``). Other values are not held.

Example:
    >>> import tempfile
    >>> from cacheness import cacheness
    >>> cache = cacheness(cache_dir=tempfile.mkdtemp(), enable_memory_cache=True)
    >>> _ = cache.put({"rows": [1, 2]}, q=1)
    >>> first = cache.get(q=1)
    >>> first["rows"].append(3)  # the caller's copy
    >>> cache.get(q=1), cache.get_stats()["memory_hits"]
    ({'rows': [1, 2]}, 1)
    >>> cache.close()
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections import OrderedDict
from contextlib import suppress
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Final

import msgspec

from cacheness.cache_entry import cache_facts, expiry_seconds

if TYPE_CHECKING:
    from cacheness.config import MemoryCacheConfig
    from cacheness.storage import BlobStore, Entry, PayloadInfo

    Payload = Entry | PayloadInfo

__all__ = ["Held", "MemoryLayer", "same_value"]

_ATOMS: Final = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        range,
        Decimal,
        Fraction,
        date,
        datetime,
        time,
        timedelta,
        uuid.UUID,
    }
)
"""Types whose values cannot be changed in place: shared with every caller as they are."""

_SHARE, _COPY, _DECODE, _PLAIN = 0, 1, 2, 3
_MAX_DEPTH: Final = 8

_PLAIN_ATOMS: Final = frozenset({str, float, bool, type(None), bytes})
"""Types MessagePack gives back as the very same type and value (ints are checked apart)."""
_MIN_INT, _MAX_INT = -(1 << 63), (1 << 64) - 1
_PLAIN_DEPTH: Final = 32
_encode_plain = msgspec.msgpack.Encoder().encode
_decode_plain = msgspec.msgpack.Decoder().decode


def _plain(value: Any, depth: int = 0) -> bool:
    """True when ``value`` comes back from MessagePack equal and of the same types.

    Dicts with ``str`` keys, lists, and ``str``/``int`` (64 bits)/``float``/``bool``/
    ``None``/``bytes``, exactly those types (no subclasses, no tuples: they come back as
    lists), nested at most ``_PLAIN_DEPTH`` levels.
    """
    kind = type(value)
    if kind in _PLAIN_ATOMS:
        return True
    if kind is int:
        return bool(_MIN_INT <= value <= _MAX_INT)
    if depth >= _PLAIN_DEPTH:
        return False
    if kind is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    if kind is list:
        return all(_plain(item, depth + 1) for item in value)
    return False


def _shareable(value: Any, depth: int = 0) -> bool:
    """True when nobody can change ``value`` in place (it is returned as it is)."""
    kind = type(value)
    if kind in _ATOMS or isinstance(value, PurePath):
        return True
    if kind is tuple or kind is frozenset:
        return depth < _MAX_DEPTH and all(_shareable(item, depth + 1) for item in value)
    pyarrow = sys.modules.get("pyarrow")  # Arrow tables and arrays are immutable
    return pyarrow is not None and isinstance(value, pyarrow.Table | pyarrow.RecordBatch)


def _copier_size(value: Any) -> int | None:
    """The bytes of an array or frame that is copied on every hit, or None for other values."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(value) is numpy.ndarray:  # not a memmap: that is a file
        return int(value.nbytes)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame | pandas.Series):
        return int(value.memory_usage(index=True, deep=False).sum())
    return None


def same_value(held: Payload, current: Payload) -> bool:
    """True when ``current`` describes the very bytes ``held`` was read from."""
    return (
        held.content_hash == current.content_hash
        and held.blob_ref == current.blob_ref
        and held.handler == current.handler
        and held.format == current.format
        and held.codec == current.codec
        and held.format_info == current.format_info
    )


class Held:
    """One value in memory, with the payload it was read from and when it was last current."""

    __slots__ = (
        "access_stamp",
        "accessed_at",
        "expires",
        "key",
        "mode",
        "payload",
        "size",
        "stamp",
        "token",
        "value",
    )

    def __init__(self, key: str, payload: Payload, value: Any, mode: int, size: int) -> None:
        self.key = key
        self.payload = payload
        self.value = value
        self.mode = mode
        self.size = size
        self.expires: float | None = expiry_seconds(cache_facts(payload))
        self.accessed_at: datetime | None = None
        self.access_stamp = float("-inf")  # accessed_at as a timestamp
        self.accessed(payload.accessed_at)
        self.token: int | None = None
        self.stamp = 0.0  # the cache clock's timestamp when last known current

    def accessed(self, at: datetime | None) -> None:
        """Record the access time the index holds for the entry."""
        self.accessed_at = at
        self.access_stamp = float("-inf") if at is None else at.timestamp()

    def refresh(self, payload: Payload, token: int | None, now: float) -> None:
        """Record that the index still holds this value (with ``payload``'s facts)."""
        self.payload = payload
        self.expires = expiry_seconds(cache_facts(payload))
        self.accessed(payload.accessed_at)
        self.token = token
        self.stamp = now


class MemoryLayer:
    """Values of one cache object, bounded by entries and bytes; thread-safe.

    Args:
        config: the ``memory_cache`` section of the cache's configuration.
        store: the cache's store (its ``decoder`` decodes inline values on each hit).
    """

    def __init__(self, config: MemoryCacheConfig, store: BlobStore) -> None:
        self.max_entries = config.max_entries
        self.max_bytes = config.max_bytes
        self.staleness = float(config.staleness_seconds)
        self.lru = config.policy == "lru"
        self.report = config.stats
        self._store = store
        self._held: OrderedDict[str, Held] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.evictions = 0

    def find(self, key: str) -> Held | None:
        """The value held for ``key`` (now the most recently used), or None."""
        # No lock: each OrderedDict operation is atomic, and a value kept, discarded or
        # evicted meanwhile by another thread changes only which one goes first. A key
        # discarded between the two calls is served once more, as it would be with a
        # lock; contextlib.suppress would cost every hit more than the lock saves.
        held = self._held.get(key)
        if held is not None and self.lru:
            try:  # noqa: SIM105
                self._held.move_to_end(key)
            except KeyError:
                pass
        return held

    def current(self, held: Held, token: int | None, now: float) -> bool:
        """True when ``held`` may be served without asking the index.

        With a change token: it has not moved since the value was read or checked.
        Without one: it was checked less than ``staleness_seconds`` ago.
        """
        if token is not None:
            return held.token == token
        return now - held.stamp < self.staleness

    def value(self, held: Held) -> Any:
        """A value the caller owns: the shared immutable one, a copy, or decoded afresh."""
        mode = held.mode
        if mode == _PLAIN:
            return _decode_plain(held.value)  # plain data from the layer's MessagePack
        if mode == _SHARE:
            return held.value
        if mode == _COPY:
            return held.value.copy()
        return held.value()  # the inline bytes decoded afresh

    def keep(self, key: str, payload: Payload, value: Any, token: int | None, now: float) -> None:
        """Hold ``value`` (just returned to a caller, who owns it) read from ``payload``."""
        if _shareable(value):
            mode, kept, size = _SHARE, value, max(payload.raw_size, payload.size)
        elif (copied := _copier_size(value)) is not None:
            mode, kept, size = _COPY, value.copy(), copied
        elif payload.inline is not None:
            mode, kept = _DECODE, None
            if _plain(value):  # encoded as it is now, before the caller gets it
                with suppress(msgspec.EncodeError, UnicodeEncodeError):  # lone surrogates
                    mode, kept = _PLAIN, _encode_plain(value)
            if kept is None:
                kept = self._store.decoder(payload)
            size = len(payload.inline)
        else:  # a mutable value only its blob can give afresh: not held
            self.discard(key)
            return
        if size > self.max_bytes:
            self.discard(key)
            return
        held = Held(key, payload, kept, mode, size)
        held.token, held.stamp = token, now
        with self._lock:
            old = self._held.pop(key, None)
            if old is not None:
                self.bytes -= old.size
            self._held[key] = held
            self.bytes += size
            while len(self._held) > self.max_entries or self.bytes > self.max_bytes:
                _, dropped = self._held.popitem(last=False)
                self.bytes -= dropped.size
                self.evictions += 1

    def discard(self, key: str) -> None:
        """Forget ``key``'s value (written or deleted through this cache)."""
        with self._lock:
            old = self._held.pop(key, None)
            if old is not None:
                self.bytes -= old.size

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._held.clear()
            self.bytes = 0

    def stats(self) -> dict[str, int]:
        """The layer's size and evictions, for ``get_stats``."""
        with self._lock:
            return {
                "memory_entries": len(self._held),
                "memory_bytes": self.bytes,
                "memory_evictions": self.evictions,
            }
