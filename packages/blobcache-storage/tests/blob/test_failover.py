"""The failover backend: reads and writes survive a primary outage, and every fallback counts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from cacheness.storage import (
    BlobWriter,
    FailoverBlobBackend,
    FilesystemBlobBackend,
    MemoryBlobBackend,
    S3BlobBackend,
)
from cacheness.storage.errors import (
    BackendUnavailableError,
    BlobExistsError,
    BlobNotFoundError,
    StorageError,
)
from cacheness.storage.testing.flaky_proxy import FlakyProxy


class Outage(NamedTuple):
    blobs: FailoverBlobBackend
    primary: S3BlobBackend
    fallback: FilesystemBlobBackend
    proxy: FlakyProxy
    clock: Callable[[], float]


class BrokenWrites(MemoryBlobBackend):
    """Fault injection: a backend whose writes fail (a full or read-only disk)."""

    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        raise StorageError("disk full (injected)")


@pytest.fixture
def outage(proxied_options, flaky_proxy: FlakyProxy, tmp_path: Path, clock):
    """An S3 primary behind the flaky proxy and a filesystem fallback."""
    primary = S3BlobBackend(max_attempts=1, breaker_threshold=2, clock=clock, **proxied_options)
    fallback = FilesystemBlobBackend(tmp_path / "fallback", shard_chars=0)
    blobs = FailoverBlobBackend(primary, fallback)
    return Outage(blobs, primary, fallback, flaky_proxy, clock)


def test_healthy_primary_gets_everything(outage, s3_object):
    blobs = outage.blobs
    fallback = outage.fallback
    info = blobs.write_bytes("abcdef", b"normal day")
    assert info.ref == "ab/abcdef"
    assert s3_object(info.ref) == b"normal day"
    assert list(fallback.iter_refs()) == []  # no replication asked for
    assert blobs.read_bytes(info.ref) == b"normal day"
    assert blobs.stats()["fallback_reads"] == 0


def test_writes_and_reads_survive_a_primary_outage(outage, s3_object, caplog):
    blobs = outage.blobs
    fallback = outage.fallback
    proxy = outage.proxy
    clock = outage.clock
    before = blobs.write_bytes("before", b"written while up")
    proxy.fail_always("drop")
    caplog.set_level(logging.WARNING)
    during = blobs.write_bytes("during", b"written while down")
    assert during.ref == "du/during"  # the failover's (primary's) reference
    assert fallback.read_bytes("during") == b"written while down"
    assert blobs.read_bytes(during.ref) == b"written while down"
    with pytest.raises(BlobNotFoundError):
        blobs.read_bytes(before.ref)  # only on the primary, which is down
    assert blobs.stats()["fallback_writes"] == 1
    assert blobs.stats()["primary_failures"] >= 2
    assert "written to the fallback" in caplog.text

    proxy.heal()
    clock.now += 60  # the breaker lets a trial through
    assert blobs.read_bytes(during.ref) == b"written while down"  # missing on primary
    assert blobs.read_bytes(before.ref) == b"written while up"
    assert s3_object(during.ref) is None
    assert set(blobs.iter_refs()) == {before.ref, during.ref}
    assert blobs.exists(during.ref)
    assert blobs.stat(during.ref).ref == during.ref


def test_streamed_write_falls_back_at_commit(outage):
    blobs = outage.blobs
    fallback = outage.fallback
    proxy = outage.proxy
    with blobs.open_write("stream") as writer:
        writer.write(b"part one, ")
        proxy.fail_always("error", status=503)  # S3 fails when the upload starts
        writer.write(b"part two")
    assert fallback.read_bytes("stream") == b"part one, part two"
    assert writer.info is not None
    assert writer.info.ref == "st/stream"


def test_replication_copies_every_write(outage, s3_object):
    primary = outage.primary
    fallback = outage.fallback
    replicated = FailoverBlobBackend(primary, fallback, replicate_writes=True)
    info = replicated.write_bytes("abcdef", b"twice")
    assert s3_object(info.ref) == b"twice"
    assert fallback.read_bytes("abcdef") == b"twice"


def test_replication_failures_are_counted_or_fatal(tmp_path: Path):
    primary = FilesystemBlobBackend(tmp_path / "primary")
    lenient = FailoverBlobBackend(primary, BrokenWrites(), replicate_writes=True)
    info = lenient.write_bytes("abcdef", b"kept")
    assert primary.read_bytes(info.ref) == b"kept"
    strict = FailoverBlobBackend(
        primary, BrokenWrites(), replicate_writes=True, require_replication=True
    )
    with pytest.raises(StorageError, match="disk full"):
        strict.write_bytes("ghijkl", b"lost")
    assert not primary.exists("gh/ghijkl")


def test_fallback_write_failures_do_not_fail_healthy_writes(tmp_path: Path):
    class FailingStream(MemoryBlobBackend):
        def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
            writer = super().open_write(name, exclusive=exclusive)

            def broken(data: memoryview) -> None:
                raise StorageError("fallback disk failed (injected)")

            writer._write = broken  # type: ignore[method-assign]
            return writer

    primary = MemoryBlobBackend()
    blobs = FailoverBlobBackend(primary, FailingStream())
    assert blobs.write_bytes("name", b"fine").size == 4
    assert primary.read_bytes("name") == b"fine"
    assert blobs.stats()["replication_failures"] == 1


def test_exclusive_conflicts_are_not_outages(tmp_path: Path):
    primary, fallback = MemoryBlobBackend(), MemoryBlobBackend()
    blobs = FailoverBlobBackend(primary, fallback)
    blobs.write_bytes("cas", b"one", exclusive=True)
    with pytest.raises(BlobExistsError):
        blobs.write_bytes("cas", b"two", exclusive=True)
    assert primary.read_bytes("cas") == b"one"
    assert len(fallback) == 0
    assert blobs.stats()["fallback_writes"] == 0


def test_delete_with_the_primary_down(outage):
    primary = outage.primary
    fallback = outage.fallback
    proxy = outage.proxy
    replicated = FailoverBlobBackend(primary, fallback, replicate_writes=True)
    info = replicated.write_bytes("abcdef", b"x")
    proxy.fail_always("drop")
    assert replicated.delete(info.ref) is True  # removed from the fallback at least
    assert not fallback.exists("abcdef")
    assert replicated.stats()["missed_primary_deletes"] == 1


def test_different_sharding_is_translated(tmp_path: Path):
    primary = MemoryBlobBackend(shard_chars=2)
    fallback = FilesystemBlobBackend(tmp_path / "flat", shard_chars=0)
    blobs = FailoverBlobBackend(primary, fallback, replicate_writes=True)
    info = blobs.write_bytes("abcdef", b"x")
    assert (tmp_path / "flat" / "abcdef").read_bytes() == b"x"
    fallback.write_bytes("only-on-fallback", b"y")
    assert set(blobs.iter_refs()) == {"ab/abcdef", "on/only-on-fallback"}
    assert set(blobs.iter_refs("on/")) == {"on/only-on-fallback"}
    assert blobs.read_bytes("on/only-on-fallback") == b"y"
    assert blobs.local_path("on/only-on-fallback") == (tmp_path / "flat" / "only-on-fallback")
    assert blobs.delete_many([info.ref, "on/only-on-fallback"]) == 2
    assert blobs.scope == "process"


def test_both_down_is_an_error(tmp_path: Path, outage):
    primary = outage.primary
    proxy = outage.proxy
    dead = FailoverBlobBackend(primary, BrokenWrites())
    proxy.fail_always("drop")
    with pytest.raises((BackendUnavailableError, StorageError)):
        dead.write_bytes("nowhere", b"x")


def test_cleanup_covers_both_backends(tmp_path: Path):
    primary = FilesystemBlobBackend(tmp_path / "primary")
    fallback = FilesystemBlobBackend(tmp_path / "fallback")
    debris = []
    for root in (tmp_path / "primary", tmp_path / "fallback"):
        (root / "ab").mkdir(parents=True, exist_ok=True)
        debris.append(root / "ab" / ".cacheness-tmp-0123456789abcdef")
        debris[-1].write_bytes(b"half a blob")
    blobs = FailoverBlobBackend(primary, fallback)
    assert blobs.cleanup_temp_files(0, dry_run=True) == 2
    assert all(path.exists() for path in debris)
    assert blobs.cleanup_temp_files(0) == 2
    assert not any(path.exists() for path in debris)


def test_capabilities_follow_the_parts_and_are_read_only(tmp_path: Path):
    local = FilesystemBlobBackend(tmp_path / "a")
    both_local = FailoverBlobBackend(local, FilesystemBlobBackend(tmp_path / "b"))
    with_memory = FailoverBlobBackend(local, MemoryBlobBackend())
    assert (both_local.scope, both_local.supports_local_path) == ("host", True)
    assert (with_memory.scope, with_memory.supports_local_path) == ("process", True)
    assert with_memory.exact_delete_counts
    with pytest.raises(AttributeError):
        both_local.scope = "shared"  # type: ignore[misc]
