"""The numpy handler: any non-object dtype and shape, streamed through Blosc2 in chunks."""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheness.storage import (
    FormatInfo,
    ObjectDeclinedError,
    SerializationOptions,
    default_registry,
)
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage._handlers.numpy import NumpyHandler
from cacheness.storage.errors import IntegrityError, SerializationError
from cacheness.storage.testing.handlers import (
    HandlerConformance,
    assert_arrays_identical,
    numpy_arrays,
)


class TestNumpyConformance(HandlerConformance):
    handler = NumpyHandler()
    values = numpy_arrays()
    foreign_values = (np.array([None, 1], dtype=object), [1.0], np.float64(1.0), b"x")
    max_examples = 30

    def assert_same(self, loaded, original):
        assert_arrays_identical(loaded, original)


class TestNumpyConformanceMemoryMapped(TestNumpyConformance):
    """The same suite with tiny chunks and memory-mapped loading of uncompressed blobs."""

    options: ClassVar = {"chunk_size": 64}
    file_options: ClassVar = {"mmap_mode": "r"}
    max_examples = 15

    def assert_same(self, loaded, original):
        assert loaded.dtype == original.dtype
        assert loaded.shape == original.shape
        assert np.asarray(loaded).tobytes() == original.tobytes()


def dump(array, options=DEFAULT_OPTIONS):
    sink = io.BytesIO()
    info = NumpyHandler().dump(array, sink, options)
    return info, sink.getvalue()


def load(info, stored, options=DEFAULT_OPTIONS, local_path=None):
    return NumpyHandler().load(io.BytesIO(stored), info, options, local_path=local_path)


def blosc2_chunks(stored):
    """Split a blosc2 stream into its chunks (length prefix + chunk), checking framing."""
    import blosc2

    chunks, pos = [], 0
    while pos < len(stored):
        length = int.from_bytes(stored[pos : pos + 4], "little")
        chunk = stored[pos + 4 : pos + 4 + length]
        assert len(chunk) == length
        chunks.append(blosc2.get_cbuffer_sizes(chunk)[0])
        pos += 4 + length
    return chunks


def test_compressible_array_uses_blosc2_and_shrinks():
    rng = np.random.default_rng(1)
    array = np.cumsum(rng.integers(-5, 6, 200_000)).astype(np.float64)
    info, stored = dump(array)
    assert info.codec == "blosc2"
    assert info.raw_size == array.nbytes
    assert len(stored) < 0.5 * array.nbytes
    assert_arrays_identical(load(info, stored), array)


def test_random_floats_are_stored_uncompressed():
    array = np.random.default_rng(2).random(100_000)
    info, stored = dump(array, SerializationOptions(auto_min_saving=0.5))
    assert info.codec == "none"
    assert stored == array.tobytes()


def test_small_arrays_skip_compression():
    info, stored = dump(np.arange(10))
    assert info.codec == "none"
    assert stored == np.arange(10).tobytes()


@given(
    st.integers(1, 5000),
    st.sampled_from([64, 72, 100, 1000, 4096]),
    st.sampled_from(["blosc2", "zstd", "none"]),
)
@settings(max_examples=30)
def test_chunking_streams_large_arrays_piece_by_piece(n, chunk_size, codec):
    """What lets arrays beyond 2 GB work: bounded chunks, each a whole number of elements."""
    array = np.arange(n, dtype=np.int64) * 3
    options = SerializationOptions(codec=codec, chunk_size=chunk_size)
    info, stored = dump(array, options)
    if codec == "blosc2":
        sizes = blosc2_chunks(stored)
        step = max(chunk_size - chunk_size % 8, 8)
        assert sizes == [min(step, array.nbytes - i) for i in range(0, array.nbytes, step)]
    assert_arrays_identical(load(info, stored, options), array)


@given(st.integers(2, 40), st.integers(2, 40), st.sampled_from([64, 100, 256, 100_000]))
@settings(max_examples=30)
def test_strided_arrays_are_copied_slab_by_slab(rows, cols, chunk_size):
    base = np.arange(rows * cols * 4, dtype=np.float32).reshape(rows * 2, cols * 2)
    view = base[::2, ::-2]
    assert not view.flags.c_contiguous
    options = SerializationOptions(codec="blosc2", chunk_size=chunk_size)
    info, stored = dump(view, options)
    assert "order" not in info.details  # strided arrays are stored in C order
    assert_arrays_identical(load(info, stored, options), view)


def test_fortran_arrays_load_fortran_ordered_without_reordering():
    array = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    info, stored = dump(array, SerializationOptions(codec="none"))
    assert info.details["order"] == "F"
    assert stored == array.T.tobytes()  # column-major bytes, as in memory
    back = load(info, stored)
    assert back.flags.f_contiguous
    assert_arrays_identical(back, array)


@pytest.mark.parametrize(
    "array",
    [
        np.array(3.5),
        np.array(np.datetime64("2026-01-02T03:04:05.123456789")),
        np.zeros((0, 4), dtype=np.complex128),
        np.array([True, False, True]),
        np.array(["2026-01-01", "NaT"], dtype="datetime64[s]"),
        np.array([1, -2], dtype="timedelta64[ms]"),
        np.array([1 + 2j, np.nan], dtype=">c8"),
        np.arange(6, dtype=">u2").reshape(2, 3),
        np.array(["ä", "bcd"], dtype="<U3"),
        np.zeros(2, dtype=[("id", "<i4"), ("pos", "<f8", (3,)), ("tag", "S2")]),
    ],
    ids=lambda a: f"{a.dtype}-{a.shape}",
)
@pytest.mark.parametrize("codec", ["auto", "blosc2", "none", "zstd", "gzip"])
def test_dtypes_and_shapes(array, codec):
    options = SerializationOptions(codec=codec)
    info, stored = dump(array, options)
    assert_arrays_identical(load(info, stored, options), array)


def test_object_arrays_are_declined_to_the_pickle_handler():
    array = np.array([{"a": 1}, None], dtype=object)
    assert not NumpyHandler().can_handle(array)
    with pytest.raises(ObjectDeclinedError):
        NumpyHandler().dump(array, io.BytesIO(), DEFAULT_OPTIONS)
    registry = default_registry()
    sink = io.BytesIO()
    info = registry.dump(array, sink)
    assert info.handler == "objects"
    back = registry.load(io.BytesIO(sink.getvalue()), info)
    assert back.dtype == object
    assert back[0] == {"a": 1}


def test_masked_arrays_keep_their_mask_through_the_objects_handler():
    masked = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    registry = default_registry()
    sink = io.BytesIO()
    info = registry.dump(masked, sink)
    assert info.handler == "objects"
    back = registry.load(io.BytesIO(sink.getvalue()), info)
    assert type(back) is np.ma.MaskedArray
    assert back.mask.tolist() == [False, True, False]


def test_memory_map_read_only(tmp_path):
    array = np.arange(1000, dtype=np.int32).reshape(10, 100)
    options = SerializationOptions(codec="none", mmap_mode="r")
    path = tmp_path / "blob"
    with path.open("wb") as f:
        info = NumpyHandler().dump(array, f, options)
    with path.open("rb") as f:
        mapped = NumpyHandler().load(f, info, options, local_path=path)
    assert isinstance(mapped, np.memmap)
    assert_arrays_identical(np.asarray(mapped), array)
    with pytest.raises(ValueError, match="read-only"):
        mapped[0, 0] = 5
    # a memmap stores like any array
    assert NumpyHandler().can_handle(mapped)
    info2, stored2 = dump(mapped)
    assert_arrays_identical(load(info2, stored2), array)
    del mapped


def test_memory_map_copy_on_write_leaves_the_blob_alone(tmp_path):
    array = np.arange(100.0)
    options = SerializationOptions(codec="none", mmap_mode="c")
    path = tmp_path / "blob"
    with path.open("wb") as f:
        info = NumpyHandler().dump(array, f, options)
    mapped = NumpyHandler().load(io.BytesIO(), info, options, local_path=path)
    mapped[:] = -1
    assert path.read_bytes() == array.tobytes()
    del mapped


def test_memory_map_needs_an_uncompressed_local_blob(tmp_path):
    array = np.arange(100_000.0)
    options = SerializationOptions(mmap_mode="r")
    info, stored = dump(array, SerializationOptions(codec="blosc2"))
    path = tmp_path / "blob"
    path.write_bytes(stored)
    back = NumpyHandler().load(io.BytesIO(stored), info, options, local_path=path)
    assert type(back) is np.ndarray  # compressed: read into memory
    info, stored = dump(array, SerializationOptions(codec="none"))
    back = NumpyHandler().load(io.BytesIO(stored), info, options)  # no local path
    assert type(back) is np.ndarray


def test_memory_map_checks_the_file_size(tmp_path):
    array = np.arange(10.0)
    info, stored = dump(array, SerializationOptions(codec="none"))
    path = tmp_path / "blob"
    path.write_bytes(stored[:-8])
    with pytest.raises(IntegrityError, match="holds 72 bytes"):
        NumpyHandler().load(
            io.BytesIO(), info, SerializationOptions(mmap_mode="r"), local_path=path
        )


def test_writable_memory_maps_are_refused():
    from cacheness.storage.errors import ConfigError

    with pytest.raises(ConfigError, match="must not change under its recorded hash"):
        SerializationOptions(mmap_mode="r+")


def test_raw_size_must_match_dtype_and_shape():
    info, stored = dump(np.arange(4.0))
    forged = FormatInfo(
        handler="numpy", format="ndarray", codec=info.codec, raw_size=64, details=info.details
    )
    with pytest.raises(IntegrityError, match="does not match dtype"):
        load(forged, stored)


def test_object_dtype_in_details_is_never_loaded():
    _, stored = dump(np.arange(2, dtype=np.int64))
    forged = FormatInfo(
        handler="numpy",
        format="ndarray",
        codec="none",
        raw_size=16,
        details={"dtype": "|O", "shape": [2]},
    )
    with pytest.raises(SerializationError, match="object dtypes"):
        load(forged, stored)


def test_forged_blosc2_chunk_header_fails_before_allocating():
    array = np.arange(100_000, dtype=np.int64)
    info, stored = dump(array, SerializationOptions(codec="blosc2"))
    forged = bytearray(stored)
    forged[4 + 4 : 4 + 8] = (2**31 - 1).to_bytes(4, "little")  # chunk header: nbytes
    with pytest.raises(IntegrityError, match="claims"):
        load(info, bytes(forged))


def test_auto_shuffle_is_byte_shuffle_for_arrays():
    array = np.cumsum(np.arange(50_000) % 7).astype(np.float64)
    _, default = dump(array, SerializationOptions(codec="blosc2"))
    _, byte = dump(array, SerializationOptions(codec="blosc2", blosc2_shuffle="shuffle"))
    assert default == byte
