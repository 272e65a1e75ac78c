"""Readers racing writers never see damage that is not there (deterministic races).

A reader takes an entry from the index, then opens its blob; a writer may replace or
delete the key, and release the old blob, in between. Each test here injects that race
at the exact point - a blob backend whose ``open_read`` / ``copy`` runs a writer's
operation first (fault injection: the one place a test double is used) - so it fails
on code that reports the missing blob as damage, every time. The stress tests with real
threads and processes are in ``test_read_stress.py``.

Expected, as ``docs/blob-store.md`` promises: the old value, the new value or a miss;
``read(entry)`` of an entry that is no longer current raises ``StaleEntryError``; only a
blob missing under an entry that is still current is ``IntegrityError``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import (
    BlobStore,
    FilesystemBlobBackend,
    MemoryBlobBackend,
    MemoryMetadataBackend,
    PostgresMetadataBackend,
    S3BlobBackend,
    SqliteMetadataBackend,
    TieredBlobBackend,
)
from cacheness.storage.errors import (
    BlobNotFoundError,
    EntryNotFoundError,
    IntegrityError,
    StaleEntryError,
)

Hook = Callable[[str], None]


class Hooks:
    """Fault injection mixed into a real blob backend: one-shot hooks at the race points.

    ``before_open`` runs between the index read and the blob open, ``after_open`` after
    the blob is open (before the handler decodes it, e.g. memory-maps its path),
    ``on_missing`` after an open found the blob missing (before the store re-reads the
    index), ``before_copy`` before a blob copy. Each hook runs once, in the order given.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_open: list[Hook] = []
        self.after_open: list[Hook] = []
        self.on_missing: list[Hook] = []
        self.before_copy: list[Hook] = []
        self.opens = 0
        self.last_stream: Any = None

    @staticmethod
    def _run(hooks: list[Hook], ref: str) -> None:
        if hooks:
            hooks.pop(0)(ref)

    def open_read(self, ref: str):  # type: ignore[no-untyped-def]
        self.opens += 1
        self._run(self.before_open, ref)
        try:
            stream = super().open_read(ref)  # type: ignore[misc]
        except BlobNotFoundError:
            self._run(self.on_missing, ref)
            raise
        self.last_stream = stream
        self._run(self.after_open, ref)
        return stream

    def copy(self, ref: str, new_name: str):  # type: ignore[no-untyped-def]
        self._run(self.before_copy, ref)
        return super().copy(ref, new_name)  # type: ignore[misc]


class HookedMemory(Hooks, MemoryBlobBackend):
    pass


class HookedFilesystem(Hooks, FilesystemBlobBackend):
    pass


class HookedS3(Hooks, S3BlobBackend):
    pass


class HookedTiered(Hooks, TieredBlobBackend):
    pass


def value(seed: int) -> bytes:
    """Incompressible bytes: a blob (the stores below inline nothing)."""
    return random.Random(seed).randbytes(120_000)


KINDS = ["memory", "filesystem", "content-addressed", "tiered", "postgresql+s3"]
COPYING = [kind for kind in KINDS if kind != "content-addressed"]
"""Stores whose ``copy`` copies the blob (a content-addressed copy shares it, in one
index operation that cannot race)."""


@pytest.fixture
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], BlobStore]]:
    """``open_store(kind)``: a store over a hooked blob backend of that kind."""
    opened: list[BlobStore] = []

    def open_one(kind: str, **extra: Any) -> BlobStore:
        options: dict[str, Any] = {"inline_threshold": 0, **extra}
        if kind == "memory":
            options.update(metadata_backend=MemoryMetadataBackend(), blob_backend=HookedMemory())
        elif kind in ("filesystem", "content-addressed"):
            options.update(
                metadata_backend=SqliteMetadataBackend(tmp_path / "index.sqlite"),
                blob_backend=HookedFilesystem(tmp_path / "blobs"),
                content_addressable=kind == "content-addressed",
            )
        elif kind == "tiered":
            blobs = HookedTiered(MemoryBlobBackend(shard_chars=2), tmp_path / "tiered")
            options.update(metadata_backend=MemoryMetadataBackend(), blob_backend=blobs)
        else:
            bucket = request.getfixturevalue("s3_bucket")
            url = request.getfixturevalue("fresh_postgres_url")
            blobs = HookedS3(bucket.name, **bucket.endpoint.client_options())
            options.update(metadata_backend=PostgresMetadataBackend(url), blob_backend=blobs)
        store = BlobStore(**options)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
        store.metadata.close()
        store.blobs.close()


def hooks(store: BlobStore) -> Hooks:
    assert isinstance(store.blobs, Hooks)
    return store.blobs


READS: dict[str, Callable[[BlobStore, str], Any]] = {
    "get": lambda store, key: store.get(key, default="MISS"),
    "get_with_metadata": lambda store, key: (store.get_with_metadata(key) or ("MISS",))[0],
    "get_batch": lambda store, key: store.get_batch([key], default="MISS")[key],
    "lookup": lambda store, key: (
        found.value if (found := store.lookup(key, with_metadata=True)) else "MISS"
    ),
    "read_current": lambda store, key: (
        found.value if (found := store.read_current(store.get_metadata(key))) else "MISS"
    ),
}


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_key_replaced_between_index_and_blob_reads_the_new_value(open_store, kind, read):
    store = open_store(kind)
    store.put(value(1), key="k")
    hooks(store).before_open.append(lambda ref: store.put(value(2), key="k"))
    assert READS[read](store, "k") == value(2)
    assert store.verify_integrity() == []


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_key_deleted_between_index_and_blob_is_a_miss(open_store, kind, read):
    store = open_store(kind)
    store.put(value(1), key="k")
    hooks(store).before_open.append(lambda ref: store.delete("k"))
    assert READS[read](store, "k") == "MISS"


@pytest.mark.parametrize("kind", KINDS)
def test_the_entry_returned_is_the_one_the_value_was_read_from(open_store, kind):
    store = open_store(kind)
    store.put(value(1), key="k", metadata={"version": 1})
    hooks(store).before_open.append(
        lambda ref: store.put(value(2), key="k", metadata={"version": 2})
    )
    read, entry = store.get_with_metadata("k")
    assert (read, entry.metadata) == (value(2), {"version": 2})
    hooks(store).before_open.append(
        lambda ref: store.put(value(3), key="k", metadata={"version": 3})
    )
    found = store.lookup("k", with_metadata=True)
    assert (found.value, found.entry.metadata, found.loaded) == (value(3), {"version": 3}, True)


@pytest.mark.parametrize("kind", KINDS)
def test_read_of_an_entry_that_is_no_longer_current_is_stale_not_damaged(open_store, kind):
    store = open_store(kind)
    store.put(value(1), key="k")
    old = store.get_metadata("k")
    store.put(value(2), key="k")  # the old blob is released
    with pytest.raises(StaleEntryError, match="replaced or deleted after it was read") as excinfo:
        store.read(old)
    assert isinstance(excinfo.value, EntryNotFoundError | KeyError)
    assert store.read(store.get_metadata("k")) == value(2)
    payload = store.metadata.get_payload("k")
    store.delete("k")
    with pytest.raises(StaleEntryError):
        store.read(payload)
    assert store.read_current(payload) is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_blob_missing_under_the_current_entry_is_still_damage(open_store, kind):
    store = open_store(kind)
    store.put(value(1), key="k")
    entry = store.get_metadata("k")
    hooks(store).before_open.append(lambda ref: store.blobs.delete(ref))
    with pytest.raises(IntegrityError, match=r"missing; run BlobStore\.repair\(\)"):
        store.get("k")
    with pytest.raises(IntegrityError, match="missing"):
        store.read(entry)
    with pytest.raises(IntegrityError, match="missing"):
        store.lookup("k")
    assert [issue.problem for issue in store.verify_integrity()] == ["missing_blob"]
    assert store.repair(dry_run=False).entries_removed == ["k"]


@pytest.mark.parametrize("kind", COPYING)
def test_copy_of_a_source_replaced_mid_copy_copies_a_consistent_entry(open_store, kind):
    store = open_store(kind)
    store.put(value(1), key="src", metadata={"version": 1})
    hooks(store).before_copy.append(
        lambda ref: store.put(value(2), key="src", metadata={"version": 2})
    )
    copied = store.copy("src", "dst")
    assert store.get("dst") == value(2)
    assert copied.metadata == {"version": 2}
    assert store.get_metadata("dst").content_hash == store.get_metadata("src").content_hash
    assert store.verify_integrity() == []


@pytest.mark.parametrize("kind", COPYING)
def test_copy_of_a_source_deleted_mid_copy_is_not_found(open_store, kind):
    store = open_store(kind)
    store.put(value(1), key="src")
    hooks(store).before_copy.append(lambda ref: store.delete("src"))
    with pytest.raises(EntryNotFoundError, match="src"):
        store.copy("src", "dst")
    assert not store.exists("dst")
    assert store.find_orphaned_blobs(min_age_seconds=0) == []


def test_copy_takes_the_source_as_it_was_when_its_bytes_were_copied(open_store):
    """The source is rewritten after its blob was copied but before the index copy: the
    new entry still describes the copied bytes (the old value), never a mix."""
    store = open_store("memory")
    store.put(value(1), key="src", metadata={"version": 1})
    original = store.blobs.copy

    def copy_then_rewrite(ref: str, new_name: str):  # type: ignore[no-untyped-def]
        info = original(ref, new_name)
        store.put(value(2), key="src", metadata={"version": 2})
        return info

    store.blobs.copy = copy_then_rewrite  # type: ignore[method-assign]
    store.copy("src", "dst")
    assert store.get("dst") == value(1)
    assert store.get_metadata("dst").metadata == {"version": 1}
    assert store.verify_integrity() == []


def test_a_content_addressed_blob_released_by_another_entrys_delete(open_store):
    store = open_store("content-addressed")
    store.put(value(1), key="a")
    store.put(value(1), key="b")  # shares a's blob

    def rewrite_a_and_delete_b(ref: str) -> None:
        store.put(value(2), key="a")  # b still holds the shared blob
        store.delete("b")  # ... not any more: it is deleted

    hooks(store).before_open.append(rewrite_a_and_delete_b)
    assert store.get("a") == value(2)
    assert store.verify_integrity() == []


def test_a_content_addressed_blob_released_and_written_again(open_store):
    """The shared blob is gone when the reader opens it, and back (same bytes, same
    entry) when it re-reads the index: the read succeeds instead of reporting damage."""
    store = open_store("content-addressed")
    store.put(value(1), key="a")
    store.put(value(1), key="b")

    def release(ref: str) -> None:
        store.put(value(2), key="a")
        store.delete("b")

    hooks(store).before_open.append(release)
    hooks(store).on_missing.append(lambda ref: store.put(value(1), key="a"))
    assert store.get("a") == value(1)
    assert hooks(store).opens == 2


def test_an_s3_object_deleted_in_the_middle_of_a_stream(open_store):
    """NoSuchKey from the ranged GET a reader sends after a seek, once the object is gone."""
    store = open_store("postgresql+s3")
    store.put(value(1), key="k")

    def replace_and_reconnect(ref: str) -> None:
        store.put(value(2), key="k")  # deletes the object being read
        stream = hooks(store).last_stream
        stream.seek(1)  # the reader drops its response: the next read is a ranged GET
        stream.seek(0)

    hooks(store).after_open.append(replace_and_reconnect)
    assert store.get("k") == value(2)
    assert hooks(store).opens == 2


@pytest.mark.parametrize("replaced", [False, True], ids=["evicted", "evicted-and-replaced"])
def test_a_tiered_local_copy_evicted_while_a_frame_is_memory_mapped(open_store, replaced):
    """pandas frames load by memory-mapping the local copy's path: the copy is evicted
    after the blob was opened and hashed, before the handler maps it."""
    pd = pytest.importorskip("pandas")
    store = open_store("tiered", serialization={"codec": "zstd"})  # memory-mapped IPC
    frame = pd.DataFrame({"x": range(5_000), "y": [float(i) for i in range(5_000)]})
    other = frame * 2
    store.put(frame, key="k")

    def evict(ref: str) -> None:
        if replaced:
            store.put(other, key="k")
        store.blobs.clear_cache()  # type: ignore[attr-defined]

    hooks(store).after_open.append(evict)
    pd.testing.assert_frame_equal(store.get("k"), other if replaced else frame)
    assert hooks(store).opens == 2  # the memory map failed; the store read again
    assert store.verify_integrity() == []


@pytest.mark.parametrize("kind", ["filesystem", "content-addressed"])
def test_a_memory_mapped_blob_deleted_before_the_handler_maps_it(open_store, kind):
    pd = pytest.importorskip("pandas")
    store = open_store(kind, serialization={"codec": "zstd"})  # memory-mapped IPC
    frame = pd.DataFrame({"x": range(5_000)})
    store.put(frame, key="k")
    hooks(store).after_open.append(lambda ref: store.put(frame + 1, key="k"))
    pd.testing.assert_frame_equal(store.get("k"), frame + 1)
    assert hooks(store).opens == 2  # the memory map failed; the store read the new entry
