"""Every blob backend in the repository passes the conformance suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import (
    FailoverBlobBackend,
    FilesystemBlobBackend,
    MemoryBlobBackend,
    S3BlobBackend,
    TieredBlobBackend,
)
from cacheness.storage.testing.blob import BlobBackendConformance

Reader = Callable[[str], bytes | None]


def _file_reader(root: Path) -> Reader:
    def read(ref: str) -> bytes | None:
        path = root / ref
        return path.read_bytes() if path.is_file() else None

    return read


class TestMemory(BlobBackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[MemoryBlobBackend]:
        with MemoryBlobBackend(shard_chars=2) as blobs:
            yield blobs

    @pytest.fixture
    def ground_truth(self, backend: MemoryBlobBackend) -> Reader:
        def read(ref: str) -> bytes | None:
            stored = backend._blobs.get(ref)
            return stored.data if stored is not None else None

        return read


class TestFilesystem(BlobBackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[FilesystemBlobBackend]:
        with FilesystemBlobBackend(tmp_path / "blobs") as blobs:
            yield blobs

    @pytest.fixture
    def ground_truth(self, tmp_path: Path) -> Reader:
        return _file_reader(tmp_path / "blobs")


class TestFilesystemFlatDurable(BlobBackendConformance):
    large_size = 8 << 20

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[FilesystemBlobBackend]:
        with FilesystemBlobBackend(tmp_path / "flat", shard_chars=0, durable=True) as blobs:
            yield blobs

    @pytest.fixture
    def ground_truth(self, tmp_path: Path) -> Reader:
        return _file_reader(tmp_path / "flat")


class TestS3(BlobBackendConformance):
    @pytest.fixture
    def backend(self, s3_options: dict[str, Any]) -> Iterator[S3BlobBackend]:
        with S3BlobBackend(prefix="team-cache", **s3_options) as blobs:
            yield blobs

    @pytest.fixture
    def ground_truth(self, s3_object: Reader) -> Reader:
        return lambda ref: s3_object(f"team-cache/{ref}")


class TestTieredOverS3(BlobBackendConformance):
    @pytest.fixture
    def backend(self, s3_options: dict[str, Any], tmp_path: Path) -> Iterator[TieredBlobBackend]:
        remote = S3BlobBackend(**s3_options)
        with TieredBlobBackend(remote, tmp_path / "cache", max_bytes=128 << 20) as blobs:
            yield blobs

    @pytest.fixture
    def ground_truth(self, s3_object: Reader) -> Reader:
        return s3_object


class TestFailover(BlobBackendConformance):
    large_size = 16 << 20

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[FailoverBlobBackend]:
        primary = FilesystemBlobBackend(tmp_path / "primary", shard_chars=2)
        fallback = MemoryBlobBackend(shard_chars=0)
        with FailoverBlobBackend(primary, fallback, replicate_writes=True) as blobs:
            yield blobs

    @pytest.fixture
    def ground_truth(self, tmp_path: Path) -> Reader:
        return _file_reader(tmp_path / "primary")
