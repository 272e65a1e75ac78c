"""The BlobBackend ABC: abstract core, defaults built on it, names and sharding."""

from __future__ import annotations

import gc
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheness.storage import (
    BlobBackend,
    BlobInfo,
    BlobWriter,
    FilesystemBlobBackend,
    MemoryBlobBackend,
    get_blob_backend,
    hash_bytes,
    list_blob_backends,
)
from cacheness.storage._blob._sharding import shard, unshard, validate_name, validate_shard_chars
from cacheness.storage.errors import (
    BlobExistsError,
    ConfigError,
    InvalidBlobNameError,
)
from cacheness.storage.testing.blob import BlobBackendConformance, blob_backend_state_machine


class _DictWriter(BlobWriter):
    def __init__(self, backend: PrimitivesOnly, name: str, exclusive: bool) -> None:
        super().__init__(name, backend.ref_for(name))
        self._backend = backend
        self._exclusive = exclusive
        self._parts: list[bytes] = []

    def _write(self, data: memoryview) -> None:
        self._parts.append(bytes(data))

    def _commit(self, size: int, content_hash: str) -> BlobInfo:
        with self._backend.lock:
            if self._exclusive and self.ref in self._backend.data:
                raise BlobExistsError(self.ref)
            self._backend.data[self.ref] = b"".join(self._parts)
        return BlobInfo(self.ref, size, content_hash)

    def _abort(self) -> None:
        self._parts = []


class PrimitivesOnly(BlobBackend):
    """Implements only the six abstract methods: every default comes from the ABC."""

    name = "primitives-only"

    def __init__(self, shard_chars: int = 2) -> None:
        import threading

        super().__init__(shard_chars=shard_chars)
        self.data: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def open_write(self, name: str, *, exclusive: bool = False) -> BlobWriter:
        return _DictWriter(self, name, exclusive)

    def open_read(self, ref: str) -> BinaryIO:
        self._check_ref(ref)
        with self.lock:
            if ref not in self.data:
                raise self._not_found(ref)
            return io.BytesIO(self.data[ref])

    def stat(self, ref: str) -> BlobInfo:
        with self.open_read(ref) as stream:
            data = stream.read()
        return BlobInfo(ref, len(data), hash_bytes(data))

    def delete(self, ref: str) -> bool:
        self._check_ref(ref)
        with self.lock:
            return self.data.pop(ref, None) is not None

    def exists(self, ref: str) -> bool:
        self._check_ref(ref)
        return ref in self.data

    def iter_refs(self, prefix: str = "") -> Iterator[str]:
        with self.lock:
            return iter(sorted(ref for ref in self.data if ref.startswith(prefix)))


class TestPrimitivesOnly(BlobBackendConformance):
    """The ABC's default methods are correct on their own."""

    large_size = 8 << 20

    @pytest.fixture
    def backend(self) -> Iterator[PrimitivesOnly]:
        with PrimitivesOnly() as blobs:
            yield blobs

    @pytest.fixture
    def ground_truth(self, backend: PrimitivesOnly):
        return backend.data.get


def test_incomplete_subclass_cannot_be_instantiated():
    class Incomplete(BlobBackend):
        def open_read(self, ref: str) -> BinaryIO:
            raise NotImplementedError

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_incomplete_writer_cannot_be_instantiated():
    class HalfWriter(BlobWriter):
        def _write(self, data: memoryview) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        HalfWriter("a", "a")  # type: ignore[abstract]


class NoRecordedHash(PrimitivesOnly):
    """Like an S3 object written by another tool: stat() knows no content hash."""

    def stat(self, ref: str) -> BlobInfo:
        return BlobInfo(ref, super().stat(ref).size, "")


def test_verify_reads_when_no_hash_is_recorded():
    blobs = NoRecordedHash()
    info = blobs.write_bytes("abcdef", b"payload")
    assert blobs.stat(info.ref).content_hash == ""
    assert blobs.verify(info.ref, hash_bytes(b"payload"))
    assert not blobs.verify(info.ref, hash_bytes(b"other"))


def test_default_copy_and_delete_many():
    blobs = PrimitivesOnly()
    source = blobs.write_bytes("abcdef", b"data")
    copied = blobs.copy(source.ref, "xyz123")
    assert (copied.ref, blobs.data["xy/xyz123"]) == ("xy/xyz123", b"data")
    assert blobs.delete_many([source.ref, copied.ref, "zz/zzz"]) == 2
    assert blobs.data == {}


def test_forgotten_writer_is_aborted_by_garbage_collection(tmp_path: Path):
    blobs = FilesystemBlobBackend(tmp_path)
    writer = blobs.open_write("abcdef")
    writer.write(b"never committed")
    assert len(list(tmp_path.rglob(".cacheness-tmp-*"))) == 1
    del writer
    gc.collect()
    assert list(tmp_path.rglob(".cacheness-tmp-*")) == []
    assert not blobs.exists("ab/abcdef")


def test_writer_accepts_any_contiguous_buffer():
    blobs = MemoryBlobBackend()
    with blobs.open_write("buffers") as writer:
        writer.write(b"ab")
        writer.write(bytearray(b"cd"))
        writer.write(memoryview(b"xxefxx")[2:4])
        assert writer.write(b"") == 0
    assert blobs.read_bytes("buffers") == b"abcdef"


def test_blob_info_is_frozen():
    info = BlobInfo("a", 1, "0" * 32, etag="e")
    with pytest.raises(AttributeError):
        info.size = 2  # type: ignore[misc]


# -- names and sharding ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 5, 2.0, "2", True, None])
def test_shard_chars_out_of_range(value):
    with pytest.raises(ConfigError, match="shard_chars"):
        validate_shard_chars(value)
    with pytest.raises(ConfigError):
        MemoryBlobBackend(shard_chars=value)


@pytest.mark.parametrize("good", ["a", "abc/def", "x" * 255, "ünïcödé/名前", "a.b-c_d", "...a"])
def test_valid_names(good):
    assert validate_name(good) == good


def test_name_errors_say_what_is_wrong():
    with pytest.raises(InvalidBlobNameError, match="absolute"):
        validate_name("/etc/passwd")
    with pytest.raises(InvalidBlobNameError, match=r"'\.\.'"):
        validate_name("a/../../etc")
    with pytest.raises(InvalidBlobNameError, match="empty segment"):
        validate_name("a//b")
    with pytest.raises(InvalidBlobNameError, match="backslash"):
        validate_name("a\\b")
    with pytest.raises(InvalidBlobNameError, match="NUL"):
        validate_name("a\x00")
    with pytest.raises(InvalidBlobNameError, match="reserved"):
        validate_name("x/.cacheness-index.sqlite")
    with pytest.raises(InvalidBlobNameError, match="1024"):
        validate_name("/".join(["x" * 200] * 6))
    with pytest.raises(InvalidBlobNameError, match="must be a str"):
        validate_name(b"bytes")
    with pytest.raises(InvalidBlobNameError, match="UTF-8"):
        validate_name("\udc80")
    assert isinstance(InvalidBlobNameError("x"), ValueError)


def test_unshard_rejects_foreign_refs():
    with pytest.raises(InvalidBlobNameError, match="not sharded"):
        unshard("xx/abcdef", 2)
    with pytest.raises(InvalidBlobNameError, match="not sharded"):
        unshard("abcdef", 2)


segment = st.text(
    alphabet=st.characters(blacklist_categories=["Cc", "Cs"], blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not s.startswith(".cacheness-"))


@settings(max_examples=200)
@given(segments=st.lists(segment, min_size=1, max_size=4), k=st.integers(0, 4))
def test_shard_round_trip(segments, k):
    name = validate_name("/".join(segments))
    ref = shard(name, k)
    assert unshard(ref, k) == name
    assert validate_name(ref) == ref
    last = segments[-1]
    if k and len(last) >= k and last[:k].strip("."):
        assert ref.endswith(f"{last[:k]}/{last}")
    else:  # too short, or the shard directory would be "." or "..": not sharded
        assert ref == name


# -- registry ------------------------------------------------------------------------------


def test_registry_knows_every_backend(tmp_path: Path):
    assert {"filesystem", "memory", "s3", "tiered", "failover"} <= set(list_blob_backends())
    fs = get_blob_backend("filesystem", root=tmp_path / "fs", shard_chars=1)
    assert isinstance(fs, FilesystemBlobBackend)
    assert fs.write_bytes("abc", b"x").ref == "a/abc"
    tiered = get_blob_backend(
        "tiered", remote={"backend": "memory", "shard_chars": 2}, cache_dir=tmp_path / "c"
    )
    assert tiered.write_bytes("abcdef", b"y").ref == "ab/abcdef"
    assert tiered.remote.read_bytes("ab/abcdef") == b"y"
    failover = get_blob_backend("failover", primary="memory", fallback={"backend": "memory"})
    assert failover.scope == "process"
    tiered.close()
    with pytest.raises(ConfigError, match="'backend' key"):
        get_blob_backend("tiered", remote={"bucket": "x"}, cache_dir=tmp_path / "d")
    with pytest.raises(ConfigError, match="unknown blob backend"):
        get_blob_backend("tiered", remote="nosuch", cache_dir=tmp_path / "e")


# -- stateful: backends against a dict model -------------------------------------------------

TestMemoryStateful = blob_backend_state_machine(lambda: MemoryBlobBackend(shard_chars=2)).TestCase
TestMemoryStateful.settings = settings(max_examples=40, stateful_step_count=25)


def _fs_backend() -> FilesystemBlobBackend:
    return FilesystemBlobBackend(tempfile.mkdtemp(prefix="cacheness-stateful-"), shard_chars=2)


def _remove_root(backend: BlobBackend) -> None:
    assert isinstance(backend, FilesystemBlobBackend)
    shutil.rmtree(backend.root)


TestFilesystemStateful = blob_backend_state_machine(_fs_backend, _remove_root).TestCase
TestFilesystemStateful.settings = settings(max_examples=25, stateful_step_count=25)
