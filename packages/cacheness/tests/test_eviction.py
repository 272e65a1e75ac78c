"""Eviction order per policy, limits, and the access-time throttle."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from cacheness import cacheness
from cacheness.eviction import Evictor
from cacheness.storage import BlobStore, ConfigError


def keys_left(cache):
    return sorted(entry.params["n"] for entry in cache.list_entries())


def fill(cache, clock, count):
    for n in range(count):
        cache.put(n, n=n)
        clock.advance(1)


def test_lru_evicts_the_least_recently_read(make_cache, clock):
    cache = make_cache(clock=clock, max_entries=5, access_update_interval_seconds=0)
    fill(cache, clock, 5)
    for n in (0, 1, 2):  # read the three oldest: 3 and 4 are now least recently used
        assert cache.get(n=n) == n
        clock.advance(1)
    cache.put(5, n=5)  # over the limit: down to 90 % of 5 entries = 4
    assert keys_left(cache) == [0, 1, 2, 5]
    assert cache.get_stats()["evictions"] == 2


def test_lfu_evicts_the_least_often_read(make_cache, clock):
    cache = make_cache(
        clock=clock, max_entries=5, eviction_policy="lfu", access_update_interval_seconds=0
    )
    fill(cache, clock, 5)
    for n, reads in ((0, 3), (1, 1), (2, 4), (3, 2), (4, 5)):
        for _ in range(reads):
            cache.get(n=n)
            clock.advance(1)
    cache.put(5, n=5)  # the new entry (0 reads) is not its own victim
    assert keys_left(cache) == [0, 2, 4, 5]


def test_fifo_evicts_the_oldest_write_whatever_was_read(make_cache, clock):
    cache = make_cache(
        clock=clock, max_entries=5, eviction_policy="fifo", access_update_interval_seconds=0
    )
    fill(cache, clock, 5)
    cache.get(n=0)
    cache.put(5, n=5)
    assert keys_left(cache) == [2, 3, 4, 5]


def test_size_limit_evicts_down_to_ninety_percent(tmp_path, clock):
    with cacheness(
        cache_dir=str(tmp_path), clock=clock, max_cache_size_mb=1, compression={"codec": "none"}
    ) as cache:
        payload = bytes(range(256)) * 400  # 102,400 bytes, stored as they are
        for n in range(10):
            cache.put(payload, n=n)
            clock.advance(1)
        assert cache.get_stats()["evictions"] == 0
        cache.put(payload, n=10)  # 11 x 100 KiB > 1 MiB
        stats = cache.get_stats()
        assert stats["total_size"] <= 0.9 * 1024 * 1024
        assert stats["evictions"] == 2
        assert keys_left(cache) == list(range(2, 11))  # least recently used went first


@pytest.mark.parametrize("memory", [False, True], ids=["index", "memory layer"])
def test_reads_within_the_interval_do_not_write(tmp_path, clock, memory):
    """Hits write their access time at most once per interval, with the counts of the
    hits in between; memory-layer hits count the same (and as memory hits)."""
    with cacheness(
        cache_dir=str(tmp_path),
        clock=clock,
        access_update_interval_seconds=60,
        enable_memory_cache=memory,
    ) as cache:
        cache.put("v", n=1)
        stamp = cache.get_metadata(n=1).accessed_at
        for _ in range(5):
            clock.advance(10)
            cache.get(n=1)
        info = cache.get_metadata(n=1)
        assert (info.accessed_at, info.access_count) == (stamp, 0)  # nothing written yet
        clock.advance(10)  # 60 s since the put: this hit writes, with the pending counts
        cache.get(n=1)
        info = cache.get_metadata(n=1)
        assert info.accessed_at == clock.now
        assert info.access_count == 6
        assert cache.get_stats().get("memory_hits", 0) == (5 if memory else 0)
        cache.get(n=1)
    with cacheness(cache_dir=str(tmp_path), clock=clock) as again:  # close() flushed
        assert again.get_metadata(n=1).access_count == 7


def test_evictor_validates_its_settings():
    store = BlobStore(metadata_backend="memory", blob_backend="memory")
    with pytest.raises(ConfigError, match="policy"):
        Evictor(store, max_bytes=1, max_entries=None, policy="random")
    with pytest.raises(ConfigError, match="positive"):
        Evictor(store, max_bytes=0, max_entries=None)
    assert not Evictor(store, max_bytes=None, max_entries=None).enabled


def test_other_processes_writes_are_noticed_on_resync():
    # Every put is one second later than the one before, so the LRU order is the order
    # of the puts, and the whole scenario is exact.
    ticks = itertools.count()
    store = BlobStore(
        metadata_backend="memory",
        blob_backend="memory",
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(ticks)),
    )
    evictor = Evictor(store, max_bytes=None, max_entries=10, resync_every=5)
    for n in range(3):
        assert evictor.after_put(store.put(n, key=f"mine-{n}"), size=1) == 0
    for n in range(20):  # written by "someone else": the evictor did not see them
        store.put(n, key=f"theirs-{n:02d}")
    evicted = [evictor.after_put(store.put(n, key=f"late-{n}"), size=1) for n in range(3)]
    # The first two late puts trust the estimate (1 + 3 entries, then 1 + 4); the third
    # is the 5th put since the last exact count: the index says 26 > 10, so the oldest
    # 17 go, down to 90 % of the limit (9 entries), never the entry just written.
    assert evicted == [0, 0, 17]
    assert [entry.key for entry in store.list_entries()] == [
        "late-0",
        "late-1",
        "late-2",
        *(f"theirs-{n:02d}" for n in range(14, 20)),
    ]
