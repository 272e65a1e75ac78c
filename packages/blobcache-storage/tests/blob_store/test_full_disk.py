"""A store that filled its disk can free space through its own API.

Each test fills a real 20 MiB filesystem (a size-limited tmpfs, see ``small_filesystem``
in the root conftest) to the brim with blobs and then with small inline entries (which
grow the index itself), and checks that every way of deleting works there — also after
reopening the store on the full disk — and that the puts that failed for space left the
store consistent: no entry without its blob, no orphan blob, no temporary file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cacheness.storage import BlobStore, StorageFullError
from cacheness.storage.errors import MetadataError

INDEXES = ["sqlite", "json"]


def fill(store: BlobStore, prefix: str) -> list[str]:
    """Put blobs, then inline entries, until the disk refuses; return the keys stored."""
    keys: list[str] = []
    for size in (200_000, 20_000, 1_000):  # blobs, smaller blobs, then inline entries
        for n in range(100_000):
            key = f"{prefix}/{size}/{n:06d}"
            try:
                store.put(os.urandom(size), key=key, metadata={"group": prefix, "n": n})
            except StorageFullError as exc:
                message = str(exc)
                break
            keys.append(key)
        assert re.search(r"delete (more )?entries", message)
    assert_consistent(store)
    return keys


def assert_consistent(store: BlobStore) -> None:
    """Every entry's blob is there and whole; no blob or temporary file is left over."""
    assert store.verify_integrity(deep=False) == []
    assert store.find_orphaned_blobs(min_age_seconds=0) == []
    assert store.blobs.cleanup_temp_files(0, dry_run=True) == 0


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def open_store(root: Path, index: str) -> BlobStore:
    return BlobStore(root, metadata_backend=index)


@pytest.mark.parametrize("index", INDEXES)
def test_every_delete_works_on_a_full_disk_also_after_reopening(small_filesystem, index):
    root = small_filesystem / "store"
    store = open_store(root, index)
    keys = fill(store, "a")
    store.close()
    store = open_store(root, index)  # reopened on the full disk
    deletions = [
        ("delete", lambda: store.delete(keys[0]), True),
        ("delete_batch", lambda: store.delete_batch(keys[1:3]), 2),
        ("delete_where filter", lambda: store.delete_where({"key": keys[3]}), 1),
        ("delete_where predicate", lambda: store.delete_where(lambda e: e.key == keys[4]), 1),
        ("delete_by_prefix", lambda: store.delete_by_prefix(keys[5]), 1),
    ]
    for round_number, (name, delete, expected) in enumerate(deletions):
        fill(store, f"refill{round_number}")  # to the brim again before each deletion
        assert delete() == expected, name
        assert_consistent(store)
    fill(store, "last")
    assert store.clear() > 0
    assert store.count() == 0
    assert_consistent(store)
    assert free_bytes(small_filesystem) > 15 << 20
    store.put(os.urandom(10_000), key="after")  # the space is usable again
    reserve = root / f"index.{index}.reserve"
    assert reserve.exists()  # and the reserve for the next time is back
    store.close()


@pytest.mark.parametrize("index", INDEXES)
def test_a_large_deletion_on_a_full_disk_commits(small_filesystem, index):
    root = small_filesystem / "store"
    with open_store(root, index) as store:
        store.put_batch({f"small/{n}": n for n in range(3000)})  # inline: the index grows
        keys = fill(store, "big")
        assert store.delete_where({"key": {"$prefix": "small/"}}) == 3000
        assert store.count() == len(keys)
        assert_consistent(store)


def test_without_a_reserve_the_full_disk_error_is_typed_and_changes_nothing(small_filesystem):
    root = small_filesystem / "store"
    store = BlobStore(root, metadata_options={"reserve_mb": 0})
    keys = fill(store, "a")
    count = store.count()
    deleted = True
    try:
        store.delete(keys[0])
    except StorageFullError as exc:  # an honest refusal, never a half-done deletion
        deleted = not isinstance(exc, MetadataError)
    assert store.count() == (count - 1 if deleted else count)
    assert_consistent(store)
    store.close()
