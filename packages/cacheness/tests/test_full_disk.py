"""A cache that filled its disk frees space through its own API (a real 20 MiB tmpfs).

The disk is filled to the brim before every deletion: with blobs, then with values
small enough to live in the index (so the index itself cannot grow). Every way the
cache deletes — ``invalidate``, ``delete_batch``, ``delete_where`` (filter and
predicate), ``delete_matching``, ``delete_by_prefix``, ``cleanup_expired``,
``clear_all``, eviction — must work there, also after reopening the cache, and the
puts that failed for space must leave it consistent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cacheness import cacheness
from cacheness.storage import StorageFullError


def fill(cache: cacheness, group: str) -> int:
    """Put values until the disk refuses; return how many were stored."""
    stored = 0
    for size in (200_000, 20_000, 500):
        for n in range(100_000):
            try:
                cache.put(os.urandom(size), ttl_seconds=60, group=group, size=size, n=n)
            except StorageFullError:
                break
            stored += 1
    assert_consistent(cache)
    return stored


def assert_consistent(cache: cacheness) -> None:
    store = cache.store
    assert store.verify_integrity(deep=False) == []
    assert store.find_orphaned_blobs(min_age_seconds=0) == []
    assert store.blobs.cleanup_temp_files(0, dry_run=True) == 0


BIG = {"group": "first", "size": 200_000}
FOURTH = {**BIG, "n": 4}


@pytest.mark.parametrize("index", ["sqlite", "json"])
def test_every_cache_deletion_works_on_a_full_disk(small_filesystem: Path, clock, index):
    def open_cache() -> cacheness:
        folder = str(small_filesystem / "cache")
        return cacheness(cache_dir=folder, metadata_backend=index, clock=clock)

    cache = open_cache()
    fill(cache, "first")
    cache.close()
    cache = open_cache()  # reopened on the full disk
    deletions = [
        ("invalidate", lambda: cache.invalidate(**BIG, n=0), True),
        ("delete_batch", lambda: cache.delete_batch([{**BIG, "n": 1}, {**BIG, "n": 2}]), 2),
        (
            "delete_where filter",
            lambda: cache.delete_where({"metadata._cacheness.params.n": 3, "size": {"$gt": 1e5}}),
            1,
        ),
        ("delete_where predicate", lambda: cache.delete_where(lambda e: e.params == FOURTH), 1),
        ("delete_matching", lambda: cache.delete_matching(**BIG, n=5), 1),
        ("delete_by_prefix", lambda: cache.delete_by_prefix(group="fir", size=200_000, n=6), 1),
    ]
    for round_number, (name, delete, expected) in enumerate(deletions):
        fill(cache, f"refill{round_number}")
        assert delete() == expected, name
        assert_consistent(cache)
    fill(cache, "expiring")
    clock.advance(61)
    assert cache.cleanup_expired() > 0
    assert_consistent(cache)
    clock.advance(-61)
    fill(cache, "last")
    assert cache.clear_all() > 0
    assert cache.count(include_expired=True) == 0
    cache.put(b"x" * 100_000, after="clear")
    assert cache.get(after="clear") == b"x" * 100_000
    cache.close()


def test_a_cache_with_limits_evicts_when_a_put_finds_the_disk_full(small_filesystem: Path):
    with cacheness(cache_dir=str(small_filesystem / "cache"), max_entries=100_000) as cache:
        for n in range(200):  # 40 MB of values on a 20 MiB disk
            cache.put(os.urandom(200_000), n=n)
        stats = cache.get_stats()
        assert stats["evictions"] > 0
        assert stats["puts"] == 200
        assert cache.get(n=199) is not None
        assert cache.get(n=0) is None  # the least recently used went first
        assert_consistent(cache)


def test_without_limits_a_full_disk_is_a_typed_error_and_nothing_is_evicted(
    small_filesystem: Path,
):
    with cacheness(cache_dir=str(small_filesystem / "cache")) as cache:
        stored = fill(cache, "a")
        with pytest.raises(StorageFullError, match="delete"):
            cache.put(os.urandom(200_000), one="more")
        assert cache.count() == stored
        assert cache.get_stats()["evictions"] == 0
