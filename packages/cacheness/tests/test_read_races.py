"""A cache read racing a writer is a hit or a miss, never an error (deterministic races).

The writer's operation is injected between the index read and the blob open by a blob
backend with a one-shot hook (fault injection). On code that took the vanished blob of
a replaced or deleted entry for damage, each test fails every time: the read was
counted in ``get_stats()["errors"]``, logged with advice to run repair, removed, and
raised on a ``strict`` cache. The threaded and multi-process stress tests are in
``test_read_stress.py``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness import IntegrityError, cacheness
from cacheness.storage import (
    BlobNotFoundError,
    FilesystemBlobBackend,
    MemoryBlobBackend,
    S3BlobBackend,
    TieredBlobBackend,
)

Hook = Callable[[str], None]


class Hooks:
    """Fault injection mixed into a real blob backend: ``before_open`` hooks run once
    each, between the index read and the blob open; ``on_missing`` after an open
    found the blob missing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_open: list[Hook] = []
        self.on_missing: list[Hook] = []

    def open_read(self, ref: str):  # type: ignore[no-untyped-def]
        if self.before_open:
            self.before_open.pop(0)(ref)
        try:
            return super().open_read(ref)  # type: ignore[misc]
        except BlobNotFoundError:
            if self.on_missing:
                self.on_missing.pop(0)(ref)
            raise


class HookedMemory(Hooks, MemoryBlobBackend):
    pass


class HookedFilesystem(Hooks, FilesystemBlobBackend):
    pass


class HookedS3(Hooks, S3BlobBackend):
    pass


class HookedTiered(Hooks, TieredBlobBackend):
    pass


def value(seed: int) -> bytes:
    return random.Random(seed).randbytes(120_000)  # a blob: incompressible, not inline


KINDS = ["memory", "sqlite+filesystem", "content-addressed", "tiered", "postgresql+s3"]


@pytest.fixture
def open_cache(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Any
) -> Iterator[Callable[..., cacheness]]:
    """``open_cache(kind, strict=...)``: a cache whose blob backend takes hooks."""
    made: list[cacheness] = []

    def open_one(kind: str, **overrides: Any) -> cacheness:
        options: dict[str, Any] = {"cache_dir": str(tmp_path / "cache"), **overrides}
        if kind == "memory":
            options.update(metadata_backend="memory", blob_backend=HookedMemory())
        elif kind in ("sqlite+filesystem", "content-addressed"):
            options["blob_backend"] = HookedFilesystem(tmp_path / "blobs")
            if kind == "content-addressed":
                options["serialization"] = {"content_addressable": True}
        elif kind == "tiered":
            remote = MemoryBlobBackend(shard_chars=2)
            options.update(
                metadata_backend="memory", blob_backend=HookedTiered(remote, tmp_path / "tiered")
            )
        else:
            bucket = request.getfixturevalue("s3_bucket")
            options.update(
                metadata_backend="postgresql",
                metadata_backend_options={"url": request.getfixturevalue("fresh_postgres_url")},
                blob_backend=HookedS3(bucket.name, **bucket.endpoint.client_options()),
            )
        cache = cacheness(clock=clock, **options)
        made.append(cache)
        return cache

    yield open_one
    for cache in made:
        blobs = cache.store.blobs
        cache.close()
        blobs.close()


def hooks(cache: cacheness) -> Hooks:
    blobs = cache.store.blobs
    assert isinstance(blobs, Hooks)
    return blobs


READS: dict[str, Callable[[cacheness], Any]] = {
    "get": lambda cache: cache.get(item=1, default="MISS"),
    "get_with_metadata": lambda cache: (cache.get_with_metadata(item=1) or ("MISS",))[0],
    "get_batch": lambda cache: cache.get_batch([{"item": 1}], default="MISS")[0],
}


def assert_no_error_reported(cache: cacheness, caplog: pytest.LogCaptureFixture) -> None:
    assert cache.get_stats()["errors"] == 0
    assert "repair" not in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_value_replaced_during_a_read_is_a_hit_on_the_new_value(
    open_cache, kind, read, strict, caplog
):
    cache = open_cache(kind, strict=strict)
    cache.put(value(1), item=1)
    hooks(cache).before_open.append(lambda ref: cache.put(value(2), item=1))
    assert READS[read](cache) == value(2)
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"]) == (1, 0)
    assert_no_error_reported(cache, caplog)
    assert cache.get(item=1) == value(2)  # kept


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_value_deleted_during_a_read_is_a_plain_miss(open_cache, kind, read, strict, caplog):
    cache = open_cache(kind, strict=strict)
    cache.put(value(1), item=1)
    hooks(cache).before_open.append(lambda ref: cache.invalidate(item=1))
    assert READS[read](cache) == "MISS"
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"]) == (0, 1)
    assert_no_error_reported(cache, caplog)


@pytest.mark.parametrize("kind", ["memory", "sqlite+filesystem"])
def test_a_replacement_already_expired_is_an_expired_miss(open_cache, clock, kind, caplog):
    """The entry followed to is checked like the first one before it is read (here one
    written by a host whose clock lags: expired when it lands)."""
    cache = open_cache(kind)
    cache.put(value(1), item=1)

    def replace_with_an_expired_one(ref: str) -> None:
        clock.advance(-100)
        cache.put(value(2), ttl_seconds=5, item=1)
        clock.advance(100)

    hooks(cache).before_open.append(replace_with_an_expired_one)
    assert cache.get(item=1, default="MISS") == "MISS"
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (0, 1, 0)
    assert cache.get_metadata(item=1, check_expiration=False) is None  # removed as expired
    assert "repair" not in caplog.text


@pytest.mark.parametrize("kind", ["memory", "sqlite+filesystem"])
def test_a_replacement_of_another_format_version_is_a_miss(open_cache, kind, caplog):
    cache = open_cache(kind)
    cache.put(value(1), item=1)
    key = cache.key_for(item=1)

    def replace_with_a_newer_format(ref: str) -> None:
        cache.put(value(2), item=1)
        cache.store.update_metadata(key, {"_cacheness": {"v": 999}})

    hooks(cache).before_open.append(replace_with_a_newer_format)
    assert cache.get(item=1, default="MISS") == "MISS"
    assert cache.get_stats()["errors"] == 0
    assert cache.store.get(key) == value(2)  # left alone for the version that wrote it
    assert "repair" not in caplog.text


def test_a_content_addressed_value_released_by_another_entrys_delete(open_cache, caplog):
    cache = open_cache("content-addressed", strict=True)
    cache.put(value(1), item=1)
    cache.put(value(1), item=2)  # shares item 1's blob

    def rewrite_and_release(ref: str) -> None:
        cache.put(value(2), item=1)
        cache.invalidate(item=2)  # the shared blob's last entry: it is deleted

    hooks(cache).before_open.append(rewrite_and_release)
    assert cache.get(item=1) == value(2)
    assert_no_error_reported(cache, caplog)


def test_a_content_addressed_value_released_and_written_again(open_cache, caplog):
    cache = open_cache("content-addressed", strict=True)
    cache.put(value(1), item=1)
    cache.put(value(1), item=2)

    def release(ref: str) -> None:
        cache.put(value(2), item=1)
        cache.invalidate(item=2)

    hooks(cache).before_open.append(release)
    hooks(cache).on_missing.append(lambda ref: cache.put(value(1), item=1))
    assert cache.get(item=1) == value(1)
    assert_no_error_reported(cache, caplog)


@pytest.mark.parametrize("kind", KINDS)
def test_a_blob_missing_under_the_current_entry_is_still_an_error(open_cache, kind, caplog):
    """The control: real damage is still logged, counted and removed (raised if strict)."""
    cache = open_cache(kind)
    cache.put(value(1), item=1)
    hooks(cache).before_open.append(lambda ref: cache.store.blobs.delete(ref))
    assert cache.get(item=1, default="MISS") == "MISS"
    assert cache.get_stats()["errors"] == 1
    assert "cannot be read back" in caplog.text
    assert cache.get_metadata(item=1) is None

    strict = open_cache(kind, strict=True)
    strict.put(value(1), item=1)
    hooks(strict).before_open.append(lambda ref: strict.store.blobs.delete(ref))
    with pytest.raises(IntegrityError, match="missing"):
        strict.get(item=1)
