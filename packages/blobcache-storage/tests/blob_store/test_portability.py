"""Export, import and migrate: round trips across backends, tampered archives, resumption.

Ground truth is read around the stores (the archive's tar members, the pairings' blob
objects and index rows); mocks appear only to inject a fault.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cacheness.storage import (
    BlobStore,
    Entry,
    EntryExistsError,
    FormatVersionError,
    IntegrityError,
    TransferProgress,
    hash_bytes,
    migrate,
)

# Fields that say where bytes are in one particular backend: not carried between stores.
# The signature covers blob_ref: an importing store signs the entry again for its place.
PLACEMENT = ("blob_ref", "etag", "version_id", "signature")


def fill(store: BlobStore, big: Any) -> dict[str, Any]:
    """A mix of blob, inline, metadata-rich and untouched entries; returns key -> value."""
    values: dict[str, Any] = {
        "runs/1/weights": big(1),
        "runs/1/config": {"lr": 0.01, "layers": [64, 64]},
        "runs/2/weights": big(2, 150_000),
        "shared/readme": "hello",
        "empty": b"",
    }
    for key, value in values.items():
        store.put(value, key=key, metadata={"project": key.split("/")[0], "n": len(key)})
    store.record_access({"runs/1/config": 3})
    return values


def fields(entry: Entry) -> dict[str, Any]:
    return {k: v for k, v in entry.to_dict().items() if k not in PLACEMENT}


def same_entries(source: BlobStore, target: BlobStore, keys: Any = None) -> None:
    wanted = sorted(keys) if keys is not None else [e.key for e in source.list_entries()]
    assert [e.key for e in target.list_entries()] == wanted
    for key in wanted:
        a, b = source.get_metadata(key), target.get_metadata(key)
        assert a is not None
        assert b is not None
        assert fields(a) == fields(b)
        assert bool(a.blob_ref) == bool(b.blob_ref)
        if target.signer is not None:
            assert target.signer.check(b) == "valid"


def stored_bytes(store: BlobStore, key: str) -> bytes:
    entry = store.get_metadata(key)
    assert entry is not None
    if entry.inline is not None:
        return entry.inline
    return store.blobs.read_bytes(entry.blob_ref)


@pytest.mark.parametrize("compression", ["zstd", "gzip", None])
def test_round_trip_sqlite_files_to_postgres_s3_and_back(
    signing_key_env, open_pairing, big, tmp_path, compression
):  # one signing key for the laptop and the team (set before the laptop store opens)
    laptop = open_pairing("sqlite+filesystem").open()
    values = fill(laptop, big)
    archive = tmp_path / "backup.tar"
    report = laptop.export(archive, compression=compression)
    assert (report.entries, report.ok) == (len(values), True)
    assert report.bytes == laptop.total_size()

    team_pairing = open_pairing("postgresql+s3")
    team = team_pairing.open()
    imported = team.import_(archive)
    assert (imported.entries, imported.bytes, imported.skipped, imported.damaged) == (
        len(values), report.bytes, [], []
    )  # fmt: skip
    same_entries(laptop, team)
    for key, value in values.items():
        assert stored_bytes(team, key) == stored_bytes(laptop, key)
        assert team.get(key) == value
    # the blobs are really in the bucket (read with boto3, not through the store)
    blob_keys = [e.key for e in team.list_entries() if e.blob_ref]
    assert {team.get_metadata(k).blob_ref for k in blob_keys} <= team_pairing.blob_refs()

    back_archive = tmp_path / "back.tar"
    team.export(back_archive, compression=compression)
    home = open_pairing("sqlite+filesystem").open()
    assert home.import_(back_archive).entries == len(values)
    same_entries(laptop, home)
    for key in values:
        assert stored_bytes(home, key) == stored_bytes(laptop, key)
    assert home.verify_integrity() == []


def read_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_the_archive_is_a_tar_with_the_manifest_first(big, tmp_path):
    store = BlobStore(tmp_path / "s")
    fill(store, big)
    store.export(tmp_path / "a.tar.zst")
    assert (tmp_path / "a.tar.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd
    store.export(tmp_path / "a.tar", compression=None)
    members = read_members(tmp_path / "a.tar")
    names = list(members)
    assert names[0] == "manifest.json"
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "cacheness-archive"
    assert manifest["format_version"] == 2
    assert manifest["packages"]["blobcache-storage"]
    items = {item["entry"]["key"]: item for item in manifest["entries"]}
    assert set(items) == {e.key for e in store.list_entries()}
    for key, item in items.items():
        entry = store.get_metadata(key)
        assert item["entry"]["content_hash"] == entry.content_hash
        assert item["entry"]["metadata"] == entry.metadata
        assert item["entry"]["access_count"] == entry.access_count
        if entry.blob_ref:
            assert hash_bytes(members[item["member"]]) == entry.content_hash
        else:
            assert item["member"] is None
    assert sorted(names[1:]) == sorted(i["member"] for i in items.values() if i["member"])


def test_filtered_export_and_filtered_import(big, tmp_path):
    store = BlobStore(tmp_path / "s")
    fill(store, big)
    report = store.export(tmp_path / "runs.tar", filter={"key": {"$prefix": "runs/"}})
    assert report.entries == 3
    target = BlobStore(tmp_path / "t")
    assert target.import_(tmp_path / "runs.tar").entries == 3
    assert [e.key for e in target.list_entries()] == [
        "runs/1/config",
        "runs/1/weights",
        "runs/2/weights",
    ]

    store.export(tmp_path / "all.tar")
    only = BlobStore(tmp_path / "u")
    report = only.import_(tmp_path / "all.tar", filter={"metadata.project": "shared"})
    assert (report.entries, report.damaged) == (1, [])
    assert [e.key for e in only.list_entries()] == ["shared/readme"]
    by_size = BlobStore(tmp_path / "v")
    by_size.import_(tmp_path / "all.tar", filter={"size": {"$gt": 10_000}})
    assert [e.key for e in by_size.list_entries()] == ["runs/1/weights", "runs/2/weights"]


def test_dict_round_trip(big):
    store = BlobStore(metadata_backend="memory", blob_backend="memory")
    values = fill(store, big)
    data = store.export_to_dict()
    assert data["format_version"] == 2
    assert set(data["blobs"]) == {i["member"] for i in data["entries"] if i["member"]}
    target = BlobStore(metadata_backend="memory", blob_backend="memory")
    assert target.import_from_dict(data).entries == len(values)
    same_entries(store, target)
    filtered = store.export_to_dict(filter={"metadata.project": "runs"})
    assert len(filtered["entries"]) == 3


def test_import_into_a_content_addressed_store(big, tmp_path):
    store = BlobStore(tmp_path / "s")
    values = fill(store, big)
    store.put(big(1), key="copy-of-weights")
    store.export(tmp_path / "a.tar")
    target = BlobStore(tmp_path / "t", content_addressable=True)
    assert target.import_(tmp_path / "a.tar").entries == len(values) + 1
    assert target.get("copy-of-weights") == big(1)
    refs = {e.blob_ref for e in target.list_entries() if e.blob_ref}
    assert len(refs) == 2  # the two identical payloads share one blob
    assert target.verify_integrity() == []


# ------------------------------------------------------------------------------ conflicts


def test_on_conflict_skip_overwrite_error(big, tmp_path):
    store = BlobStore(tmp_path / "s")
    fill(store, big)
    store.export(tmp_path / "a.tar")
    target = BlobStore(tmp_path / "t")
    target.put("mine", key="shared/readme")
    target.put("kept", key="other")

    with pytest.raises(EntryExistsError, match="shared/readme"):
        target.import_(tmp_path / "a.tar", on_conflict="error")
    assert [e.key for e in target.list_entries()] == ["other", "shared/readme"]  # nothing imported

    report = target.import_(tmp_path / "a.tar")  # skip
    assert [(i.key, i.problem) for i in report.skipped] == [("shared/readme", "conflict")]
    assert target.get("shared/readme") == "mine"

    report = target.import_(tmp_path / "a.tar", on_conflict="overwrite")
    assert target.get("shared/readme") == "hello"
    assert target.get("other") == "kept"
    assert target.find_orphaned_blobs(min_age_seconds=0) == []


# ------------------------------------------------------------------------------ tampering


def rewrite(archive: Path, out: Path, change: Any) -> None:
    """Copy a plain tar archive member by member through ``change(info, data)``.

    ``change`` returns ``[(info, data), ...]`` to write in place of the member.
    """
    with (
        tarfile.open(archive, "r:") as src,
        tarfile.open(out, "w:", format=tarfile.PAX_FORMAT) as dst,
    ):
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isreg() else b""  # type: ignore[union-attr]
            for new_info, new_data in change(info, data):
                if new_info.isreg():
                    new_info.size = len(new_data)
                    dst.addfile(new_info, io.BytesIO(new_data))
                else:
                    dst.addfile(new_info)


@pytest.fixture
def exported(big, tmp_path):
    store = BlobStore(tmp_path / "source")
    values = fill(store, big)
    archive = tmp_path / "plain.tar"
    store.export(archive, compression=None)
    manifest = json.loads(read_members(archive)["manifest.json"])
    members = {i["entry"]["key"]: i["member"] for i in manifest["entries"]}
    return store, values, archive, members


def imported_from(path: Path, tmp_path: Path, **options: Any) -> tuple[BlobStore, Any]:
    target = BlobStore(tmp_path / f"target-{path.stem}")
    report = target.import_(path, **options)
    # nothing of a refused member stays behind: no orphan blob, no temporary file
    assert target.find_orphaned_blobs(min_age_seconds=0) == []
    assert target.collect_garbage(dry_run=True, min_age_seconds=0).temp_files_removed == 0
    return target, report


def test_a_flipped_byte_is_refused(exported, tmp_path):
    _store, values, archive, members = exported
    bad = members["runs/1/weights"]

    def flip(info, data):
        if info.name == bad:
            data = bytes([data[0] ^ 1]) + data[1:]
        return [(info, data)]

    rewrite(archive, tmp_path / "flipped.tar", flip)
    target, report = imported_from(tmp_path / "flipped.tar", tmp_path)
    assert [(i.key, i.problem) for i in report.damaged] == [("runs/1/weights", "damaged")]
    assert not target.exists("runs/1/weights")
    assert report.entries == len(values) - 1
    assert target.get("runs/2/weights") == values["runs/2/weights"]


def test_swapped_members_are_refused(exported, tmp_path, big):
    store, values, _archive, members = exported
    one, two = members["runs/1/weights"], members["runs/2/weights"]
    store.put(big(9), key="runs/3/weights")  # same size as runs/1: a swap keeps sizes
    store.export(tmp_path / "three.tar", compression=None)
    manifest = json.loads(read_members(tmp_path / "three.tar")["manifest.json"])
    members = {i["entry"]["key"]: i["member"] for i in manifest["entries"]}
    one, three = members["runs/1/weights"], members["runs/3/weights"]
    del two

    def swap(info, data):
        if info.name in (one, three):
            info.name = three if info.name == one else one
        return [(info, data)]

    rewrite(tmp_path / "three.tar", tmp_path / "swapped.tar", swap)
    target, report = imported_from(tmp_path / "swapped.tar", tmp_path)
    assert sorted((i.key, i.problem) for i in report.damaged) == [
        ("runs/1/weights", "damaged"),
        ("runs/3/weights", "damaged"),
    ]
    assert not target.exists("runs/1/weights")
    assert not target.exists("runs/3/weights")
    assert target.get("runs/2/weights") == values["runs/2/weights"]


def test_path_escapes_and_links_are_refused(exported, tmp_path):
    _store, values, archive, members = exported
    victim = tmp_path / "victim.txt"

    def escape(info, data):
        out = [(info, data)]
        if info.name == members["runs/2/weights"]:
            evil = tarfile.TarInfo("../../victim.txt")
            link = tarfile.TarInfo("blobs/99999999")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            out += [(evil, b"owned"), (link, b"")]
        return out

    rewrite(archive, tmp_path / "escape.tar", escape)
    target, report = imported_from(tmp_path / "escape.tar", tmp_path)
    assert sorted((i.member, i.problem) for i in report.damaged) == [
        ("../../victim.txt", "unsafe_name"),
        ("blobs/99999999", "unsafe_name"),
    ]
    assert not victim.exists()
    assert report.entries == len(values)  # the honest members all came in

    # a manifest naming an escaping member for an entry: that entry is refused
    def rename(info, data):
        if info.name == "manifest.json":
            manifest = json.loads(data)
            for item in manifest["entries"]:
                if item["member"] == members["runs/1/weights"]:
                    item["member"] = "../outside"
            data = json.dumps(manifest).encode()
        elif info.name == members["runs/1/weights"]:
            info.name = "../outside"
        return [(info, data)]

    rewrite(archive, tmp_path / "renamed.tar", rename)
    target, report = imported_from(tmp_path / "renamed.tar", tmp_path)
    assert ("runs/1/weights", "unsafe_name") in [(i.key, i.problem) for i in report.damaged]
    assert not target.exists("runs/1/weights")


def test_an_oversized_member_is_refused_without_reading_it_whole(exported, tmp_path):
    _store, values, archive, members = exported

    def grow(info, data):
        if info.name == members["runs/1/weights"]:
            data = data + os.urandom(1 << 20)
        return [(info, data)]

    rewrite(archive, tmp_path / "big.tar", grow)
    target, report = imported_from(tmp_path / "big.tar", tmp_path)
    assert [(i.key, i.problem) for i in report.damaged] == [("runs/1/weights", "oversized")]
    assert not target.exists("runs/1/weights")
    assert report.entries == len(values) - 1


def test_a_missing_member_and_a_bad_manifest_entry_are_reported(exported, tmp_path):
    _store, values, archive, members = exported

    def drop(info, data):
        if info.name == members["runs/2/weights"]:
            return []
        if info.name == "manifest.json":
            manifest = json.loads(data)
            manifest["entries"].append({"entry": {"key": "", "size": "x"}, "member": None})
            data = json.dumps(manifest).encode()
        return [(info, data)]

    rewrite(archive, tmp_path / "dropped.tar", drop)
    _target, report = imported_from(tmp_path / "dropped.tar", tmp_path)
    assert sorted(i.problem for i in report.damaged) == ["invalid_entry", "missing"]
    assert report.entries == len(values) - 1


def forge(archive: Path, out: Path, key: str, payload: bytes, member: str) -> None:
    """Replace ``key``'s bytes by ``payload`` and make its manifest entry agree."""

    def change(info, data):
        if info.name == "manifest.json":
            manifest = json.loads(data)
            for item in manifest["entries"]:
                if item["entry"]["key"] == key:
                    item["entry"].update(
                        handler="objects", format="pickle5", codec="none",
                        size=len(payload), raw_size=len(payload),
                        content_hash=hash_bytes(payload), inline=None,
                    )  # fmt: skip
                    item["member"] = member
            data = json.dumps(manifest).encode()
        elif info.name == member:
            data = payload
        return [(info, data)]

    rewrite(archive, out, change)


def test_a_forged_pickle_is_refused_unless_trusted(exported, tmp_path):
    _store, values, archive, members = exported
    import pickle

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    forge(archive, tmp_path / "forged.tar", "runs/1/weights", payload, members["runs/1/weights"])
    target, report = imported_from(tmp_path / "forged.tar", tmp_path)
    assert [(i.key, i.problem) for i in report.damaged] == [("runs/1/weights", "refused")]
    assert "signature" in report.damaged[0].detail  # altered: its signature fails
    assert not target.exists("runs/1/weights")
    assert report.entries == len(values) - 1
    assert not marker.exists()


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.path),))


def test_pickled_entries_come_in_when_the_archive_is_trusted(tmp_path):
    store = BlobStore(tmp_path / "s")
    store.put(complex(1, 2), key="c")
    store.put(Fraction(1, 3), key="f")
    store.export(tmp_path / "a.tar")
    signed = BlobStore(tmp_path / "t")  # the same key: the signatures vouch for the pickles
    assert signed.import_(tmp_path / "a.tar").entries == 2
    assert (signed.get("c"), signed.get("f")) == (complex(1, 2), Fraction(1, 3))
    assert signed.signer.check(signed.get_metadata("f")) == "valid"  # signed for its place

    unsigned = store.export_to_dict()
    for item in unsigned["entries"]:
        item["entry"]["signature"] = None  # e.g. written by a store without signing
    target = BlobStore(tmp_path / "u")
    report = target.import_from_dict(unsigned)
    assert sorted(i.problem for i in report.damaged) == ["refused", "refused"]
    assert "trust_pickles" in report.damaged[0].detail
    assert target.import_from_dict(unsigned, trust_pickles=True).entries == 2
    assert target.signer.check(target.get_metadata("c")) == "valid"
    assert target.get("c") == complex(1, 2)

    other_key = BlobStore(tmp_path / "v", signing_key="11" * 32)
    report = other_key.import_(tmp_path / "a.tar")
    assert [i.problem for i in report.damaged] == ["refused", "refused"]
    assert "key this store lacks" in report.damaged[0].detail


def test_newer_format_versions_and_foreign_files_are_refused(exported, tmp_path):
    _store, _values, archive, _members = exported

    def newer(info, data):
        if info.name == "manifest.json":
            manifest = json.loads(data)
            manifest["format_version"] = 99
            manifest["entries"] = "a shape this release cannot read"
            data = json.dumps(manifest).encode()
        return [(info, data)]

    rewrite(archive, tmp_path / "newer.tar", newer)
    target = BlobStore(tmp_path / "t")
    with pytest.raises(FormatVersionError, match="upgrade") as caught:
        target.import_(tmp_path / "newer.tar")
    assert (caught.value.found, caught.value.supported) == (99, 2)
    (tmp_path / "junk").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(IntegrityError, match="not a"):
        target.import_(tmp_path / "junk")
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        tar.add(tmp_path / "junk", arcname="readme.txt")
    with pytest.raises(IntegrityError, match=r"manifest\.json"):
        target.import_(tmp_path / "other.tar")
    assert target.count() == 0


def test_a_truncated_archive_keeps_the_complete_entries(exported, tmp_path):
    _store, _values, archive, _members = exported
    data = archive.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) * 2 // 3])
    target = BlobStore(tmp_path / "t")
    with pytest.raises(IntegrityError, match="truncated"):
        target.import_(cut)
    assert target.verify_integrity() == []
    assert target.find_orphaned_blobs(min_age_seconds=0) == []


# ------------------------------------------------------------------------------ interruption


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from cacheness.storage import BlobStore

    target = BlobStore(sys.argv[2])

    def progress(p):
        if p.done == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)

    target.import_(sys.argv[1], progress=progress)
    """
)


def test_kill_9_during_import_then_rerun_completes(tmp_path, big):
    store = BlobStore(tmp_path / "s")
    values = {f"k{i:03d}": big(i, 120_000) for i in range(40)}
    for key, value in values.items():
        store.put(value, key=key)
    store.export(tmp_path / "a.tar.zst")
    result = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "a.tar.zst"), str(tmp_path / "t"), "17"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL
    target = BlobStore(tmp_path / "t")
    partial = target.count()
    assert 0 < partial < len(values)
    assert target.verify_integrity() == []  # only complete entries
    report = target.import_(tmp_path / "a.tar.zst")
    assert report.entries == len(values) - partial
    assert [i.problem for i in report.skipped] == ["present"] * partial
    assert {key: target.get(key) for key in values} == values
    assert target.verify_integrity() == []


# ------------------------------------------------------------------------------ progress


def test_progress_reports_entries_and_bytes(big, tmp_path):
    store = BlobStore(tmp_path / "s")
    fill(store, big)
    seen: list[TransferProgress] = []
    store.export(tmp_path / "a.tar", progress=seen.append)
    assert seen[-1].done == seen[-1].total == store.count()
    assert seen[-1].bytes_done == seen[-1].bytes_total == store.total_size()
    seen.clear()
    BlobStore(tmp_path / "t").import_(tmp_path / "a.tar", progress=seen.append)
    assert seen[-1].done == seen[-1].total == store.count()
    assert [p.done for p in seen] == sorted(p.done for p in seen)


# ------------------------------------------------------------------------------ migrate


def test_migrate_sqlite_files_to_postgres_s3_resumes_and_leaves_the_source(
    signing_key_env, open_pairing, big
):
    source_pairing = open_pairing("sqlite+filesystem")
    source = source_pairing.open()
    values = fill(source, big)
    before = (
        source_pairing.index(),
        {r: source_pairing.blob_bytes(r) for r in source_pairing.blob_refs()},
    )
    team = open_pairing("postgresql+s3").open()
    seen: list[TransferProgress] = []
    report = migrate(source, team, progress=seen.append)
    assert (report.entries, report.damaged) == (len(values), [])
    assert seen[-1].done == len(values)
    same_entries(source, team)
    for key in values:
        assert stored_bytes(team, key) == stored_bytes(source, key)
    again = migrate(source, team)
    assert (again.entries, [i.problem for i in again.skipped]) == (0, ["present"] * len(values))
    after = (
        source_pairing.index(),
        {r: source_pairing.blob_bytes(r) for r in source_pairing.blob_refs()},
    )
    assert after == before  # the source is untouched

    home = open_pairing("sqlite+filesystem").open()
    assert migrate(team, home, filter={"metadata.project": "runs"}).entries == 3
    same_entries(source, home, ["runs/1/config", "runs/1/weights", "runs/2/weights"])


def test_migrate_between_buckets_of_one_endpoint_copies_on_the_server(
    open_pairing, big, s3_bucket, monkeypatch
):
    source = open_pairing("postgresql+s3").open()
    values = fill(source, big)
    target = BlobStore(
        metadata_backend="memory",
        blob_backend="s3",
        blob_options={
            "bucket": s3_bucket.name,
            "prefix": "copy/",
            **s3_bucket.endpoint.client_options(),
        },
        allow_unsafe_pairing=True,
    )

    def no_download(ref: str) -> Any:  # fault injection: streaming would fail the test
        raise AssertionError(f"{ref} was downloaded instead of copied on the server")

    monkeypatch.setattr(source.blobs, "open_read", no_download)
    report = migrate(source, target)
    assert (report.entries, report.damaged) == (len(values), [])
    monkeypatch.undo()
    for key, value in values.items():
        assert target.get(key) == value
    target.close()


def test_migrate_refuses_conflicts_up_front_with_error(big):
    source = BlobStore(metadata_backend="memory", blob_backend="memory")
    fill(source, big)
    target = BlobStore(metadata_backend="memory", blob_backend="memory")
    target.put("other", key="shared/readme")
    with pytest.raises(EntryExistsError):
        migrate(source, target, on_conflict="error")
    assert target.count() == 1
    assert migrate(source, target, on_conflict="overwrite").entries == source.count()
    assert target.get("shared/readme") == "hello"


# ------------------------------------------------------------------------------ a 1 GiB blob


MEMORY_SCRIPT = textwrap.dedent(
    """
    import io, json, resource, sys
    from cacheness.storage import BlobStore

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    source = BlobStore(sys.argv[1])
    target = BlobStore(sys.argv[2])
    # warm up: every module and buffer the real run needs, on a small archive
    small = BlobStore(metadata_backend="memory", blob_backend="memory")
    small.put(b"x" * 100_000, key="w")
    buffer = io.BytesIO()
    small.export(buffer)
    fresh = BlobStore(metadata_backend="memory", blob_backend="memory")
    fresh.import_(io.BytesIO(buffer.getvalue()))
    baseline = peak()
    exported = source.export(sys.argv[3])
    imported = target.import_(sys.argv[3])
    print(json.dumps({"baseline": baseline, "peak": peak(), "exported": exported.bytes,
                      "imported": imported.bytes, "damaged": len(imported.damaged)}))
    """
)


def test_a_1_gib_blob_is_exported_and_imported_in_flat_memory(tmp_path):
    size = 1 << 30
    source = BlobStore(tmp_path / "source")
    block = os.urandom(1 << 20)
    with source.blobs.open_write("big") as writer:
        for index in range(size // len(block)):
            writer.write(index.to_bytes(8, "little") + block[8:])
    blob = writer.info
    source.metadata.put(
        Entry.new(
            "huge", blob_ref=blob.ref, handler="raw", format="bytes", codec="none",
            format_info={"kind": "bytes"}, size=blob.size, raw_size=blob.size,
            content_hash=blob.content_hash,
        )
    )  # fmt: skip
    source.close()
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "source"), str(tmp_path / "target"),
         str(tmp_path / "huge.tar.zst")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = json.loads(result.stdout)
    assert figures["exported"] == figures["imported"] == size
    assert figures["damaged"] == 0
    assert figures["peak"] - figures["baseline"] < 64 << 20, figures
    target = BlobStore(tmp_path / "target")
    entry = target.get_metadata("huge")
    assert (entry.size, entry.content_hash) == (size, blob.content_hash)
    assert target.verify_integrity(deep=False) == []
    target.close()


def test_export_to_a_stream_and_bad_arguments(big, tmp_path):
    from cacheness.storage import ConfigError

    store = BlobStore(metadata_backend="memory", blob_backend="memory")
    fill(store, big)
    sink = io.BytesIO()
    store.export(sink, compression="gzip")
    assert sink.getvalue()[:2] == b"\x1f\x8b"
    with pytest.raises(ConfigError, match="compression"):
        store.export(io.BytesIO(), compression="lz4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_conflict"):
        store.import_(io.BytesIO(sink.getvalue()), on_conflict="replace")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="directory"):
        store.export(tmp_path)
    with pytest.raises(ConfigError, match="no archive"):
        store.import_(tmp_path / "absent.tar")
    # a failed export to a path leaves no file behind
    with pytest.raises(ConfigError):
        store.export(tmp_path / "x.tar", filter="not a filter")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    assert (
        msgspec.json.decode(msgspec.json.encode(store.export_to_dict()["format"]))
        == "cacheness-archive"
    )


def test_a_predicate_selects_what_export_import_and_migrate_carry(big, tmp_path):
    store = BlobStore(tmp_path / "s")
    fill(store, big)
    report = store.export(tmp_path / "big.tar", filter=lambda entry: entry.size > 10_000)
    assert report.entries == 2
    target = BlobStore(tmp_path / "t")
    target.import_(tmp_path / "big.tar", filter=lambda entry: entry.key.startswith("runs/2"))
    assert [e.key for e in target.list_entries()] == ["runs/2/weights"]
    moved = BlobStore(metadata_backend="memory", blob_backend="memory")
    assert (
        migrate(
            source_store=store, target_store=moved, filter=lambda e: e.inline is not None
        ).entries
        == 3
    )
    assert len(store.export_to_dict(filter=lambda entry: entry.key == "empty")["entries"]) == 1


# ------------------------------------------------------------------------------ custom rows


def _custom_model() -> Any:
    from sqlalchemy import Column, DateTime, Float, String

    from cacheness.storage import CustomMetadataBase, custom_metadata_model

    @custom_metadata_model("portability_runs")
    class PortabilityRun(CustomMetadataBase):
        __tablename__ = "custom_portability_runs"
        author = Column(String(40))
        accuracy = Column(Float)
        finished = Column(DateTime)

    return PortabilityRun


def test_custom_metadata_rows_travel_with_their_entries(
    signing_key_env, open_pairing, big, tmp_path
):
    from datetime import datetime

    run_model = _custom_model()
    source = open_pairing("sqlite+filesystem").open()
    finished = datetime(2026, 3, 4, 5, 6, 7)
    source.put(
        big(1),
        key="runs/1",
        custom_metadata=run_model(author="ana", accuracy=0.9, finished=finished),
    )
    source.put(
        "small", key="runs/2", custom_metadata=[run_model(author="bo"), run_model(author="cy")]
    )
    source.put("plain", key="other")

    def rows(store: BlobStore, key: str) -> list[tuple]:
        return sorted(
            (row.author, row.accuracy, row.finished)
            for row in store.get_custom_metadata(run_model, key)
        )

    source.export(tmp_path / "a.tar")
    target = open_pairing("sqlite+filesystem").open()
    assert target.import_(tmp_path / "a.tar").entries == 3
    for key in ("runs/1", "runs/2", "other"):
        assert rows(target, key) == rows(source, key)
    assert rows(target, "runs/1") == [("ana", 0.9, finished)]

    team = open_pairing("postgresql+s3").open()
    assert migrate(source, team).entries == 3
    assert rows(team, "runs/2") == [("bo", None, None), ("cy", None, None)]
    as_dict = source.export_to_dict()
    again = open_pairing("sqlite+filesystem").open()
    again.import_from_dict(as_dict)
    assert rows(again, "runs/1") == rows(source, "runs/1")

    memory = BlobStore(metadata_backend="memory", blob_backend="memory")
    report = memory.import_(tmp_path / "a.tar")
    assert sorted((i.key, i.problem) for i in report.damaged) == [
        ("runs/1", "invalid_entry"),
        ("runs/2", "invalid_entry"),
    ]
    assert "custom metadata" in report.damaged[0].detail
    assert [e.key for e in memory.list_entries()] == ["other"]


# ------------------------------------------------------------------ format 2: large inline


def inline_values(count: int, size: int = 30_000) -> dict[str, bytes]:
    """Incompressible values under the 64 KiB inline threshold but over EMBED_LIMIT."""
    import random

    return {f"v/{i:03d}": random.Random(i).randbytes(size) for i in range(count)}


def test_large_inline_payloads_travel_as_members_and_stay_inline(tmp_path):
    store = BlobStore(tmp_path / "s")
    values = inline_values(40)
    for key, value in values.items():
        store.put(value, key=key)
    store.put(b"small", key="small")
    assert all(store.get_metadata(key).is_inline for key in values)
    report = store.export(tmp_path / "a.tar", compression=None)
    assert (report.entries, report.ok) == (41, True)

    members = read_members(tmp_path / "a.tar")
    manifest = json.loads(members["manifest.json"])
    assert manifest["format_version"] == 2
    items = {item["entry"]["key"]: item for item in manifest["entries"]}
    assert items["small"]["member"] is None
    assert items["small"]["entry"]["inline"] is not None  # small: in the manifest
    for key, value in values.items():
        item = items[key]
        assert item["inline"] is True
        assert item["entry"]["inline"] is None
        assert members[item["member"]] == value  # raw handler: stored bytes are the value
    assert len(members["manifest.json"]) < 40 * 2_000  # fields only, not 1.2 MB of data

    target = BlobStore(tmp_path / "t")
    imported = target.import_(tmp_path / "a.tar")
    assert (imported.entries, imported.ok) == (41, True)
    same_entries(store, target)
    for key, value in values.items():
        assert target.get_metadata(key).is_inline
        assert target.get(key) == value
    assert list(target.blobs.iter_refs()) == []


def test_a_flipped_byte_in_an_inline_member_is_refused(tmp_path):
    store = BlobStore(tmp_path / "s")
    values = inline_values(3)
    for key, value in values.items():
        store.put(value, key=key)
    store.export(tmp_path / "a.tar", compression=None)
    manifest = json.loads(read_members(tmp_path / "a.tar")["manifest.json"])
    bad = next(i["member"] for i in manifest["entries"] if i["entry"]["key"] == "v/001")

    def flip(info, data):
        if info.name == bad:
            data = bytes([data[0] ^ 1]) + data[1:]
        return [(info, data)]

    rewrite(tmp_path / "a.tar", tmp_path / "flipped.tar", flip)
    target, report = imported_from(tmp_path / "flipped.tar", tmp_path)
    assert [(i.key, i.problem) for i in report.damaged] == [("v/001", "damaged")]
    assert not target.exists("v/001")
    assert target.get("v/002") == values["v/002"]


def test_an_inline_payload_changed_during_export_is_reported_not_mixed(tmp_path):
    store = BlobStore(tmp_path / "s")
    values = inline_values(3)
    for key, value in values.items():
        store.put(value, key=key)
    changed = []

    def meddle(progress: TransferProgress) -> None:
        if progress.key == "v/000" and not changed:  # v/002 is rewritten before its turn
            store.put(b"rewritten " * 5_000, key="v/002")
            changed.append(True)

    report = store.export(tmp_path / "a.tar", compression=None, progress=meddle)
    assert changed
    assert [(i.key, i.problem) for i in report.damaged] == [("v/002", "missing")]
    target, imported = imported_from(tmp_path / "a.tar", tmp_path)
    assert [(i.key, i.problem) for i in imported.damaged] == [("v/002", "damaged")]
    assert target.get("v/000") == values["v/000"]
    assert not target.exists("v/002")


def test_migrate_carries_large_inline_payloads(tmp_path):
    source = BlobStore(tmp_path / "s")
    values = inline_values(5)
    for key, value in values.items():
        source.put(value, key=key)
    target = BlobStore(tmp_path / "t")
    report = migrate(source, target)
    assert (report.entries, report.ok) == (5, True)
    same_entries(source, target)
    assert all(target.get(key) == value for key, value in values.items())


def test_format_1_archives_with_inline_payloads_in_the_manifest_still_import(tmp_path):
    store = BlobStore(tmp_path / "s")
    values = inline_values(2)
    for key, value in values.items():
        store.put(value, key=key)
    data = store.export_to_dict()  # the dict form embeds every inline payload, as format 1 did
    data["format_version"] = 1
    assert all(item["member"] is None for item in data["entries"])
    target = BlobStore(tmp_path / "t")
    assert target.import_from_dict(data).entries == 2
    assert all(target.get(key) == value for key, value in values.items())
