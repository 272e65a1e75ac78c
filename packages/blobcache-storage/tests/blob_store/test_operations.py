"""Every public BlobStore operation, over the four pairings, checked from outside the store.

After each change the index rows (read with sqlite3, from the JSON file, with psycopg)
and the blobs (files on disk, objects in the bucket via plain boto3) must agree: every
entry's blob exists, and no blob is left without an entry.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from cacheness.storage import BlobStore, hash_bytes
from cacheness.storage.errors import (
    EntryExistsError,
    EntryNotFoundError,
    FilterError,
    InvalidEntryError,
    InvalidKeyError,
    PayloadTooLargeError,
    SerializationError,
    StorageError,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """Entry timestamps under the test's control."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def consistent(pairing) -> dict[str, str]:
    """Assert the index and the blobs agree (no dangling entry, no orphan); return the index."""
    index = pairing.index()
    assert {ref for ref in index.values() if ref} == pairing.blob_refs()
    return index


# --------------------------------------------------------------------------- put / get


def test_round_trips_plain_values(store, pairing):
    values = {
        "dict": {"lr": 0.01, "layers": [64, 64], "name": "run"},
        "tuple": (1, "two", 3.0),
        "text": "héllo wörld",
        "bytes": b"\x00\x01\x02",
        "none": None,
        "int": 2**70,
    }
    for key, value in values.items():
        assert store.put(value, key=key) == key
    for key, value in values.items():
        loaded = store.get(key)
        assert loaded == value
        assert type(loaded) is type(value)
    assert set(pairing.index()) == set(values)


def test_round_trips_arrays_and_frames(store, pairing):
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    array = np.arange(50_000, dtype=np.float64).reshape(250, 200)
    frame = pd.DataFrame({"i": range(2000), "c": pd.Categorical(["a", "b"] * 1000)})
    store.put(array, key="array")
    store.put(frame, key="frame")
    np.testing.assert_array_equal(store.get("array"), array)
    pd.testing.assert_frame_equal(store.get("frame"), frame)
    assert store.get_metadata("array").handler == "numpy"
    assert store.get_metadata("frame").handler == "pandas"
    consistent(pairing)


def test_small_payload_is_inline_and_writes_no_blob(store, pairing):
    store.put({"a": 1}, key="small")
    entry = store.get_metadata("small")
    assert entry.is_inline
    assert entry.blob_ref == ""
    assert len(entry.inline) == entry.size
    assert hash_bytes(entry.inline) == entry.content_hash
    assert pairing.index() == {"small": ""}
    assert pairing.blob_refs() == set()


def test_large_payload_is_a_blob_holding_the_stored_bytes(store, pairing, big):
    store.put(big(), key="big")
    entry = store.get_metadata("big")
    assert not entry.is_inline
    assert pairing.index() == {"big": entry.blob_ref}
    stored = pairing.blob_bytes(entry.blob_ref)
    assert stored is not None
    assert len(stored) == entry.size
    assert hash_bytes(stored) == entry.content_hash
    assert store.get("big") == big()


def test_inline_threshold_zero_puts_every_payload_in_a_blob(pairing):
    store = pairing.open(inline_threshold=0)
    store.put({"a": 1}, key="small")
    entry = store.get_metadata("small")
    assert entry.inline is None
    assert pairing.blob_bytes(entry.blob_ref) is not None
    assert store.get("small") == {"a": 1}


def test_put_without_key_uses_the_content_hash(store, pairing, big):
    key = store.put(big())
    assert len(key) == 32
    assert key == store.get_metadata(key).content_hash
    assert store.put(big()) == key
    assert list(pairing.index()) == [key]
    consistent(pairing)


def test_overwrite_replaces_the_blob_and_deletes_the_old_one(store, pairing, big):
    store.put(big(0), key="k")
    old_ref = store.get_metadata("k").blob_ref
    store.put(big(1), key="k")
    new_ref = store.get_metadata("k").blob_ref
    assert new_ref != old_ref
    assert pairing.blob_refs() == {new_ref}
    assert store.get("k") == big(1)


def test_overwrite_false_refuses_and_keeps_the_original(store, pairing, big):
    store.put(big(0), key="k")
    with pytest.raises(EntryExistsError, match="overwrite=True"):
        store.put(big(1), key="k", overwrite=False)
    assert store.get("k") == big(0)
    consistent(pairing)


def test_an_object_no_handler_can_store_leaves_nothing_behind(store, pairing, big):
    store.put(big(0), key="k")
    with pytest.raises(SerializationError, match="lock"):
        store.put([big(1), threading.Lock()], key="k")
    with pytest.raises(SerializationError):
        store.put(threading.Lock(), key="other")
    assert store.get("k") == big(0)
    assert not store.exists("other")
    consistent(pairing)


def test_metadata_that_is_not_json_is_refused_and_nothing_is_stored(store, pairing, big):
    with pytest.raises(InvalidEntryError):
        store.put(big(), key="k", metadata={"when": object()})
    assert not store.exists("k")
    assert consistent(pairing) == {}


@pytest.mark.parametrize("data_size", [100, 100_000], ids=["inline", "blob"])
def test_max_size_refuses_before_anything_is_committed(store, pairing, big, data_size):
    store.put("previous", key="k")
    with pytest.raises(PayloadTooLargeError, match="nothing was stored"):
        store.put(big(size=data_size), key="k", max_size=50)
    assert store.get("k") == "previous"
    assert store.put(big(size=data_size), key="k", max_size=data_size + 100) == "k"
    assert store.get("k") == big(size=data_size)
    consistent(pairing)


@pytest.mark.parametrize("key", ["", "a\x00b", "x" * 2000])
def test_invalid_keys_are_refused(store, key):
    with pytest.raises(InvalidKeyError):
        store.put(1, key=key)


def test_get_default_and_missing_lookups(store):
    marker = object()
    assert store.get("missing") is None
    assert store.get("missing", default=marker) is marker
    assert store.get_with_metadata("missing") is None
    assert store.get_metadata("missing") is None
    assert store.exists("missing") is False


def test_a_stored_none_is_not_a_miss(store):
    store.put(None, key="nothing")
    assert store.exists("nothing")
    assert store.get("nothing", default="miss") is None


def test_get_with_metadata_returns_the_value_and_its_entry(store):
    store.put([1, 2], key="k", metadata={"project": "ml"})
    value, entry = store.get_with_metadata("k")
    assert value == [1, 2]
    assert entry.key == "k"
    assert entry.metadata == {"project": "ml"}
    assert entry.handler == "plain"


def test_data_survives_reopening_the_store(pairing, big):
    first = pairing.open()
    first.put(big(), key="big", metadata={"v": 1})
    first.put("small", key="small")
    first.close()
    second = pairing.open()
    assert second.get("big") == big()
    assert second.get("small") == "small"
    assert second.get_metadata("big").metadata == {"v": 1}


# --------------------------------------------------------------------------- updates


def test_update_metadata_merges_or_replaces(pairing):
    clock = Clock()
    store = pairing.open(clock=clock)
    store.put(1, key="k", metadata={"a": 1, "b": 2})
    updated_at = clock.tick()
    assert store.update_metadata("k", {"b": 3, "c": 4}) is True
    entry = store.get_metadata("k")
    assert entry.metadata == {"a": 1, "b": 3, "c": 4}
    assert entry.updated_at == updated_at
    assert entry.created_at == T0
    assert store.update_metadata("k", {"only": True}, merge=False) is True
    assert store.get_metadata("k").metadata == {"only": True}
    assert store.update_metadata("missing", {"a": 1}) is False
    assert not store.exists("missing")


def test_update_batch_changes_the_existing_entries_only(store):
    store.put_batch({"a": 1, "b": 2}, metadata={"a": {"x": 0}})
    assert store.update_batch({"a": {"y": 1}, "b": {"y": 2}, "zz": {"y": 3}}) == 2
    assert store.get_metadata("a").metadata == {"x": 0, "y": 1}
    assert store.get_metadata("b").metadata == {"y": 2}
    assert store.update_batch({"a": {"z": 9}}, merge=False) == 1
    assert store.get_metadata("a").metadata == {"z": 9}
    assert store.update_batch({}) == 0
    assert not store.exists("zz")


def test_update_data_keeps_the_key_and_refreshes_the_derived_fields(pairing, big):
    clock = Clock()
    store = pairing.open(clock=clock)
    store.put(big(0), key="model", metadata={"stage": "dev"})
    before = store.get_metadata("model")
    updated_at = clock.tick()
    assert store.update_data("model", {"weights": [1, 2, 3]}, metadata={"rev": 2}) is True
    after = store.get_metadata("model")
    assert store.get("model") == {"weights": [1, 2, 3]}
    assert after.created_at == before.created_at == T0
    assert after.updated_at == updated_at
    assert (after.handler, after.is_inline) == ("plain", True)
    assert after.size != before.size
    assert after.content_hash != before.content_hash
    assert after.metadata == {"stage": "dev", "rev": 2}
    assert consistent(pairing) == {"model": ""}  # the old blob is gone


def test_update_data_from_inline_to_blob_and_back(store, pairing, big):
    store.put("tiny", key="k")
    assert store.update_data("k", big(3)) is True
    ref = store.get_metadata("k").blob_ref
    assert pairing.blob_refs() == {ref}
    assert store.get("k") == big(3)
    assert store.update_data("k", big(4)) is True
    assert pairing.blob_refs() == {store.get_metadata("k").blob_ref} != {ref}
    assert store.update_data("k", "tiny again") is True
    assert store.get("k") == "tiny again"
    assert consistent(pairing) == {"k": ""}


def test_update_data_of_a_missing_key_writes_nothing(store, pairing, big):
    assert store.update_data("missing", big()) is False
    assert not store.exists("missing")
    assert consistent(pairing) == {}


def test_update_data_refuses_oversized_payloads_and_keeps_the_old_data(store, pairing, big):
    store.put(big(0), key="k")
    with pytest.raises(PayloadTooLargeError):
        store.update_data("k", big(1), max_size=100)
    assert store.get("k") == big(0)
    consistent(pairing)


def test_record_access_adds_reads_and_sets_the_time(store):
    store.put(1, key="k")
    when = datetime(2030, 5, 1, tzinfo=UTC)
    assert store.record_access({"k": 3, "missing": 1}, at=when) == 1
    assert store.record_access(["k"], at=when) == 1
    entry = store.get_metadata("k")
    assert entry.access_count == 4
    assert entry.accessed_at == when
    assert store.record_access([]) == 0


# --------------------------------------------------------------------------- deleting


def test_delete_removes_the_entry_and_its_blob(store, pairing, big):
    store.put(big(), key="big")
    store.put("small", key="small")
    assert store.delete("big") is True
    assert store.delete("big") is False
    assert store.delete("small") is True
    assert consistent(pairing) == {}
    assert pairing.blob_refs() == set()


def test_delete_batch_prefix_where_and_clear(store, pairing, big):
    items = {f"runs/{i}": big(i) for i in range(4)} | {f"tmp/{i}": i for i in range(3)}
    store.put_batch(items, metadata={f"runs/{i}": {"epoch": i} for i in range(4)})
    assert store.delete_batch(["runs/0", "missing"]) == 1
    assert store.delete_by_prefix("tmp/") == 3
    assert store.delete_where({"metadata.epoch": {"$gte": 3}}) == 1
    assert store.delete_where(lambda entry: entry.key == "runs/1") == 1
    assert set(consistent(pairing)) == {"runs/2"}
    assert store.clear() == 1
    assert consistent(pairing) == {}
    assert pairing.blob_refs() == set()


def test_delete_where_rejects_an_invalid_filter(store):
    store.put(1, key="k")
    with pytest.raises(FilterError):
        store.delete_where({"metadata.x": {"$regex": "."}})
    assert store.exists("k")


# --------------------------------------------------------------------------- listing


@pytest.fixture
def catalogue(store, big):
    store.put(big(0, 120_000), key="models/a", metadata={"accuracy": 0.95, "team": "vision"})
    store.put(big(1, 80_000), key="models/b", metadata={"accuracy": 0.85, "team": "nlp"})
    store.put({"x": 1}, key="models/c", metadata={"accuracy": 0.91, "team": "nlp"})
    store.put({"y": 2}, key="data/d", metadata={"team": "vision"})
    return store


def keys(entries) -> list[str]:
    return [entry.key for entry in entries]


def test_list_filters_by_prefix_and_metadata(catalogue):
    store = catalogue
    assert store.list() == ["data/d", "models/a", "models/b", "models/c"]
    assert store.list(prefix="models/") == ["models/a", "models/b", "models/c"]
    assert store.list(metadata_filter={"accuracy": {"$gte": 0.9}}) == [
        "models/a",
        "models/c",
    ]
    assert store.list("models/", {"team": "nlp"}) == ["models/b", "models/c"]
    assert store.list(metadata_filter={"team": {"$in": ["vision"]}}) == [
        "data/d",
        "models/a",
    ]
    assert store.list(filter={"size": {"$gt": 5000}}) == ["models/a", "models/b"]


def test_list_orders_and_pages(catalogue):
    store = catalogue
    assert store.list(order_by="size", descending=True, limit=2) == ["models/a", "models/b"]
    pages = [store.list(limit=2, offset=offset) for offset in (0, 2, 4)]
    assert pages == [["data/d", "models/a"], ["models/b", "models/c"], []]
    lazy = store.iter_entries(prefix="models/")
    assert next(lazy).key == "models/a"
    assert keys(lazy) == ["models/b", "models/c"]


def test_count_and_total_size(catalogue):
    store = catalogue
    assert store.count() == 4
    assert store.count(prefix="models/", metadata_filter={"accuracy": {"$lt": 0.9}}) == 1
    sizes = {entry.key: entry.size for entry in store.list_entries()}
    assert store.total_size() == sum(sizes.values())
    assert store.total_size(prefix="models/") == sum(
        size for key, size in sizes.items() if key.startswith("models/")
    )


def test_list_rejects_unknown_operators(catalogue):
    with pytest.raises(FilterError):
        catalogue.list_entries(metadata_filter={"accuracy": {"$near": 1}})


# --------------------------------------------------------------------------- batches


def test_put_batch_and_get_batch(store, pairing, big):
    assert store.put_batch([("a", big(0)), ("b", "small")], metadata={"a": {"v": 1}}) == ["a", "b"]
    assert store.get_batch(["a", "b", "c"], default="miss") == {
        "a": big(0),
        "b": "small",
        "c": "miss",
    }
    assert store.get_metadata("a").metadata == {"v": 1}
    assert store.get_metadata("b").metadata == {}
    store.put_batch({"a": big(1)})  # replaces: the old blob goes
    assert store.get("a") == big(1)
    consistent(pairing)


def test_put_batch_fails_as_a_whole(store, pairing, big):
    store.put("kept", key="a")
    with pytest.raises(SerializationError):
        store.put_batch({"a": big(0), "b": big(1), "c": threading.Lock()})
    assert store.get("a") == "kept"
    assert not store.exists("b")
    consistent(pairing)
    with pytest.raises(InvalidKeyError):
        store.put_batch({"ok": 1, "": 2})
    assert not store.exists("ok")


# --------------------------------------------------------------------------- copy / move


def test_copy_writes_an_independent_blob(store, pairing, big):
    store.put(big(), key="src", metadata={"v": 1})
    copied = store.copy("src", "dst")
    assert copied.key == "dst"
    assert copied.metadata == {"v": 1}
    src_ref = store.get_metadata("src").blob_ref
    assert copied.blob_ref != src_ref
    assert pairing.blob_bytes(copied.blob_ref) == pairing.blob_bytes(src_ref)
    store.delete("src")
    assert store.get("dst") == big()
    consistent(pairing)


@pytest.mark.parametrize("op", ["copy", "move"])
def test_copy_and_move_onto_an_existing_key(store, pairing, big, op):
    store.put(big(0), key="src")
    store.put(big(1), key="dst")
    transfer = getattr(store, op)
    with pytest.raises(EntryExistsError):
        transfer("src", "dst")
    assert store.get("dst") == big(1)
    transfer("src", "dst", overwrite=True)
    assert store.get("dst") == big(0)
    # consistent(): the replaced destination's blob is gone, nothing dangles.
    assert set(consistent(pairing)) == ({"src", "dst"} if op == "copy" else {"dst"})
    with pytest.raises(EntryNotFoundError):
        transfer("missing", "x")
    with pytest.raises(InvalidKeyError):
        transfer("dst", "")


def test_copy_of_an_inline_entry(store, pairing):
    store.put({"a": 1}, key="src")
    assert store.copy("src", "dst").is_inline
    assert store.get("dst") == {"a": 1}
    assert pairing.blob_refs() == set()


def test_move_renames_without_moving_bytes(store, pairing, big):
    store.put(big(), key="tmp/result", metadata={"v": 1})
    ref = store.get_metadata("tmp/result").blob_ref
    moved = store.move("tmp/result", "final/result")
    assert (moved.key, moved.blob_ref, moved.metadata) == ("final/result", ref, {"v": 1})
    assert not store.exists("tmp/result")
    assert store.get("final/result") == big()
    assert consistent(pairing) == {"final/result": ref}


# --------------------------------------------------------------------------- content addressing


def test_content_addressed_payloads_share_one_blob(pairing, big):
    store = pairing.open(content_addressable=True)
    store.put(big(0), key="a")
    store.put(big(0), key="b")
    entry = store.get_metadata("a")
    assert entry.blob_ref == store.get_metadata("b").blob_ref
    assert entry.blob_ref == store.blobs.ref_for(entry.content_hash)
    assert pairing.blob_refs() == {entry.blob_ref}
    assert store.delete("a") is True
    assert pairing.blob_refs() == {entry.blob_ref}  # b still uses it
    assert store.get("b") == big(0)
    assert store.delete("b") is True
    assert pairing.blob_refs() == set()


def test_content_addressed_updates_copies_and_moves_keep_shared_blobs(pairing, big):
    store = pairing.open(content_addressable=True)
    store.put(big(0), key="a")
    shared = store.get_metadata("a").blob_ref
    copied = store.copy("a", "b")
    assert copied.blob_ref == shared
    assert store.update_data("a", big(1)) is True  # a moves on; b keeps the shared blob
    assert store.get("b") == big(0)
    store.move("b", "c")
    store.put(big(1), key="d")  # same bytes as a: no new blob
    assert pairing.blob_refs() == {shared, store.get_metadata("a").blob_ref}
    assert store.delete_batch(["a", "d"]) == 2
    assert pairing.blob_refs() == {shared}
    assert store.get("c") == big(0)
    store.clear()
    assert pairing.blob_refs() == set()


def test_content_addressed_max_size_and_failures_leave_nothing(pairing, big):
    store = pairing.open(content_addressable=True)
    with pytest.raises(PayloadTooLargeError):
        store.put(big(), key="a", max_size=10)
    with pytest.raises(InvalidEntryError):
        store.put(big(), key="a", metadata={"bad": object()})
    assert consistent(pairing) == {}
    assert pairing.blob_refs() == set()


# --------------------------------------------------------------------------- lifecycle


def test_a_closed_store_refuses_work(pairing):
    with pairing.open() as store:
        store.put(1, key="k")
    with pytest.raises(StorageError, match="closed"):
        store.get("k")
    with pytest.raises(StorageError, match="closed"):
        store.put(1, key="k")
    store.close()  # twice is fine


def test_repr_names_the_backends(store, pairing):
    metadata, blobs = pairing.name.split("+")
    assert repr(store) == (
        f"BlobStore(metadata={metadata!r}, blobs={blobs!r}, content_addressable=False)"
    )


def test_backend_instances_passed_in_stay_open(tmp_path):
    from cacheness.storage import FilesystemBlobBackend, SqliteMetadataBackend

    index = SqliteMetadataBackend(tmp_path / "index.sqlite")
    blobs = FilesystemBlobBackend(tmp_path / "blobs")
    with BlobStore(metadata_backend=index, blob_backend=blobs) as store:
        store.put(1, key="k")
    assert index.get("k") is not None  # still usable: the caller owns it
    index.close()
