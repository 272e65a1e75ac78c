"""``CacheEntry``: what the cache knows about one cached value, without loading it.

The cache keeps its own facts (the key parameters, the expiry time, the TTL, the key
prefix) inside the storage entry's metadata under the reserved key ``"_cacheness"``;
``CacheEntry`` presents them next to the storage facts (size, handler, hash, S3 ETag and
version, where the bytes live) and the user's own ``metadata``.

Example:
    >>> from cacheness.cache_entry import RESERVED_METADATA_KEY, CacheEntry
    >>> from cacheness.storage import Entry
    >>> stored = Entry.new("k" * 32, size=12, metadata={
    ...     "project": "ml", RESERVED_METADATA_KEY: {"v": 1, "params": {"x": 1}}})
    >>> info = CacheEntry.from_entry(stored)
    >>> info.cache_key == "k" * 32, info.params, info.metadata, info.expires_at
    (True, {'x': 1}, {'project': 'ml'}, None)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from cacheness.storage import Entry, PayloadInfo

__all__ = [
    "FORMAT_VERSION",
    "RESERVED_METADATA_KEY",
    "CacheEntry",
    "cache_facts",
    "expiry_datetime",
    "expiry_seconds",
    "ttl_of",
]

RESERVED_METADATA_KEY = "_cacheness"
"""Metadata key under which the cache keeps its own facts; users cannot use it."""

FORMAT_VERSION = 1
"""Version of the cache's facts layout; entries of another version are misses."""


_LONG_AGO: Final = datetime.min.replace(tzinfo=UTC)


def cache_facts(entry: Entry | PayloadInfo) -> dict[str, Any]:
    """Return the cache's facts stored with ``entry`` (empty if it has none)."""
    facts = (entry.metadata or {}).get(RESERVED_METADATA_KEY)
    return facts if isinstance(facts, dict) else {}


def expiry_seconds(facts: dict[str, Any]) -> float | None:
    """Return the expiry in the facts as epoch seconds, None for "never expires".

    A value that is not a number (a row edited by hand, or damaged) reads as expired
    long ago (``-inf``), which is what the index's filters make of it too.

    Example:
        >>> expiry_seconds({}), expiry_seconds({"expires_at": 1e12})
        (None, 1000000000000.0)
        >>> expiry_seconds({"expires_at": "x"})
        -inf
    """
    if "expires_at" not in facts:
        return None
    value = facts["expires_at"]
    if type(value) is float or type(value) is int:
        return float(value) if value == value else -math.inf
    return -math.inf


def expiry_datetime(facts: dict[str, Any]) -> datetime | None:
    """Return the expiry in the facts as an aware datetime, None for "never expires".

    An expiry past the last instant ``datetime`` can represent (the end of year 9999),
    which a TTL of about 2.5e11 seconds or more gives, never comes: None. An expiry
    that is no number reads as expired long ago (``datetime.min``).

    Example:
        >>> expiry_datetime({"expires_at": 0}).year, expiry_datetime({"expires_at": 1e20})
        (1970, None)
    """
    seconds = expiry_seconds(facts)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return None if seconds > 0 else _LONG_AGO


def ttl_of(facts: dict[str, Any]) -> float | None:
    """Return the TTL recorded in the facts, None when there is none (or it is no number)."""
    value = facts.get("ttl")
    if (type(value) is float or type(value) is int) and 0 < value < math.inf:
        return float(value)
    return None


class CacheEntry(msgspec.Struct, frozen=True):
    """What the cache knows about one cached value (no data is loaded).

    Attributes:
        cache_key: the key (32 hex characters when derived from key parameters).
        params: the JSON-able key parameters the value was stored under, if known.
        prefix: the key prefix (a decorated function's namespace), if any.
        metadata: the user's metadata.
        expires_at: when the value expires (UTC), None for never (also for an expiry
            past the year 9999, which ``datetime`` cannot represent).
        ttl_seconds: the TTL it was stored or last touched with, None for no expiry.
        handler, format, codec, size, raw_size, content_hash: how the value is stored.
        etag, version_id: the blob's S3 ETag and object version, if any.
        blob_ref: where the bytes are in the blob backend (``""``: inline in the index).
        location: a URI of the bytes (``s3://bucket/key``, ``file:///...``), or ``""``.
        created_at, updated_at, accessed_at, access_count: timestamps (UTC) and reads.
    """

    cache_key: str
    params: dict[str, Any] | None
    prefix: str | None
    metadata: dict[str, Any]
    expires_at: datetime | None
    ttl_seconds: float | None
    handler: str
    format: str
    codec: str
    size: int
    raw_size: int
    content_hash: str
    etag: str | None
    version_id: str | None
    blob_ref: str
    location: str
    created_at: datetime
    updated_at: datetime
    accessed_at: datetime
    access_count: int

    @classmethod
    def from_entry(cls, entry: Entry, location: str = "") -> CacheEntry:
        """Build a ``CacheEntry`` from a storage entry."""
        facts = cache_facts(entry)
        params, prefix = facts.get("params"), facts.get("prefix")
        metadata = entry.metadata
        user = (
            {k: v for k, v in metadata.items() if k != RESERVED_METADATA_KEY}
            if len(metadata) > 1 or RESERVED_METADATA_KEY not in metadata
            else {}
        )
        # Positional, in the order the fields are declared: a listing builds one per
        # entry, and keyword arguments cost as much again as the rest of this method.
        return cls(
            entry.key,  # cache_key
            params if isinstance(params, dict) else None,
            prefix if isinstance(prefix, str) else None,
            user,  # metadata
            expiry_datetime(facts),  # expires_at
            ttl_of(facts),  # ttl_seconds
            entry.handler,
            entry.format,
            entry.codec,
            entry.size,
            entry.raw_size,
            entry.content_hash,
            entry.etag,
            entry.version_id,
            entry.blob_ref,
            location,
            entry.created_at,
            entry.updated_at,
            entry.accessed_at,
            entry.access_count,
        )

    def is_expired(self, now: datetime) -> bool:
        """True when the entry's expiry time is at or before ``now``."""
        return self.expires_at is not None and self.expires_at <= now

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict.

        Example:
            >>> from cacheness.storage import Entry
            >>> CacheEntry.from_entry(Entry.new("k")).to_dict()["cache_key"]
            'k'
        """
        return {name: getattr(self, name) for name in self.__struct_fields__}
