"""The cache class, method by method, on memory, sqlite+filesystem and postgresql+s3."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cacheness import MISS, cacheness
from cacheness.storage import (
    EntryExistsError,
    EntryNotFoundError,
    InvalidKeyError,
    PayloadTooLargeError,
    StorageError,
)


def test_put_get_round_trip_and_key_parameters(make_cache):
    cache = make_cache()
    array = np.arange(10_000, dtype=np.float64)
    key = cache.put(array, model="resnet", epochs=10)
    assert len(key) == 32
    assert key == cache.key_for(epochs=10, model="resnet")  # order does not matter
    np.testing.assert_array_equal(cache.get(model="resnet", epochs=10), array)
    assert cache.get(model="resnet", epochs=10.0) is None  # 10 and 10.0 differ
    assert cache.get(model="resnet", epochs=11, default="fallback") == "fallback"
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"], stats["puts"]) == (1, 2, 1)
    assert stats["entries"] == 1
    assert stats["total_size"] > 0
    assert stats["bytes_written"] == stats["total_size"]


def test_stored_none_is_a_hit_and_miss_is_a_sentinel(make_cache):
    cache = make_cache()
    cache.put(None, q=1)
    assert cache.get(q=1, default=MISS) is None
    assert cache.get(q=2, default=MISS) is MISS
    assert cache.exists(q=1)
    assert not cache.exists(q=2)


def test_cache_key_instead_of_parameters(make_cache):
    cache = make_cache()
    key = cache.put("value", cache_key="my-own-key", note="recorded only")
    assert key == "my-own-key"
    assert cache.get(cache_key="my-own-key") == "value"
    assert cache.get_metadata(cache_key="my-own-key").params == {"note": "recorded only"}
    assert cache.invalidate(cache_key="my-own-key")
    assert cache.get(cache_key="my-own-key") is None


def test_clashing_parameter_names_go_through_key_params(make_cache):
    cache = make_cache()
    key = cache.put(1, key_params={"default": 3, "metadata": "m"})
    assert cache.get(key_params={"default": 3, "metadata": "m"}) == 1
    assert cache.get_metadata(cache_key=key).params == {"default": 3, "metadata": "m"}
    with pytest.raises(TypeError, match="given twice"):
        cache.get(key_params={"x": 1}, x=1)
    with pytest.raises(TypeError, match="key parameters"):
        cache.get()


def test_metadata_get_metadata_and_reserved_key(make_cache):
    cache = make_cache(default_ttl_seconds=600)
    cache.put([1, 2], metadata={"owner": "ana"}, dataset="iris", split="train")
    info = cache.get_metadata(dataset="iris", split="train")
    assert info.metadata == {"owner": "ana"}
    assert info.params == {"dataset": "iris", "split": "train"}
    assert info.ttl_seconds == 600.0
    assert info.expires_at is not None
    assert info.handler == "plain"
    assert info.to_dict()["cache_key"] == info.cache_key
    assert cache.get_metadata(dataset="iris", split="test") is None
    with pytest.raises(ValueError, match="reserved"):
        cache.put(1, metadata={"_cacheness": 1}, x=1)


def test_get_with_metadata(make_cache):
    cache = make_cache()
    cache.put({"a": 1}, run=1)
    value, info = cache.get_with_metadata(run=1)
    assert value == {"a": 1}
    assert info.params == {"run": 1}
    assert cache.get_with_metadata(run=2) is None


def test_an_expired_entry_is_a_miss_and_removed_then(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("short", ttl_seconds=10, k=1)
    clock.advance(11)
    assert cache.get(k=1) is None
    assert cache.get_metadata(k=1, check_expiration=False) is None  # removed by the miss
    assert cache.get_stats()["expirations"] == 1


def test_touch_with_a_ttl_restarts_the_clock_with_that_ttl(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("long", ttl_seconds=100, k=2)
    assert cache.touch(k=2, ttl_seconds=200)
    clock.advance(150)  # past the first TTL, within the new one
    assert cache.get(k=2) == "long"
    assert cache.get_metadata(k=2).ttl_seconds == 200


def test_touch_without_a_ttl_restarts_the_entry_s_own_ttl(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("long", ttl_seconds=100, k=2)
    clock.advance(90)
    assert cache.touch(k=2)
    clock.advance(90)  # 180 s after the put, 90 s after the touch
    assert cache.get(k=2) == "long"
    clock.advance(20)
    assert not cache.exists(k=2)


def test_an_entry_without_ttl_never_expires(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("forever", k=3)
    clock.advance(10**9)
    assert cache.get(k=3) == "forever"
    assert cache.get_metadata(k=3).expires_at is None


def test_expired_entries_are_kept_until_cleanup_but_listed_only_on_request(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("short", ttl_seconds=10, k=1)
    cache.put("forever", k=3)
    clock.advance(11)
    assert not cache.exists(k=1)  # a check, not a read: nothing removed yet
    assert cache.get_metadata(k=1, check_expiration=False) is not None
    assert [e.params for e in cache.list_entries()] == [{"k": 3}]
    assert len(cache.list_entries(include_expired=True)) == 2


def test_cleanup_expired_removes_exactly_the_expired(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("short", ttl_seconds=10, k=1)
    cache.put("long", ttl_seconds=100, k=2)
    cache.put("forever", k=3)
    clock.advance(11)
    assert cache.cleanup_expired() == 1
    assert sorted(e.params["k"] for e in cache.list_entries(include_expired=True)) == [2, 3]


def test_touch_of_a_missing_entry_says_so(make_cache):
    cache = make_cache()
    assert not cache.touch(k=99)


def test_update_data_keeps_key_and_restarts_ttl(make_cache, clock):
    cache = make_cache(clock=clock)
    key = cache.put("v1", ttl_seconds=60, metadata={"tag": "x"}, run=1)
    clock.advance(50)
    assert cache.update_data("v2", run=1)
    clock.advance(50)  # 100 s after the put, 50 s after the update
    assert cache.get(run=1) == "v2"
    info = cache.get_metadata(run=1)
    assert info.cache_key == key
    assert info.metadata == {"tag": "x"}
    assert not cache.update_data("v", run=2)


def test_list_entries_query_meta_and_filters(make_cache):
    cache = make_cache()
    cache.put(1, metadata={"stage": "dev"}, project="ml", run=1)
    cache.put(2, metadata={"stage": "prod"}, project="ml", run=2)
    cache.put(3, project="web", run=3)
    assert [e.params["run"] for e in cache.query_meta(project="ml")] == [1, 2]
    assert [e.params["run"] for e in cache.query_meta(project="ml", run=2)] == [2]
    prod = cache.list_entries(filter={"metadata.stage": "prod"})
    assert [e.params["run"] for e in prod] == [2]
    assert len(cache.list_entries(limit=2)) == 2
    with pytest.raises(ValueError, match="JSON-able"):
        cache.query_meta(thing=object())


def put_runs(cache):
    for run in range(4):
        cache.put(run, metadata={"even": run % 2 == 0}, experiment=f"exp_{run:03d}")
    cache.put("b", experiment="baseline")


def experiments_left(cache):
    return sorted(e.params["experiment"] for e in cache.list_entries())


def test_delete_matching_deletes_by_key_parameters(make_cache):
    cache = make_cache()
    put_runs(cache)
    assert cache.delete_matching(experiment="exp_001") == 1
    assert experiments_left(cache) == ["baseline", "exp_000", "exp_002", "exp_003"]


def test_delete_where_deletes_by_a_metadata_filter(make_cache):
    cache = make_cache()
    put_runs(cache)
    assert cache.delete_where({"metadata.even": True}) == 2
    assert experiments_left(cache) == ["baseline", "exp_001", "exp_003"]


def test_delete_where_takes_a_predicate_on_entries(make_cache):
    cache = make_cache()
    put_runs(cache)
    assert cache.delete_where(lambda e: e.params["experiment"] == "baseline") == 1
    assert experiments_left(cache) == ["exp_000", "exp_001", "exp_002", "exp_003"]


def test_delete_by_prefix_deletes_by_a_parameter_prefix(make_cache):
    cache = make_cache()
    put_runs(cache)
    assert cache.delete_by_prefix(experiment="exp_") == 4
    assert experiments_left(cache) == ["baseline"]


def test_delete_batch_counts_only_what_existed(make_cache):
    cache = make_cache()
    cache.put(1, x=1)
    cache.put(2, x=2)
    assert cache.delete_batch([{"x": 1}, {"x": 5}]) == 1
    assert [e.params for e in cache.list_entries()] == [{"x": 2}]


def test_clear_all_empties_the_cache(make_cache):
    cache = make_cache()
    put_runs(cache)
    assert cache.clear_all() == 5
    assert cache.get_stats()["entries"] == 0


def test_batches(make_cache, clock):
    cache = make_cache(clock=clock)
    cache.put("a", ttl_seconds=10, experiment="exp_001", project="ml")
    cache.put("b", ttl_seconds=10, experiment="exp_002", project="ml")
    assert cache.get_batch([{"experiment": "exp_001", "project": "ml"}, {"experiment": "x"}]) == [
        "a",
        None,
    ]
    updated = cache.update_batch(
        [({"experiment": "exp_001", "project": "ml"}, "A"), ({"experiment": "nope"}, "Z")]
    )
    assert updated == 1
    clock.advance(8)
    assert cache.touch_batch(project="ml") == 2
    clock.advance(8)  # 16 s after the puts: alive only thanks to the touch
    assert cache.get_batch(
        [{"experiment": "exp_001", "project": "ml"}, {"experiment": "exp_002", "project": "ml"}]
    ) == ["A", "b"]


def test_copy_and_move_record_the_destination_parameters(make_cache):
    cache = make_cache()
    cache.put(np.ones(3), metadata={"m": 1}, experiment="exp_001")
    cache.copy({"experiment": "exp_001"}, {"experiment": "backup"})
    np.testing.assert_array_equal(cache.get(experiment="backup"), np.ones(3))
    assert cache.get_metadata(experiment="backup").params == {"experiment": "backup"}
    assert cache.get_metadata(experiment="backup").metadata == {"m": 1}
    with pytest.raises(EntryExistsError):
        cache.copy({"experiment": "exp_001"}, {"experiment": "backup"})
    cache.move({"experiment": "backup"}, {"experiment": "exp_002"})
    assert cache.get(experiment="backup") is None
    assert cache.get_metadata(experiment="exp_002").params == {"experiment": "exp_002"}
    with pytest.raises(EntryNotFoundError):
        cache.move({"experiment": "missing"}, {"experiment": "x"})


def test_corrupt_entries_are_counted_misses_and_removed(make_cache):
    cache = make_cache(serialization={"inline_threshold": 0})  # every value in a blob
    cache.put(b"\x01" * 1000, item=1)
    info = cache.get_metadata(item=1)
    cache.store.blobs.delete(info.blob_ref)  # the bytes vanish behind the cache's back
    assert cache.get(item=1, default="recomputed") == "recomputed"
    stats = cache.get_stats()
    assert (stats["errors"], stats["misses"]) == (1, 1)
    assert cache.get_metadata(item=1) is None  # removed


def test_strict_cache_raises_on_unreadable_entries(tmp_path):
    from cacheness.storage import IntegrityError

    with cacheness(
        cache_dir=str(tmp_path), strict=True, serialization={"inline_threshold": 0}
    ) as cache:
        cache.put(b"\x01" * 1000, item=1)
        cache.store.blobs.delete(cache.get_metadata(item=1).blob_ref)
        with pytest.raises(IntegrityError, match="missing"):
            cache.get(item=1)


def test_values_larger_than_the_whole_cache_are_refused(make_cache):
    cache = make_cache(max_cache_size_mb=0.01)  # about 10 KB
    cache.put("small", n=1)
    rng = np.random.default_rng(0)
    with pytest.raises(PayloadTooLargeError, match="whole cache limit"):
        cache.put(rng.random(100_000), n=2)  # incompressible, 800 KB
    assert cache.get(n=1) == "small"  # nothing was flushed to make room
    assert cache.get_stats()["evictions"] == 0


def test_an_empty_cache_key_is_refused(make_cache):
    cache = make_cache()
    with pytest.raises(InvalidKeyError, match="empty"):
        cache.get(cache_key="")


def test_a_closed_cache_refuses_work_and_closing_twice_is_fine(make_cache):
    cache = make_cache()
    cache.close()
    cache.close()
    with pytest.raises(StorageError, match="this cache is closed; create a new cacheness"):
        cache.get(x=1)


def test_reopened_sqlite_cache_keeps_entries(tmp_path):
    with cacheness(cache_dir=str(tmp_path)) as first:
        first.put({"v": 1}, name="persisted", ttl_seconds=3600)
    with cacheness(cache_dir=str(tmp_path)) as second:
        assert second.get(name="persisted") == {"v": 1}
        assert second.get_metadata(name="persisted").expires_at > dt.datetime.now(dt.UTC)


def test_verify_without_downloading_and_get_metadata_shows_where(make_cache):
    cache = make_cache(serialization={"inline_threshold": 0})
    payload = np.arange(50_000, dtype=np.int64)
    cache.put(payload, dataset="d1")
    info = cache.get_metadata(dataset="d1")
    assert info.location.endswith(info.blob_ref)
    if cache.store.blobs.name == "s3":
        bucket = cache.store.blobs.bucket
        assert info.location.startswith(f"s3://{bucket}/")
        assert info.etag  # recorded from the upload, visible without a download
    assert cache.verify(dataset="d1")
    assert cache.verify(dataset="d1", deep=True)
    # Someone replaces the bytes behind the cache's back, same name, same length.
    blobs = cache.store.blobs
    original = blobs.read_bytes(info.blob_ref)
    tampered = bytes([original[0] ^ 0xFF]) + original[1:]
    blobs.write_bytes(blobs.name_for(info.blob_ref), tampered)
    assert not cache.verify(dataset="d1")  # caught from the stat (ETag / stored hash)
    assert not cache.verify(dataset="d1", deep=True)
    assert cache.get(dataset="d1", default="miss") == "miss"  # never the wrong value
    with pytest.raises(EntryNotFoundError):
        cache.verify(dataset="nope")


def test_a_filter_must_be_a_mapping(make_cache):
    from cacheness.storage import FilterError

    cache = make_cache()
    with pytest.raises(FilterError, match="mapping"):
        cache.list_entries(filter="metadata.owner = 'ana'")
