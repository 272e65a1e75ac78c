"""``list_entries``: the same CacheEntry values as the storage's entries read in one page.

The listing reads the index in pages (keyset paging, one compiled statement for every
page) and builds each ``CacheEntry`` positionally; the reference here reads every match
in a single page and builds each ``CacheEntry`` by field name, as the listing did before
it was made faster. Both must agree value for value, in the same order, for filters,
orders, limits, offsets and expired entries.
"""

from __future__ import annotations

import random
from datetime import UTC
from typing import Any

import pytest

from cacheness.cache_entry import (
    RESERVED_METADATA_KEY,
    CacheEntry,
    cache_facts,
    expiry_datetime,
    ttl_of,
)
from cacheness.storage import Entry

CALLS: list[dict[str, Any]] = [
    {},
    {"include_expired": True},
    {"order_by": "size", "descending": True},
    {"order_by": "created_at", "limit": 7, "offset": 3},
    {"order_by": "accessed_at", "descending": True, "offset": 2, "include_expired": True},
    {"order_by": "updated_at", "limit": 4},
    {"order_by": "key", "descending": True, "limit": 9, "offset": 1},
    {"order_by": "metadata.owner", "include_expired": True},
    {"order_by": "metadata.rank", "descending": True, "limit": 11},
    {"filter": {"metadata.owner": "ana"}, "order_by": "size"},
    {"filter": {"size": {"$gt": 4096}}, "include_expired": True},
    {"filter": {"metadata.rank": {"$gte": 3}}, "order_by": "created_at", "descending": True},
    {"limit": 0},
    {"offset": 100},
]


def by_name(entry: Entry, location: str) -> CacheEntry:
    """The CacheEntry of ``entry``, every field given by name (the reference)."""
    facts = cache_facts(entry)
    params, prefix = facts.get("params"), facts.get("prefix")
    return CacheEntry(
        cache_key=entry.key,
        params=params if isinstance(params, dict) else None,
        prefix=prefix if isinstance(prefix, str) else None,
        metadata={k: v for k, v in entry.metadata.items() if k != RESERVED_METADATA_KEY},
        expires_at=expiry_datetime(facts),
        ttl_seconds=ttl_of(facts),
        handler=entry.handler,
        format=entry.format,
        codec=entry.codec,
        size=entry.size,
        raw_size=entry.raw_size,
        content_hash=entry.content_hash,
        etag=entry.etag,
        version_id=entry.version_id,
        blob_ref=entry.blob_ref,
        location=location,
        created_at=entry.created_at,
        updated_at=entry.updated_at,
        accessed_at=entry.accessed_at,
        access_count=entry.access_count,
    )


def reference(cache: Any, call: dict[str, Any]) -> list[CacheEntry]:
    store = cache.store
    options = {k: v for k, v in call.items() if k not in ("filter", "include_expired")}
    options.setdefault("order_by", "created_at")
    selected = cache._entries_filter(call.get("filter"), call.get("include_expired", False))
    return [
        by_name(entry, store.location(entry))
        for entry in store.iter_entries(filter=selected, **options)
    ]


def fill(cache: Any, clock: Any) -> None:
    """Entries with ties and differences in every field a listing shows."""
    owners = ["ana", "bo", None]
    for i in range(24):
        if i % 4 == 0:
            clock.advance(1)  # runs of four equal creation times, broken by key
        metadata = {"rank": i % 5} if owners[i % 3] is None else {"owner": owners[i % 3]}
        value: Any = random.Random(i).randbytes(70_000) if i % 6 == 0 else {"i": i}  # blob, inline
        cache.put(
            value,
            ttl_seconds=30 if i % 5 == 0 else (None if i % 2 else 3600),
            metadata={**metadata, "when": i},
            key_prefix="ns" if i % 7 == 0 else None,
            run=i,
            stage="a" if i % 2 else "b",
        )
    clock.advance(60)  # the 30 s TTLs run out
    for i in range(1, 24, 3):
        cache.get(run=i, stage="a" if i % 2 else "b", key_prefix="ns" if i % 7 == 0 else None)
    clock.advance(1)
    cache.touch(ttl_seconds=7200, run=2, stage="b")


@pytest.mark.parametrize("page_size", [1000, 3])
def test_listing_matches_the_reference_value_for_value(make_cache, clock, monkeypatch, page_size):
    cache = make_cache(clock=clock)
    fill(cache, clock)
    metadata = cache.store.metadata
    everything = reference(cache, {"include_expired": True})
    live = reference(cache, {})
    assert len(everything) > len(live) > 12  # a get removed one expired entry, not all
    assert any(e.location for e in everything)  # blobs
    assert any(not e.location for e in everything)  # values inline in the index
    expected = [reference(cache, call) for call in CALLS]  # one page each (1,000 rows)
    if hasattr(metadata, "page_size"):  # reads in pages: make the listing use many
        monkeypatch.setattr(metadata, "page_size", page_size)
    for call, wanted in zip(CALLS, expected, strict=True):
        listed = cache.list_entries(**call)
        assert listed == wanted, call
        for entry in listed:
            stamps = [entry.created_at, entry.updated_at, entry.accessed_at, entry.expires_at]
            assert all(s is None or s.tzinfo == UTC for s in stamps)
