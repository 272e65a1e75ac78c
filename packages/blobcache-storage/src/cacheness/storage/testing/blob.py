"""Conformance suite for blob backends, reusable by plugin authors.

Call ``pytest.register_assert_rewrite("cacheness.storage.testing.blob")`` in your
``conftest.py`` (before importing this module) for detailed assertion messages.
Subclass :class:`BlobBackendConformance` in a test module (name it ``Test...``) and
provide a ``backend`` fixture; optionally a ``ground_truth`` fixture that reads a
reference's bytes *around* the backend (the file on disk, the object through a plain
boto3 client), so the suite checks what was really stored, not just what the backend
says::

    import pytest
    from cacheness.storage.testing.blob import BlobBackendConformance
    from my_package import MyBlobBackend

    class TestMyBackend(BlobBackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            with MyBlobBackend(tmp_path) as blobs:
                yield blobs

        @pytest.fixture
        def ground_truth(self, tmp_path):
            def read(ref):
                path = tmp_path / ref
                return path.read_bytes() if path.is_file() else None
            return read

The suite covers round trips from 0 bytes to ``large_size`` (64 MiB by default, once per
backend) through streams and bytes, abort and exceptions leaving nothing behind,
exclusive writes, stat/exists/delete/iter_refs/copy/delete_many semantics, the sharding
layout, name validation, content hashes, concurrent writers of different names and of
one name (one complete version wins, never a mix) and readers during writes.

:func:`blob_backend_state_machine` builds a hypothesis state machine that compares a
backend with a dict model.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cacheness.storage._blob.base import BlobBackend
from cacheness.storage._hashing import ContentHasher, hash_bytes
from cacheness.storage.errors import (
    BlobExistsError,
    BlobNotFoundError,
    InvalidBlobNameError,
)

__all__ = [
    "INVALID_NAMES",
    "BlobBackendConformance",
    "GroundTruth",
    "blob_backend_state_machine",
    "pattern",
]

GroundTruth = Callable[[str], "bytes | None"]
"""Reads a reference's bytes around the backend; None when nothing is stored there."""

INVALID_NAMES = (
    "",
    "/absolute",
    "a/../b",
    "..",
    ".",
    "a//b",
    "trailing/",
    "back\\slash",
    "nul\x00byte",
    "ctrl\x01char",
    ".cacheness-tmp-0123",
    "x" * 256,
)
"""Names every backend must refuse with :class:`InvalidBlobNameError`."""

_MiB = 1 << 20
_SMALL_SIZES = (0, 1, 4097, _MiB + 7)


def pattern(size: int, seed: int = 0) -> bytes:
    """Return ``size`` pseudo-random bytes, the same for the same ``seed``.

    Example:
        >>> pattern(4, seed=1) == pattern(4, seed=1) != pattern(4, seed=2)
        True
    """
    return random.Random(seed).randbytes(size)


def _name(tag: str) -> str:
    """A fresh content-address-like name (hex, long enough to shard)."""
    return hash_bytes(f"{tag}-{random.random()}".encode())


class BlobBackendConformance:
    """Tests every :class:`BlobBackend` must pass; subclass it with a ``backend`` fixture.

    Class attributes to tune per backend:

    * ``large_size``: size of the one large round trip (default 64 MiB).
    * ``writers``: threads in the concurrency tests (default 6).
    """

    large_size: ClassVar[int] = 64 * _MiB
    writers: ClassVar[int] = 6

    @pytest.fixture
    def backend(self) -> Iterator[BlobBackend]:
        """The backend under test: override this fixture."""
        raise NotImplementedError("subclasses provide a `backend` fixture")

    @pytest.fixture
    def ground_truth(self) -> GroundTruth | None:
        """Reads bytes around the backend; override it (None skips those checks)."""
        return None

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _check_stored(ground_truth: GroundTruth | None, ref: str, expected: bytes | None) -> None:
        if ground_truth is not None:
            assert ground_truth(ref) == expected, f"bytes stored at {ref!r} differ"

    # -- round trips ----------------------------------------------------------------------

    @pytest.mark.parametrize("size", _SMALL_SIZES)
    def test_bytes_round_trip(
        self, backend: BlobBackend, ground_truth: GroundTruth | None, size: int
    ) -> None:
        data = pattern(size, seed=size)
        name = _name("bytes")
        info = backend.write_bytes(name, data)
        assert info.ref == backend.ref_for(name)
        assert info.size == size
        assert info.content_hash == hash_bytes(data)
        assert backend.read_bytes(info.ref) == data
        stat = backend.stat(info.ref)
        assert (stat.ref, stat.size, stat.content_hash) == (info.ref, size, hash_bytes(data))
        self._check_stored(ground_truth, info.ref, data)

    @pytest.mark.parametrize("size", _SMALL_SIZES)
    def test_stream_round_trip(
        self, backend: BlobBackend, ground_truth: GroundTruth | None, size: int
    ) -> None:
        data = pattern(size, seed=size + 1)
        name = _name("stream")
        with backend.open_write(name) as writer:
            offset, step = 0, 1
            while offset < size:  # uneven chunks: 1, 2, 4, ... bytes
                piece = data[offset : offset + step]
                assert writer.write(piece) == len(piece)
                offset += step
                step = min(step * 2, 300_000)
            assert writer.tell() == size
        assert writer.info is not None
        assert (writer.info.size, writer.info.content_hash) == (size, hash_bytes(data))
        with backend.open_read(writer.info.ref) as stream:
            first = stream.read(10)
            rest = stream.read()
        assert first + rest == data
        self._check_stored(ground_truth, writer.info.ref, data)

    def test_large_round_trip(self, backend: BlobBackend, ground_truth: GroundTruth | None) -> None:
        size, chunk = self.large_size, 4 * _MiB
        rng = random.Random(64)
        written = ContentHasher()
        name = _name("large")
        with backend.open_write(name) as writer:
            remaining = size
            while remaining:
                piece = rng.randbytes(min(chunk, remaining))
                written.update(piece)
                writer.write(piece)
                remaining -= len(piece)
        assert writer.info is not None
        assert writer.info.size == size
        assert writer.info.content_hash == written.hexdigest()
        read, total = ContentHasher(), 0
        with backend.open_read(writer.info.ref) as stream:
            while piece := stream.read(chunk):
                read.update(piece)
                total += len(piece)
        assert (total, read.hexdigest()) == (size, written.hexdigest())
        assert backend.stat(writer.info.ref).content_hash == written.hexdigest()
        if ground_truth is not None:
            stored = ground_truth(writer.info.ref)
            assert stored is not None
            assert hash_bytes(stored) == written.hexdigest()
        assert backend.delete(writer.info.ref)

    def test_memoryview_of_typed_array(self, backend: BlobBackend) -> None:
        import array

        values = array.array("d", [1.5, -2.25, 3.0])
        info = backend.write_bytes(_name("typed"), memoryview(values))
        assert backend.read_bytes(info.ref) == values.tobytes()

    def test_file_round_trip(self, backend: BlobBackend, tmp_path: Path) -> None:
        workdir = tmp_path / "conformance-files"
        workdir.mkdir()
        source = workdir / "source.bin"
        data = pattern(3 * _MiB + 5, seed=3)
        source.write_bytes(data)
        info = backend.write_from_file(_name("file"), source)
        assert (info.size, info.content_hash) == (len(data), hash_bytes(data))
        target = workdir / "target.bin"
        backend.read_to_file(info.ref, target)
        assert target.read_bytes() == data
        assert sorted(path.name for path in workdir.iterdir()) == ["source.bin", "target.bin"]

    def test_read_to_file_of_missing_blob_leaves_target(
        self, backend: BlobBackend, tmp_path: Path
    ) -> None:
        workdir = tmp_path / "conformance-files"
        workdir.mkdir()
        target = workdir / "keep.bin"
        target.write_bytes(b"old")
        with pytest.raises(BlobNotFoundError):
            backend.read_to_file(backend.ref_for(_name("missing")), target)
        assert target.read_bytes() == b"old"
        assert [path.name for path in workdir.iterdir()] == ["keep.bin"]

    def test_write_from_missing_file(self, backend: BlobBackend, tmp_path: Path) -> None:
        name = _name("nofile")
        with pytest.raises(FileNotFoundError):
            backend.write_from_file(name, tmp_path / "absent")
        assert not backend.exists(backend.ref_for(name))

    # -- nothing visible until commit -----------------------------------------------------

    def test_abort_leaves_nothing(
        self, backend: BlobBackend, ground_truth: GroundTruth | None
    ) -> None:
        name = _name("abort")
        ref = backend.ref_for(name)
        writer = backend.open_write(name)
        writer.write(b"partial data")
        assert not backend.exists(ref)
        writer.abort()
        writer.abort()  # twice is fine
        assert writer.state == "aborted"
        assert not backend.exists(ref)
        assert ref not in set(backend.iter_refs())
        self._check_stored(ground_truth, ref, None)
        with pytest.raises(ValueError, match="aborted"):
            writer.write(b"more")
        with pytest.raises(ValueError, match="aborted"):
            writer.commit()

    def test_exception_in_block_aborts(
        self, backend: BlobBackend, ground_truth: GroundTruth | None
    ) -> None:
        name = _name("exception")
        writer = backend.open_write(name)

        def fail_inside() -> None:
            with writer:
                writer.write(b"x" * 1000)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            fail_inside()
        assert writer.state == "aborted"
        assert writer.info is None
        assert not backend.exists(backend.ref_for(name))
        self._check_stored(ground_truth, backend.ref_for(name), None)

    def test_abort_keeps_previous_version(self, backend: BlobBackend) -> None:
        name = _name("keep")
        info = backend.write_bytes(name, b"version 1")
        with backend.open_write(name) as writer:
            writer.write(b"version 2, never committed")
            writer.abort()
        assert backend.read_bytes(info.ref) == b"version 1"

    def test_close_before_commit_aborts(self, backend: BlobBackend) -> None:
        name = _name("close")
        writer = backend.open_write(name)
        writer.write(b"abc")
        writer.close()
        assert writer.closed
        assert writer.state == "aborted"
        assert not backend.exists(backend.ref_for(name))

    def test_writer_after_commit(self, backend: BlobBackend) -> None:
        writer = backend.open_write(_name("done"))
        assert writer.writable()
        assert not writer.readable()
        writer.write(b"abc")
        info = writer.commit()
        assert writer.info == info
        assert writer.state == "committed"
        assert writer.closed
        with pytest.raises(ValueError, match="committed"):
            writer.write(b"more")
        with pytest.raises(ValueError, match="committed"):
            writer.commit()
        writer.abort()  # no effect once committed
        assert backend.read_bytes(info.ref) == b"abc"

    def test_overwrite_replaces(self, backend: BlobBackend) -> None:
        name = _name("over")
        backend.write_bytes(name, b"first, longer version")
        info = backend.write_bytes(name, b"second")
        assert backend.read_bytes(info.ref) == b"second"
        assert backend.stat(info.ref).size == 6

    def test_exclusive_write_is_create_only(
        self, backend: BlobBackend, ground_truth: GroundTruth | None
    ) -> None:
        name = _name("exclusive")
        info = backend.write_bytes(name, b"original", exclusive=True)
        with pytest.raises(BlobExistsError):
            backend.write_bytes(name, b"intruder", exclusive=True)
        with pytest.raises(BlobExistsError), backend.open_write(name, exclusive=True) as writer:
            writer.write(b"intruder by stream")
        assert backend.read_bytes(info.ref) == b"original"
        self._check_stored(ground_truth, info.ref, b"original")

    # -- metadata and listing ---------------------------------------------------------------

    def test_missing_blob_errors(self, backend: BlobBackend) -> None:
        ref = backend.ref_for(_name("missing"))
        for call in (backend.open_read, backend.read_bytes, backend.stat):
            with pytest.raises(BlobNotFoundError) as raised:
                call(ref)
            assert isinstance(raised.value, KeyError)
        with pytest.raises(BlobNotFoundError):
            backend.copy(ref, _name("copy-of-missing"))
        assert backend.exists(ref) is False

    def test_delete(self, backend: BlobBackend, ground_truth: GroundTruth | None) -> None:
        info = backend.write_bytes(_name("delete"), b"bye")
        assert backend.exists(info.ref) is True
        assert backend.delete(info.ref) is True
        assert backend.exists(info.ref) is False
        # S3 cannot tell a deleted object from one that never was: it says True again
        assert backend.delete(info.ref) is not backend.exact_delete_counts
        self._check_stored(ground_truth, info.ref, None)

    def test_iter_refs(self, backend: BlobBackend) -> None:
        names = [_name("list") for _ in range(3)] + ["runs/" + _name("nested"), "zq"]
        refs = {backend.write_bytes(name, name.encode()).ref for name in names}
        pending = backend.open_write(_name("pending"))
        pending.write(b"not committed")
        try:
            assert set(backend.iter_refs()) == refs
        finally:
            pending.abort()
        nested = backend.ref_for(names[3])
        assert set(backend.iter_refs("runs/")) == {nested}
        assert set(backend.iter_refs(nested[:-3])) == {nested}
        assert list(backend.iter_refs("nothing-here/")) == []

    def test_copy(self, backend: BlobBackend, ground_truth: GroundTruth | None) -> None:
        data = pattern(70_000, seed=7)
        source = backend.write_bytes(_name("copy-src"), data)
        target_name = _name("copy-dst")
        backend.write_bytes(target_name, b"to be replaced")
        copied = backend.copy(source.ref, target_name)
        assert copied.ref == backend.ref_for(target_name)
        assert (copied.size, copied.content_hash) == (len(data), hash_bytes(data))
        assert backend.read_bytes(copied.ref) == data
        assert backend.read_bytes(source.ref) == data
        assert backend.stat(copied.ref).content_hash == hash_bytes(data)
        self._check_stored(ground_truth, copied.ref, data)

    def test_delete_many(self, backend: BlobBackend) -> None:
        refs = [backend.write_bytes(_name("many"), b"x").ref for _ in range(4)]
        absent = backend.ref_for(_name("absent"))
        count = backend.delete_many([*refs, absent])
        if backend.exact_delete_counts:
            assert count == 4
        else:
            assert 4 <= count <= 5
        assert not any(backend.exists(ref) for ref in refs)
        assert backend.delete_many([]) == 0

    def test_verify_and_hash(self, backend: BlobBackend) -> None:
        data = pattern(123_457, seed=11)
        info = backend.write_bytes(_name("verify"), data)
        assert backend.verify(info.ref, hash_bytes(data)) is True
        assert backend.verify(info.ref, hash_bytes(data + b"!")) is False
        if info.etag:
            assert backend.verify(info.ref, info.etag) is True
        with pytest.raises(BlobNotFoundError):
            backend.verify(backend.ref_for(_name("nothing")), hash_bytes(data))

    def test_location_and_local_path(self, backend: BlobBackend) -> None:
        info = backend.write_bytes(_name("where"), b"here")
        location = backend.location(info.ref)
        assert "://" in location
        assert info.ref.split("/")[-1] in location
        path = backend.local_path(info.ref)
        if path is not None:
            assert backend.supports_local_path
            assert path.read_bytes() == b"here"

    # -- names and sharding -----------------------------------------------------------------

    def test_sharding_layout(self, backend: BlobBackend, ground_truth: GroundTruth | None) -> None:
        k = backend.shard_chars
        name = "abcdef0123456789"
        expected = f"{name[:k]}/{name}" if k else name
        assert backend.ref_for(name) == expected
        assert backend.ref_for(f"runs/{name}") == f"runs/{expected}"
        assert backend.ref_for("a") == "a"  # shorter than the shard: stored unsharded
        assert backend.name_for(expected) == name
        info = backend.write_bytes(name, b"sharded")
        assert info.ref == expected
        self._check_stored(ground_truth, expected, b"sharded")

    @pytest.mark.parametrize("bad", INVALID_NAMES)
    def test_invalid_names_are_refused(self, backend: BlobBackend, bad: str) -> None:
        with pytest.raises(InvalidBlobNameError):
            backend.open_write(bad)
        with pytest.raises(InvalidBlobNameError):
            backend.write_bytes(bad, b"x")
        with pytest.raises(InvalidBlobNameError):
            backend.open_read(bad)
        with pytest.raises(InvalidBlobNameError):
            backend.delete(bad)

    # -- concurrency ------------------------------------------------------------------------

    def test_concurrent_writers_of_different_names(self, backend: BlobBackend) -> None:
        payloads = {_name(f"thread-{i}"): pattern(200_000 + i, seed=i) for i in range(self.writers)}

        def write(name: str, data: bytes) -> None:
            with backend.open_write(name) as writer:
                for offset in range(0, len(data), 65_536):
                    writer.write(data[offset : offset + 65_536])

        _run_threads([functools.partial(write, n, d) for n, d in payloads.items()])
        for name, data in payloads.items():
            assert backend.read_bytes(backend.ref_for(name)) == data

    def test_concurrent_writers_of_one_name(
        self, backend: BlobBackend, ground_truth: GroundTruth | None
    ) -> None:
        name = _name("contended")
        size = 300_000
        versions = [bytes([i + 1]) * size for i in range(self.writers)]
        barrier = threading.Barrier(self.writers)

        def write(data: bytes) -> None:
            with backend.open_write(name) as writer:
                barrier.wait(timeout=60)
                for offset in range(0, size, 50_000):  # interleave the writers' chunks
                    writer.write(data[offset : offset + 50_000])

        _run_threads([functools.partial(write, d) for d in versions])
        ref = backend.ref_for(name)
        final = backend.read_bytes(ref)
        assert final in versions, "the blob mixes bytes of several writers"
        assert backend.stat(ref).content_hash == hash_bytes(final)
        self._check_stored(ground_truth, ref, final)
        assert list(backend.iter_refs(ref)) == [ref]

    def test_readers_during_writes(self, backend: BlobBackend) -> None:
        name = _name("busy")
        size = 200_000
        versions = [bytes([i + 1]) * size for i in range(4)]
        ref = backend.write_bytes(name, versions[0]).ref
        done = threading.Event()

        def write() -> None:
            try:
                for round_ in range(12):
                    backend.write_bytes(name, versions[round_ % len(versions)])
            finally:
                done.set()

        def read() -> list[bytes]:
            seen: list[bytes] = []
            while not done.is_set() or len(seen) < 3:
                seen.append(backend.read_bytes(ref))
            return seen

        results = _run_threads([write, read, read])
        snapshots = results[1] + results[2]
        assert all(snapshot in versions for snapshot in snapshots), "a reader saw a partial blob"


def _run_threads(targets: list[Callable[[], Any]]) -> list[Any]:
    """Run every target in its own thread at once; return results, re-raising errors."""
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = [pool.submit(target) for target in targets]
        return [future.result(timeout=300) for future in futures]


def blob_backend_state_machine(
    factory: Callable[[], BlobBackend],
    cleanup: Callable[[BlobBackend], None] | None = None,
) -> type:
    """Build a hypothesis state machine comparing ``factory()``'s backend with a dict.

    Rules write (plain, exclusive, streamed-then-aborted), read, delete, copy and check
    ``exists``; an invariant compares ``iter_refs`` with the model after every step.

    Args:
        factory: makes a fresh, empty backend for every example.
        cleanup: called with the backend after each example (e.g. remove its root).

    Returns:
        A ``RuleBasedStateMachine`` subclass; run it with ``Machine.TestCase``.

    Example:
        >>> from cacheness.storage import MemoryBlobBackend
        >>> Machine = blob_backend_state_machine(lambda: MemoryBlobBackend(shard_chars=2))
        >>> Machine.__name__
        'BlobBackendStateMachine'
    """
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

    names = st.sampled_from(["abcdef", "abcxyz", "abzzzz", "runs/abcdef", "q", "runs/q"])
    payloads = st.binary(max_size=3000)

    class BlobBackendStateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.backend = factory()
            self.model: dict[str, bytes] = {}

        @rule(name=names, data=payloads, exclusive=st.booleans())
        def write(self, name: str, data: bytes, exclusive: bool) -> None:
            ref = self.backend.ref_for(name)
            if exclusive and ref in self.model:
                with pytest.raises(BlobExistsError):
                    self.backend.write_bytes(name, data, exclusive=True)
                return
            info = self.backend.write_bytes(name, data, exclusive=exclusive)
            assert (info.ref, info.size, info.content_hash) == (ref, len(data), hash_bytes(data))
            self.model[ref] = data

        @rule(name=names, data=payloads)
        def aborted_stream(self, name: str, data: bytes) -> None:
            with self.backend.open_write(name) as writer:
                writer.write(data)
                writer.abort()

        @rule(name=names)
        def read(self, name: str) -> None:
            ref = self.backend.ref_for(name)
            if ref in self.model:
                assert self.backend.read_bytes(ref) == self.model[ref]
                assert self.backend.stat(ref).size == len(self.model[ref])
            else:
                with pytest.raises(BlobNotFoundError):
                    self.backend.read_bytes(ref)

        @rule(name=names)
        def delete(self, name: str) -> None:
            ref = self.backend.ref_for(name)
            deleted = self.backend.delete(ref)
            assert deleted is (ref in self.model or not self.backend.exact_delete_counts)
            self.model.pop(ref, None)

        @rule(source=names, destination=names)
        def copy(self, source: str, destination: str) -> None:
            ref = self.backend.ref_for(source)
            if ref not in self.model:
                with pytest.raises(BlobNotFoundError):
                    self.backend.copy(ref, destination)
                return
            info = self.backend.copy(ref, destination)
            self.model[info.ref] = self.model[ref]

        @invariant()
        def listing_matches(self) -> None:
            assert sorted(self.backend.iter_refs()) == sorted(self.model)
            for ref in self.model:
                assert self.backend.exists(ref)

        def teardown(self) -> None:
            self.backend.close()
            if cleanup is not None:
                cleanup(self.backend)

    return BlobBackendStateMachine
