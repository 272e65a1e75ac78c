"""verify_integrity, find_orphaned_blobs and repair on real damage done around the store.

The damage is done the way it happens: a blob file deleted or truncated by hand, a
flipped byte on disk, a stray file or temporary file left by a crash, an object
overwritten in the bucket by another tool.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from cacheness.storage.errors import IntegrityError, InvalidBlobNameError

HOUR = 3600.0


@pytest.fixture
def local(open_pairing):
    """A sqlite + filesystem pairing; ``local.root`` is its blob directory."""
    pairing = open_pairing("sqlite+filesystem")
    pairing.root = Path(pairing.options["path"]) / "blobs"
    return pairing


@pytest.fixture
def damaged(local, big):
    """A store with four blob entries and an inline one, nothing damaged yet."""
    store = local.open()
    for name in ("deleted", "truncated", "flipped", "healthy"):
        store.put(big(len(name)), key=name)
    store.put({"tiny": True}, key="inline")
    return store


def blob_file(local, store, key: str) -> Path:
    return local.root / store.get_metadata(key).blob_ref


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look ``seconds`` old."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def problems(issues) -> dict[str, str]:
    return {issue.key: issue.problem for issue in issues}


def test_a_healthy_store_reports_nothing(damaged):
    assert damaged.verify_integrity() == []
    assert damaged.verify_integrity(deep=False) == []
    assert damaged.find_orphaned_blobs(min_age_seconds=0) == []
    report = damaged.repair(dry_run=True, orphan_min_age_seconds=0)
    assert report.ok
    assert report.dry_run


def test_a_deleted_blob_file(local, damaged):
    path = blob_file(local, damaged, "deleted")
    path.unlink()
    for deep in (True, False):
        [issue] = damaged.verify_integrity(deep=deep)
        assert (issue.key, issue.problem) == ("deleted", "missing_blob")
        assert issue.blob_ref == damaged.get_metadata("deleted").blob_ref
    with pytest.raises(IntegrityError, match=r"missing; run BlobStore.repair\(\)"):
        damaged.get("deleted")


def test_a_truncated_blob_file(local, damaged, big):
    path = blob_file(local, damaged, "truncated")
    path.write_bytes(path.read_bytes()[:1000])
    assert problems(damaged.verify_integrity(deep=False)) == {"truncated": "size_mismatch"}
    assert problems(damaged.verify_integrity()) == {"truncated": "size_mismatch"}
    with pytest.raises(IntegrityError):
        damaged.get("truncated")
    assert damaged.get("healthy") == big(len("healthy"))


def test_a_flipped_byte(local, damaged, big):
    flip_byte(blob_file(local, damaged, "flipped"))
    # Same size, but the file changed after its hash was recorded: stat re-hashes it.
    assert problems(damaged.verify_integrity(deep=False)) == {"flipped": "hash_mismatch"}
    [issue] = damaged.verify_integrity()
    assert (issue.key, issue.problem) == ("flipped", "hash_mismatch")
    with pytest.raises(IntegrityError, match="corrupt"):
        damaged.get("flipped")
    with pytest.raises(IntegrityError):
        damaged.get_batch(["healthy", "flipped"])
    # verify_reads=False trusts the bytes: the damage comes back as data.
    trusting = local.open(verify_reads=False)
    value = trusting.get("flipped")
    assert value != big(len("flipped"))
    assert len(value) == len(big(len("flipped")))


def test_a_flipped_byte_in_memory_blobs(open_pairing, big):
    pairing = open_pairing("memory+memory")
    store = pairing.open()
    store.put(big(), key="k")
    ref = store.get_metadata("k").blob_ref
    damaged = bytearray(store.blobs.read_bytes(ref))
    damaged[5] ^= 1
    store.blobs.write_bytes(store.blobs.name_for(ref), bytes(damaged))
    assert problems(store.verify_integrity()) == {"k": "hash_mismatch"}
    with pytest.raises(IntegrityError):
        store.get("k")


def test_tampered_inline_bytes(local, damaged):
    conn = sqlite3.connect(Path(local.options["path"]) / "index.sqlite")
    with conn:
        conn.execute("UPDATE cacheness_entries SET inline = X'00010203' WHERE key = 'inline'")
    conn.close()
    assert problems(damaged.verify_integrity()) == {"inline": "inline_mismatch"}
    with pytest.raises(IntegrityError, match=r"inline bytes|signature does not match"):
        damaged.get("inline")


def test_verify_only_some_keys(local, damaged):
    blob_file(local, damaged, "deleted").unlink()
    assert damaged.verify_integrity(keys=["healthy", "missing-key"]) == []
    assert problems(damaged.verify_integrity(keys=["deleted"])) == {"deleted": "missing_blob"}


def test_a_stray_file_is_an_orphan_once_it_is_old(local, damaged):
    stray = local.root / "ab" / "abcdef0123456789"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"left by a crash between blob and entry")
    assert damaged.find_orphaned_blobs() == []  # young: could be a write in progress
    assert damaged.find_orphaned_blobs(min_age_seconds=0) == ["ab/abcdef0123456789"]
    age(stray, 2 * HOUR)
    assert damaged.find_orphaned_blobs() == ["ab/abcdef0123456789"]

    report = damaged.repair(dry_run=True)
    assert report.orphans_removed == ["ab/abcdef0123456789"]
    assert stray.exists()  # a dry run changes nothing
    report = damaged.repair(dry_run=False)
    assert report.orphans_removed == ["ab/abcdef0123456789"]
    assert not stray.exists()
    assert damaged.find_orphaned_blobs(min_age_seconds=0) == []


def test_temporary_files_of_crashed_writes_are_removed(local, damaged):
    debris = local.root / "ab" / ".cacheness-tmp-0123456789abcdef"
    debris.parent.mkdir(exist_ok=True)
    debris.write_bytes(b"half a blob")
    assert damaged.find_orphaned_blobs(min_age_seconds=0) == []  # not a blob
    assert damaged.repair(dry_run=False).temp_files_removed == 0  # young: may be in use
    assert debris.exists()
    age(debris, 2 * HOUR)
    assert damaged.repair(dry_run=True).temp_files_removed == 1  # what it would remove
    assert debris.exists()
    report = damaged.repair(dry_run=False)
    assert report.temp_files_removed == 1
    assert not debris.exists()


def test_repair_fixes_every_kind_of_damage_at_once(local, damaged, big):
    deleted = blob_file(local, damaged, "deleted")
    deleted.unlink()
    truncated = blob_file(local, damaged, "truncated")
    truncated.write_bytes(b"short")
    flipped = blob_file(local, damaged, "flipped")
    flip_byte(flipped)
    stray = local.root / "cd" / "cdef"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"orphan")

    dry = damaged.repair(dry_run=True, orphan_min_age_seconds=0)
    assert problems(dry.issues) == {
        "deleted": "missing_blob",
        "truncated": "size_mismatch",
        "flipped": "hash_mismatch",
    }
    assert sorted(dry.entries_removed) == ["deleted", "flipped", "truncated"]
    assert dry.orphans_removed == ["cd/cdef"]
    assert not dry.ok
    assert damaged.count() == 5
    assert truncated.exists()

    fixed = damaged.repair(dry_run=False, orphan_min_age_seconds=0)
    assert sorted(fixed.entries_removed) == ["deleted", "flipped", "truncated"]
    assert not fixed.dry_run
    assert sorted(local.index()) == ["healthy", "inline"]
    # The damaged entries' blobs went with them; the stray file too.
    assert not truncated.exists()
    assert not flipped.exists()
    assert not stray.exists()
    assert damaged.verify_integrity() == []
    assert damaged.find_orphaned_blobs(min_age_seconds=0) == []
    assert damaged.get("healthy") == big(len("healthy"))
    assert damaged.get("inline") == {"tiny": True}
    assert damaged.repair(dry_run=False, orphan_min_age_seconds=0).ok


def test_content_addressed_repair_keeps_shared_blobs(local, big):
    store = local.open(content_addressable=True)
    store.put(big(0), key="a")
    store.put(big(0), key="b")
    store.put(big(1), key="c")
    shared = store.get_metadata("a").blob_ref
    stray = local.root / store.blobs.ref_for("f" * 32)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"content nobody refers to")
    assert store.find_orphaned_blobs(min_age_seconds=0) == [store.blobs.ref_for("f" * 32)]
    (local.root / store.get_metadata("c").blob_ref).unlink()
    report = store.repair(dry_run=False, orphan_min_age_seconds=0)
    assert report.entries_removed == ["c"]
    assert local.blob_refs() == {shared}
    assert store.get("a") == store.get("b") == big(0)


def test_damage_done_in_the_bucket(open_pairing, big, s3_bucket):
    pairing = open_pairing("postgresql+s3")
    store = pairing.open()
    for key in ("gone", "overwritten", "fine"):
        store.put(big(len(key)), key=key)
    bucket, client = s3_bucket.name, s3_bucket.client()  # another tool, same bucket
    gone = store.get_metadata("gone").blob_ref
    overwritten = store.get_metadata("overwritten").blob_ref
    client.delete_object(Bucket=bucket, Key=gone)
    client.put_object(Bucket=bucket, Key=overwritten, Body=bytes(len(big(len("overwritten")))))
    client.put_object(Bucket=bucket, Key="ef/ef01", Body=b"stray")

    expected = {"gone": "missing_blob", "overwritten": "etag_mismatch"}
    assert problems(store.verify_integrity(deep=False)) == expected  # HEAD requests only
    assert problems(store.verify_integrity()) == expected
    with pytest.raises(IntegrityError):
        store.get("overwritten")
    with pytest.raises(IntegrityError):
        store.get("gone")
    assert store.find_orphaned_blobs(min_age_seconds=0) == ["ef/ef01"]
    report = store.repair(dry_run=False, orphan_min_age_seconds=0)
    assert sorted(report.entries_removed) == ["gone", "overwritten"]
    assert sorted(pairing.index()) == ["fine"]
    assert pairing.blob_refs() == {store.get_metadata("fine").blob_ref}
    assert store.get("fine") == big(len("fine"))


def test_an_index_pointing_outside_the_store_is_damage_not_a_path(open_pairing, big):
    store = open_pairing("memory+memory").open(signing=False)  # signing: test_signing.py
    store.put(big(), key="k")
    store.put(big(1), key="fine")
    store.metadata.update("k", blob_ref="../../etc/passwd")  # a hand-edited index
    # the error the docs name, with advice repair can follow
    with pytest.raises(InvalidBlobNameError, match="index was edited or damaged") as excinfo:
        store.get("k")
    assert "repair(dry_run=False) removes the entry" in str(excinfo.value)
    with pytest.raises(InvalidBlobNameError):
        store.read(store.get_metadata("k"))
    assert problems(store.verify_integrity()) == {"k": "invalid_ref"}
    assert problems(store.verify_integrity(deep=False)) == {"k": "invalid_ref"}
    report = store.repair(dry_run=False, orphan_min_age_seconds=0)
    assert report.entries_removed == ["k"]
    assert not store.exists("k")
    assert store.repair(dry_run=True, orphan_min_age_seconds=0).ok
    assert store.get("fine") == big(1)


@pytest.mark.parametrize("content_addressable", [False, True])
def test_repair_never_deletes_a_blob_a_healthy_entry_uses(open_pairing, big, content_addressable):
    """An edited index points a damaged entry at a healthy entry's blob: repair removes
    the damaged entry and keeps the blob the healthy one still needs."""
    store = open_pairing("memory+memory").open(
        content_addressable=content_addressable, signing=False
    )  # with signing on the edited entry is refused before its bytes: test_signing.py
    store.put(big(1), key="healthy")
    store.put(big(2), key="edited")
    healthy = store.get_metadata("healthy")
    store.metadata.update("edited", blob_ref=healthy.blob_ref)  # the other entry's blob
    with pytest.raises(IntegrityError, match="corrupt"):
        store.get("edited")  # the bytes are not the ones its hash records
    assert problems(store.verify_integrity()) == {"edited": "hash_mismatch"}
    report = store.repair(dry_run=False, orphan_min_age_seconds=0)
    assert report.entries_removed == ["edited"]
    assert store.blobs.exists(healthy.blob_ref)
    assert store.get("healthy") == big(1)
    assert store.verify_integrity() == []


def test_delete_by_prefix_refuses_the_empty_prefix(open_pairing):
    store = open_pairing("memory+memory").open()
    store.put(1, key="a")
    with pytest.raises(ValueError, match="clear"):
        store.delete_by_prefix("")
    assert store.exists("a")


@pytest.mark.parametrize("where", [{}, None])
def test_delete_where_refuses_an_empty_filter(open_pairing, where):
    store = open_pairing("memory+memory").open()
    store.put(1, key="a")
    with pytest.raises(ValueError, match=r"call clear\(\)"):
        store.delete_where(where)
    assert store.exists("a")


def test_a_refused_temp_file_cleanup_does_not_undo_the_repair(tmp_path, caplog):
    from cacheness.storage import BlobStore, MemoryBlobBackend
    from cacheness.storage.errors import StorageError

    class NoCleanupAllowed(MemoryBlobBackend):
        """Fault injection: a backend whose clean-up is refused (a bucket policy)."""

        def cleanup_temp_files(self, older_than=3600.0, *, dry_run=False):
            raise StorageError("AccessDenied: s3:ListBucketMultipartUploads (injected)")

    blobs = NoCleanupAllowed()
    store = BlobStore(tmp_path, blob_backend=blobs, inline_threshold=0)
    store.put(b"kept" * 100, key="kept")
    orphan = blobs.write_bytes("orphan", b"stray").ref
    for dry_run in (True, False):
        report = store.repair(dry_run=dry_run, orphan_min_age_seconds=0)
        assert (report.orphans_removed, report.temp_files_removed) == ([orphan], 0)
    assert "could not clean up interrupted writes" in caplog.text
    assert store.find_orphaned_blobs(min_age_seconds=0) == []
    assert store.get("kept") == b"kept" * 100
    store.close()


@pytest.mark.parametrize("whole", [True, False], ids=["read-once", "two-passes"])
def test_verified_local_reads_in_memory_or_in_two_passes(local, big, monkeypatch, whole):
    """A verified local blob is read into memory once when small enough, else hashed in a
    first pass and streamed in a second: both return the value and refuse damage."""
    import cacheness.storage._blob_store as blob_store

    if not whole:
        monkeypatch.setattr(blob_store, "_WHOLE_READ_LIMIT", 0)
    np = pytest.importorskip("numpy")
    store = local.open()
    array = np.random.default_rng(0).random((600, 500))  # incompressible: a blob
    store.put(array, key="array")
    store.put(big(), key="bytes")
    assert store.get_metadata("array").blob_ref
    back = store.get("array")
    assert back.dtype == array.dtype
    assert np.array_equal(back, array)
    assert back.flags.writeable
    assert store.get("bytes") == big()
    for change in ("flip", "append"):
        path = blob_file(local, store, "array")
        original = path.read_bytes()
        if change == "flip":
            flip_byte(path, len(original) // 2)
        else:
            path.write_bytes(original + b"\0")
        with pytest.raises(IntegrityError, match="does not match its recorded hash"):
            store.get("array")
        path.write_bytes(original)
    assert np.array_equal(store.get("array"), array)
