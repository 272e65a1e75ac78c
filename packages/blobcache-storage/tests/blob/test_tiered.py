"""The tiered backend: a bounded, persistent local cache that trusts only what matches."""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import pytest

from cacheness.storage import (
    BlobInfo,
    FilesystemBlobBackend,
    MemoryBlobBackend,
    S3BlobBackend,
    TieredBlobBackend,
)
from cacheness.storage.errors import BlobNotFoundError, ConfigError
from cacheness.storage.testing.flaky_proxy import FlakyProxy


class CountingRemote(MemoryBlobBackend):
    """A real memory backend that also counts the calls a remote would pay for."""

    def __init__(self) -> None:
        super().__init__(shard_chars=2)
        self.calls: Counter[str] = Counter()

    def stat(self, ref: str) -> BlobInfo:
        self.calls["stat"] += 1
        return super().stat(ref)

    def open_read(self, ref: str) -> BinaryIO:
        self.calls["open_read"] += 1
        return super().open_read(ref)


@pytest.fixture
def remote() -> CountingRemote:
    return CountingRemote()


def cached_files(cache_dir: Path) -> list[str]:
    blobs = cache_dir / "blobs"
    return sorted(
        str(p.relative_to(blobs))
        for p in blobs.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def test_reads_fill_the_cache_and_hits_skip_the_download(remote, tmp_path: Path):
    info = remote.write_bytes("abcdef", b"remote bytes")
    blobs = TieredBlobBackend(remote, tmp_path, fill_on_write=False)
    assert blobs.read_bytes(info.ref) == b"remote bytes"
    assert cached_files(tmp_path) == ["ab/abcdef"]
    assert (tmp_path / "blobs" / "ab" / "abcdef").read_bytes() == b"remote bytes"
    remote.calls.clear()
    for _ in range(3):
        assert blobs.read_bytes(info.ref) == b"remote bytes"
    assert remote.calls == {"stat": 3}  # validated each time, never downloaded again
    assert blobs.stats()["hits"] == 3
    assert blobs.stats()["fills"] == 1


def test_writes_go_through_and_fill(remote, tmp_path: Path):
    blobs = TieredBlobBackend(remote, tmp_path)
    with blobs.open_write("abcdef") as writer:
        writer.write(b"written ")
        writer.write(b"through")
    assert remote.read_bytes("ab/abcdef") == b"written through"
    assert blobs.is_cached("ab/abcdef")
    remote.calls.clear()
    assert blobs.read_bytes("ab/abcdef") == b"written through"
    assert remote.calls == {"stat": 1}
    info = blobs.write_bytes("bytes1", b"direct")
    assert blobs.is_cached(info.ref)
    source = tmp_path / "upload.bin"
    source.write_bytes(b"from a file")
    info = blobs.write_from_file("file01", source)
    assert blobs.is_cached(info.ref)
    assert remote.read_bytes(info.ref) == b"from a file"


def test_aborted_write_leaves_nothing_anywhere(remote, tmp_path: Path):
    blobs = TieredBlobBackend(remote, tmp_path)
    with blobs.open_write("abcdef") as writer:
        writer.write(b"never")
        writer.abort()
    assert len(remote) == 0
    assert cached_files(tmp_path) == []
    assert blobs.cached_bytes == 0


def test_a_changed_remote_is_fetched_again(remote, tmp_path: Path):
    info = remote.write_bytes("abcdef", b"version one")
    blobs = TieredBlobBackend(remote, tmp_path)
    assert blobs.read_bytes(info.ref) == b"version one"
    remote.write_bytes("abcdef", b"version TWO")  # same size, other bytes
    assert blobs.read_bytes(info.ref) == b"version TWO"
    assert (tmp_path / "blobs" / info.ref).read_bytes() == b"version TWO"
    assert blobs.stats()["fills"] == 2


def test_a_deleted_remote_drops_the_local_copy(remote, tmp_path: Path):
    info = remote.write_bytes("abcdef", b"gone soon")
    blobs = TieredBlobBackend(remote, tmp_path)
    blobs.read_bytes(info.ref)
    remote.delete(info.ref)
    with pytest.raises(BlobNotFoundError):
        blobs.read_bytes(info.ref)
    assert not blobs.is_cached(info.ref)
    assert cached_files(tmp_path) == []


def test_lru_eviction_by_size(remote, tmp_path: Path, clock):
    blobs = TieredBlobBackend(remote, tmp_path, max_bytes=3000, clock=clock, fill_on_write=False)
    refs = [remote.write_bytes(name, bytes(1000)).ref for name in ("aaaa", "bbbb", "cccc", "dddd")]
    for ref in refs[:3]:
        clock.now += 1
        blobs.read_bytes(ref)
    clock.now += 1
    blobs.read_bytes(refs[0])  # a is now the most recently used; b the least
    clock.now += 1
    blobs.read_bytes(refs[3])
    assert cached_files(tmp_path) == ["aa/aaaa", "cc/cccc", "dd/dddd"]
    assert blobs.cached_bytes == 3000
    assert blobs.stats()["evictions"] == 1


def test_blobs_larger_than_the_cache_are_streamed(remote, tmp_path: Path):
    info = remote.write_bytes("huge00", bytes(5000))
    blobs = TieredBlobBackend(remote, tmp_path, max_bytes=4000)
    assert blobs.read_bytes(info.ref) == bytes(5000)
    assert blobs.local_path(info.ref) is None
    assert blobs.stats()["bypasses"] == 2  # the read and the local_path call
    assert cached_files(tmp_path) == []
    written = blobs.write_bytes("huge01", bytes(5000))  # too big to keep on write, too
    assert cached_files(tmp_path) == []
    with blobs.open_write("huge02") as writer:
        for _ in range(5):
            writer.write(bytes(1000))
    assert cached_files(tmp_path) == []
    assert remote.stat(written.ref).size == 5000


def test_the_index_survives_a_restart(remote, tmp_path: Path):
    info = remote.write_bytes("abcdef", b"persistent")
    with TieredBlobBackend(remote, tmp_path, fill_on_write=False) as blobs:
        blobs.read_bytes(info.ref)
    remote.calls.clear()
    reopened = TieredBlobBackend(remote, tmp_path)
    assert reopened.is_cached(info.ref)
    assert reopened.read_bytes(info.ref) == b"persistent"
    assert remote.calls == {"stat": 1}
    assert reopened.stats()["hits"] == 1


def test_revalidate_after(remote, tmp_path: Path, clock):
    info = remote.write_bytes("abcdef", b"fresh")
    blobs = TieredBlobBackend(remote, tmp_path, revalidate_after=60, clock=clock)
    blobs.read_bytes(info.ref)
    remote.calls.clear()
    clock.now += 30
    blobs.read_bytes(info.ref)
    assert remote.calls == {}  # trusted without asking the remote
    clock.now += 31
    blobs.read_bytes(info.ref)
    assert remote.calls == {"stat": 1}

    forever = TieredBlobBackend(CountingRemote(), tmp_path / "forever", revalidate_after=None)
    ref = forever.write_bytes("content-address", b"immutable").ref
    forever.remote.calls.clear()  # type: ignore[attr-defined]
    assert forever.read_bytes(ref) == b"immutable"
    assert forever.remote.calls == {}  # type: ignore[attr-defined]


def test_verify_local_catches_a_corrupted_copy(remote, tmp_path: Path):
    info = remote.write_bytes("abcdef", b"original bytes")
    blobs = TieredBlobBackend(remote, tmp_path, verify_local=True)
    blobs.read_bytes(info.ref)
    (tmp_path / "blobs" / info.ref).write_bytes(b"ORIGINAL BYTES")  # local disk corruption
    assert blobs.read_bytes(info.ref) == b"original bytes"
    assert (tmp_path / "blobs" / info.ref).read_bytes() == b"original bytes"


def test_a_truncated_local_copy_is_never_served(remote, tmp_path: Path):
    info = remote.write_bytes("abcdef", b"twelve bytes")
    blobs = TieredBlobBackend(remote, tmp_path)
    blobs.read_bytes(info.ref)
    (tmp_path / "blobs" / info.ref).write_bytes(b"twelve")
    assert blobs.read_bytes(info.ref) == b"twelve bytes"


def test_local_failures_fall_back_to_the_remote(
    remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
):
    info = remote.write_bytes("abcdef", b"served anyway")
    blobs = TieredBlobBackend(remote, tmp_path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FilesystemBlobBackend, "_prepare_directory", disk_full)  # fault
    assert blobs.read_bytes(info.ref) == b"served anyway"
    written = blobs.write_bytes("ghijkl", b"still written")
    assert remote.read_bytes(written.ref) == b"still written"
    assert blobs.stats()["local_errors"] == 2
    assert "local cache could not" in caplog.text
    assert cached_files(tmp_path) == []


def test_local_path_and_read_to_file(remote, tmp_path: Path):
    info = remote.write_bytes("abcdef", b"map me")
    blobs = TieredBlobBackend(remote, tmp_path / "cache")
    path = blobs.local_path(info.ref)
    assert path == tmp_path / "cache" / "blobs" / "ab" / "abcdef"
    assert path.read_bytes() == b"map me"
    blobs.read_to_file(info.ref, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"map me"


def test_delete_drops_both_copies(remote, tmp_path: Path):
    blobs = TieredBlobBackend(remote, tmp_path)
    refs = [blobs.write_bytes(name, b"x").ref for name in ("aaaa", "bbbb", "cccc")]
    assert blobs.delete(refs[0]) is True
    assert blobs.delete_many(refs[1:]) == 2
    assert len(remote) == 0
    assert cached_files(tmp_path) == []
    assert blobs.cached_bytes == 0


def test_repair_and_clear(remote, tmp_path: Path):
    blobs = TieredBlobBackend(remote, tmp_path)
    kept = blobs.write_bytes("keep00", b"keep").ref
    lost = blobs.write_bytes("lost00", b"lost").ref
    (tmp_path / "blobs" / lost).unlink()  # a file vanished under the index
    orphan = tmp_path / "blobs" / "or" / "orphan"
    orphan.parent.mkdir()
    orphan.write_bytes(b"no row")  # a crash between the file and its index row
    assert blobs.repair() == {"rows_dropped": 1, "files_removed": 1, "temp_files": 0}
    assert cached_files(tmp_path) == [kept]
    assert blobs.is_cached(kept)
    assert not blobs.is_cached(lost)
    blobs.clear_cache()
    assert cached_files(tmp_path) == []
    assert blobs.read_bytes(kept) == b"keep"  # the remote is untouched


def test_options_are_validated(remote, tmp_path: Path):
    with pytest.raises(ConfigError, match="max_bytes"):
        TieredBlobBackend(remote, tmp_path, max_bytes=-1)
    with pytest.raises(ConfigError, match="revalidate_after"):
        TieredBlobBackend(remote, tmp_path, revalidate_after=-5)
    with pytest.raises(ConfigError, match="must be a BlobBackend"):
        TieredBlobBackend(42, tmp_path)  # type: ignore[arg-type]


def test_over_s3_a_hit_costs_one_head(proxied_options, flaky_proxy: FlakyProxy, tmp_path: Path):
    remote = S3BlobBackend(**proxied_options)
    data = os.urandom(6 << 20)
    info = remote.write_bytes("model-weights", data)
    blobs = TieredBlobBackend(remote, tmp_path)
    flaky_proxy.reset_stats()
    assert blobs.read_bytes(info.ref) == data
    assert flaky_proxy.stats().by_method == {"HEAD": 1, "GET": 1}
    flaky_proxy.reset_stats()
    assert blobs.read_bytes(info.ref) == data
    assert flaky_proxy.stats().by_method == {"HEAD": 1}
    assert blobs.scope == "shared"


def test_cleanup_covers_the_remote_and_the_local_cache(tmp_path: Path):
    remote = FilesystemBlobBackend(tmp_path / "remote")
    blobs = TieredBlobBackend(remote, cache_dir=tmp_path / "cache")
    info = blobs.write_bytes("abcdef", b"cached")
    local = tmp_path / "cache" / "blobs" / info.ref
    assert local.is_file()
    debris = [
        tmp_path / "remote" / "ab" / ".cacheness-tmp-0123456789abcdef",
        local.with_name(".cacheness-tmp-fedcba9876543210"),
    ]
    for path in debris:
        path.write_bytes(b"half a blob")
    assert blobs.cleanup_temp_files(0, dry_run=True) == 2
    assert all(path.exists() for path in debris)
    assert blobs.cleanup_temp_files(0) == 2
    assert not any(path.exists() for path in debris)
    assert blobs.read_bytes(info.ref) == b"cached"
    blobs.close()


def test_capabilities_are_the_remotes_and_read_only(tmp_path: Path):
    tiered = TieredBlobBackend(MemoryBlobBackend(), tmp_path / "cache")
    assert (tiered.scope, tiered.supports_local_path, tiered.exact_delete_counts) == (
        "process",
        True,
        True,
    )
    with pytest.raises(AttributeError):
        tiered.supports_local_path = False  # type: ignore[misc]
