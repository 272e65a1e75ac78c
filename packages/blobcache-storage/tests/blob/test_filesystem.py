"""The filesystem backend: atomic publication, containment, permissions, crashes."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cacheness.storage import FilesystemBlobBackend, hash_bytes
from cacheness.storage._blob import filesystem as filesystem_module
from cacheness.storage._blob.filesystem import HASH_XATTR
from cacheness.storage.errors import (
    BlobNotFoundError,
    ConfigError,
    InvalidBlobNameError,
    StorageError,
    StorageFullError,
)

WRITER = Path(__file__).with_name("_writer_process.py")
xattrs = pytest.mark.skipif(not hasattr(os, "setxattr"), reason="no extended attributes here")


def temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(".cacheness-tmp-*"))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_on_disk(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path / "root")
    info = blobs.write_bytes("0123456789abcdef", b"bytes on disk")
    assert info.ref == "01/0123456789abcdef"
    assert (tmp_path / "root" / "01" / "0123456789abcdef").read_bytes() == b"bytes on disk"
    assert blobs.local_path(info.ref) == (tmp_path / "root" / info.ref).resolve()
    assert blobs.location(info.ref) == (tmp_path / "root" / info.ref).resolve().as_uri()


def test_default_permissions(tmp_path: Path):
    old_umask = os.umask(0o022)
    try:
        blobs = FilesystemBlobBackend(tmp_path / "root")
        blobs.write_bytes("runs/abcdef", b"x")
    finally:
        os.umask(old_umask)
    root = tmp_path / "root"
    assert mode_of(root) == 0o700
    assert mode_of(root / "runs") == 0o700
    assert mode_of(root / "runs" / "ab") == 0o700
    assert mode_of(root / "runs" / "ab" / "abcdef") == 0o600


def test_shared_group_permissions_ignore_the_umask(tmp_path: Path):
    old_umask = os.umask(0o077)
    try:
        blobs = FilesystemBlobBackend(tmp_path / "shared", dir_mode=0o2770, file_mode=0o660)
        blobs.write_bytes("abcdef", b"x")
    finally:
        os.umask(old_umask)
    assert mode_of(tmp_path / "shared" / "ab") == 0o2770
    assert mode_of(tmp_path / "shared" / "ab" / "abcdef") == 0o660


def test_root_options(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        FilesystemBlobBackend(tmp_path / "missing", create=False)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a directory"):
        FilesystemBlobBackend(tmp_path / "file")
    with pytest.raises(ConfigError, match="dir_mode"):
        FilesystemBlobBackend(tmp_path / "x", dir_mode=0o10000)


def test_root_given_through_a_symlink_is_resolved(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    blobs = FilesystemBlobBackend(tmp_path / "link")
    info = blobs.write_bytes("abcdef", b"x")
    assert blobs.local_path(info.ref) == tmp_path / "real" / "ab" / "abcdef"


def test_symlinked_shard_directory_is_refused(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    blobs = FilesystemBlobBackend(root)
    (root / "ab").symlink_to(outside)
    with pytest.raises(InvalidBlobNameError, match="outside the blob root"):
        blobs.write_bytes("abcdef", b"escape attempt")
    (outside / "abcdef").write_bytes(b"planted")
    for call in (blobs.open_read, blobs.stat, blobs.exists, blobs.delete, blobs.local_path):
        with pytest.raises(InvalidBlobNameError):
            call("ab/abcdef")
    assert list(outside.iterdir()) == [outside / "abcdef"]  # nothing written there
    assert list(blobs.iter_refs()) == []  # symlinks are not listed


def test_symlinked_blob_file_is_refused(tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    blobs = FilesystemBlobBackend(tmp_path / "root", shard_chars=0)
    (tmp_path / "root" / "link").symlink_to(secret)
    # never followed: to every method a symlink is no blob at all
    for call in (blobs.read_bytes, blobs.stat, blobs.open_read, blobs.local_path):
        with pytest.raises(BlobNotFoundError, match=r"symlink|no blob"):
            call("link")
    assert blobs.exists("link") is False
    assert blobs.delete("link") is False
    assert secret.exists()


def test_names_in_each_others_way(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path, shard_chars=0)
    blobs.write_bytes("a", b"file")
    with pytest.raises(StorageError, match="is a file"):
        blobs.write_bytes("a/b", b"x")
    blobs.write_bytes("d/e", b"x")
    with pytest.raises(StorageError, match="is a directory"):
        blobs.write_bytes("d", b"x")
    assert temp_files(tmp_path) == []
    with pytest.raises(BlobNotFoundError):
        blobs.read_bytes("d")  # a directory is not a blob
    assert blobs.exists("d") is False


def test_temp_files_are_invisible_and_cleaned_up(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path)
    committed = blobs.write_bytes("abcdef", b"done").ref
    pending = blobs.open_write("abcxyz")
    pending.write(b"in progress")
    stale = tmp_path / "ab" / ".cacheness-tmp-deadbeefdeadbeef"
    stale.write_bytes(b"left by a crash")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert list(blobs.iter_refs()) == [committed]
    assert blobs.cleanup_temp_files() == 1  # the stale one; the live write is young
    assert not stale.exists()
    pending.commit()
    assert sorted(blobs.iter_refs()) == ["ab/abcdef", "ab/abcxyz"]
    assert temp_files(tmp_path) == []


def test_a_dry_run_counts_stale_temp_files_and_changes_nothing(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path)
    ref = blobs.write_bytes("abcdef", b"x").ref
    blobs.delete(ref)  # leaves the empty shard directory "ab"
    stale = tmp_path / "cd" / ".cacheness-tmp-deadbeefdeadbeef"
    stale.parent.mkdir()
    stale.write_bytes(b"left by a crash")
    assert blobs.cleanup_temp_files(0, dry_run=True) == 1
    assert stale.exists()
    assert (tmp_path / "ab").is_dir()
    assert blobs.cleanup_temp_files(0) == 1
    assert list(tmp_path.iterdir()) == []


def test_cleanup_removes_empty_shard_directories(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path)
    ref = blobs.write_bytes("abcdef", b"x").ref
    blobs.delete(ref)
    assert (tmp_path / "ab").is_dir()
    assert blobs.cleanup_temp_files(0) == 0
    assert list(tmp_path.iterdir()) == []
    blobs.write_bytes("abcdef", b"again")  # directories are made again on demand
    assert blobs.read_bytes(ref) == b"again"


@xattrs
def test_stat_uses_the_recorded_hash(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path)
    info = blobs.write_bytes("abcdef", b"original")
    path = tmp_path / info.ref
    recorded = os.getxattr(path, HASH_XATTR).decode().split()
    assert recorded[:2] == [hash_bytes(b"original"), "8"]
    assert blobs.stat(info.ref).content_hash == hash_bytes(b"original")
    # Someone rewrites the file in place: the attribute is stale and must not be trusted.
    with open(path, "r+b") as handle:
        handle.write(b"ORIGINAL")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    assert blobs.stat(info.ref).content_hash == hash_bytes(b"ORIGINAL")
    assert blobs.verify(info.ref, hash_bytes(b"ORIGINAL"))
    assert not blobs.verify(info.ref, hash_bytes(b"original"))


def test_stat_hashes_files_without_the_attribute(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path, shard_chars=0)
    (tmp_path / "dropped-in").write_bytes(b"copied here by hand")
    assert blobs.stat("dropped-in").content_hash == hash_bytes(b"copied here by hand")


def test_verify_reads_the_bytes_on_disk(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path)
    info = blobs.write_bytes("abcdef", b"good bytes")
    with open(tmp_path / info.ref, "r+b") as handle:  # bit rot, same size, same mtime
        st = os.fstat(handle.fileno())
        handle.write(b"b")
    os.utime(tmp_path / info.ref, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert blobs.verify(info.ref, info.content_hash) is False


def test_durable_fsyncs_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    synced: list[str] = []
    real = filesystem_module._fsync_dir
    monkeypatch.setattr(filesystem_module, "_fsync_dir", lambda p: (synced.append(p), real(p)))
    FilesystemBlobBackend(tmp_path / "fast").write_bytes("abcdef", b"x")
    assert synced == []
    durable = FilesystemBlobBackend(tmp_path / "durable", durable=True)
    durable.write_bytes("abcdef", b"x")
    assert str(tmp_path / "durable" / "ab") in synced  # the rename is on disk
    assert str(tmp_path / "durable") in synced  # and so is the new shard directory


def test_disk_full_leaves_nothing_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blobs = FilesystemBlobBackend(tmp_path)
    writer = blobs.open_write("abcdef")

    def full(data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer._file, "write", full)  # fault injection: a full disk
    with pytest.raises(StorageFullError, match=r"MiB free; delete entries to make room"):
        writer.write(b"x" * 100)
    assert writer.state == "aborted"
    assert temp_files(tmp_path) == []
    assert not blobs.exists("ab/abcdef")


def test_exclusive_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # a filesystem without hard links
    blobs = FilesystemBlobBackend(tmp_path)
    info = blobs.write_bytes("abcdef", b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        blobs.write_bytes("abcdef", b"second", exclusive=True)
    assert blobs.read_bytes(info.ref) == b"first"
    assert temp_files(tmp_path) == []


def test_read_to_file_copies_in_the_kernel(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path / "blobs")
    data = os.urandom(3 << 20)
    info = blobs.write_bytes("abcdef", data)
    target = tmp_path / "out" / "copy.bin"
    target.parent.mkdir()
    blobs.read_to_file(info.ref, target)
    assert target.read_bytes() == data
    assert list(target.parent.iterdir()) == [target]


# -- crashes: real processes, real files ---------------------------------------------------


def test_sigkill_mid_write_leaves_no_visible_blob(tmp_path: Path):
    root = tmp_path / "root"
    blobs = FilesystemBlobBackend(root)
    blobs.write_bytes("victim-old", b"previous version")
    with subprocess.Popen(
        [sys.executable, str(WRITER), str(root), "stream", "victim-new"],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "writing"
            (partial,) = temp_files(root)
            assert partial.stat().st_size >= 1 << 20  # bytes really were on disk
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert blobs.exists("vi/victim-new") is False
    assert sorted(blobs.iter_refs()) == ["vi/victim-old"]
    assert blobs.read_bytes("vi/victim-old") == b"previous version"
    assert temp_files(root) == [partial]  # at most a temp file is left...
    assert blobs.cleanup_temp_files(older_than=0) == 1  # ...and cleanup removes it
    assert temp_files(root) == []


def test_sigkill_during_overwrites_keeps_a_complete_version(tmp_path: Path):
    root = tmp_path / "root"
    blobs = FilesystemBlobBackend(root)
    blobs.write_bytes("target", bytes([9]) * 262_144)
    child = subprocess.Popen([sys.executable, str(WRITER), str(root), "overwrite", "target", "1"])
    try:
        deadline = time.monotonic() + 60
        while blobs.read_bytes("ta/target")[0] == 9 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    data = blobs.read_bytes("ta/target")
    assert data in (bytes([9]) * 262_144, bytes([1]) * 262_144)


def test_processes_writing_one_name_leave_one_complete_version(tmp_path: Path):
    root = tmp_path / "root"
    FilesystemBlobBackend(root)
    children = [
        subprocess.Popen([sys.executable, str(WRITER), str(root), "overwrite", "shared", str(i)])
        for i in (1, 2, 3)
    ]
    for child in children:
        assert child.wait(timeout=120) == 0
    blobs = FilesystemBlobBackend(root)
    data = blobs.read_bytes("sh/shared")
    assert data in [bytes([i]) * 262_144 for i in (1, 2, 3)]
    assert blobs.stat("sh/shared").content_hash == hash_bytes(data)
    assert temp_files(root) == []


def test_large_blobs_are_flushed_while_they_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Past a few MiB a helper thread starts flushing, so the fsync at commit waits only
    # for the tail; the bytes and the commit are the same.
    flushed: list[int] = []
    real = filesystem_module._datasync
    monkeypatch.setattr(filesystem_module, "_datasync", lambda fd: (flushed.append(fd), real(fd)))
    blobs = FilesystemBlobBackend(tmp_path)
    chunk = os.urandom(1 << 20)
    with blobs.open_write("abcdef") as writer:
        for _ in range(12):
            writer.write(chunk)
    assert flushed  # at least one early flush ran
    assert (tmp_path / "ab" / "abcdef").read_bytes() == chunk * 12
    assert writer.info.content_hash == hash_bytes(chunk * 12)
    flushed.clear()
    blobs.write_bytes("small1", b"x" * 1000)
    assert flushed == []  # small blobs: only the fsync at commit


def test_a_failed_early_flush_fails_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(fd: int) -> None:  # fault injection: the disk reports an I/O error
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(filesystem_module, "_datasync", broken)
    blobs = FilesystemBlobBackend(tmp_path)
    writer = blobs.open_write("abcdef")

    def write_and_commit() -> None:
        for _ in range(12):
            writer.write(b"y" * (1 << 20))
        writer.commit()

    with pytest.raises(StorageError, match="Input/output error"):
        write_and_commit()
    assert writer.state == "aborted"
    assert not blobs.exists("ab/abcdef")
    assert temp_files(tmp_path) == []


def test_aborting_waits_for_the_early_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    closed_during_flush: list[bool] = []
    real = filesystem_module._datasync

    def slow(fd: int) -> None:
        time.sleep(0.05)  # a slow disk: the abort must not close the file under the flush
        try:
            os.fstat(fd)
        except OSError:
            closed_during_flush.append(True)
        real(fd)

    monkeypatch.setattr(filesystem_module, "_datasync", slow)
    blobs = FilesystemBlobBackend(tmp_path)
    writer = blobs.open_write("abcdef")
    for _ in range(5):
        writer.write(b"z" * (1 << 20))
    writer.abort()
    assert closed_during_flush == []
    assert temp_files(tmp_path) == []
    assert not blobs.exists("ab/abcdef")
