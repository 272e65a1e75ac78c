"""Identical data gives identical stored bytes: one content hash, one key, one blob.

Content addressing (``BlobStore(content_addressable=True)``, and ``put(data)`` without a
key, which keys by content hash) promises that identical data is stored once. That holds
only if every handler x codec x thread count writes the same bytes for the same data.
Two things broke it: Blosc2 writes the blocks of a chunk in the order its threads
finish (the blocks are identical, their order and offsets table are not), and zstd's
multi-threaded frames differ from its single-threaded ones. Equal sets iterated in
different orders were a third, in the plain handler.

"Identical data" means: the same types and values, containers in the same order (dicts
keep insertion order, lists their order), frames and tables with the same chunks. Sets
have no order: equal sets are identical data, however built. Pickled objects (the
``objects`` handler) are identical when their pickle streams are: the same object graph
built the same way; equal objects with different sharing, or sets of strings pickled in
processes with different hash seeds, may pickle differently (see docs/serialization.md).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cacheness.storage import (
    BlobStore,
    MemoryBlobBackend,
    MemoryMetadataBackend,
    SerializationOptions,
    compress,
    default_registry,
)

CODECS = ["zstd", "gzip", "blosc2", "none", "auto"]
THREADS = st.lists(st.sampled_from([1, 2, 3, 4, 8]), min_size=2, max_size=3, unique=True)
# small (inline), a few Blosc2 blocks, and past 4 MiB (zstd's multi-threaded mode)
SIZES = st.sampled_from([0, 40, 3_000, 300_000, 700_000])


def stored_bytes(obj: Any, codec: str, nthreads: int, **options: Any) -> tuple[str, bytes]:
    sink = io.BytesIO()
    info = default_registry().dump(
        obj, sink, SerializationOptions(codec=codec, nthreads=nthreads, **options)
    )
    return info.handler, sink.getvalue()


def assert_identical(obj: Any, codec: str, threads: list[int], **options: Any) -> str:
    """Dump ``obj`` twice per thread count; every dump must be byte-identical."""
    dumps = [stored_bytes(obj, codec, n, **options) for n in threads for _ in range(2)]
    handler, first = dumps[0]
    for n_handler, data in dumps[1:]:
        assert n_handler == handler
        assert data == first, f"{handler}/{codec}: stored bytes differ between thread counts"
    return handler


def arrays(rng: np.random.Generator, size: int, dtype: str) -> np.ndarray:
    """Compressible values (a small spread), so Blosc2 and zstd really compress them."""
    return rng.integers(0, 50, size).astype(dtype)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=SIZES,
    dtype=st.sampled_from(["float64", "int32", "int8", "uint16", "bool"]),
    codec=st.sampled_from(CODECS),
    threads=THREADS,
)
@example(seed=1, size=700_000, dtype="float64", codec="blosc2", threads=[1, 2, 8])
@example(seed=1, size=700_000, dtype="float64", codec="zstd", threads=[1, 4])
def test_numpy(seed, size, dtype, codec, threads):
    array = arrays(np.random.default_rng(seed), size, dtype)
    assert assert_identical(array, codec, threads) == "numpy"
    # a Fortran-ordered and a small-chunked variant, too
    assert_identical(np.asfortranarray(array.reshape(-1, 1)), codec, threads)
    assert_identical(array, codec, threads, chunk_size=100_000)


@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([0, 100, 50_000, 5_000_000]),
    codec=st.sampled_from(CODECS),
    threads=THREADS,
)
@example(seed=1, size=5_000_000, codec="auto", threads=[1, 2])
def test_raw_bytes(seed, size, codec, threads):
    data = arrays(np.random.default_rng(seed), size, "uint8").tobytes()
    assert assert_identical(data, codec, threads) == "raw"


@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.sampled_from([0, 10, 150_000]),
    codec=st.sampled_from(CODECS),
    threads=THREADS,
    dataframe_format=st.sampled_from(["arrow", "parquet"]),
)
@example(seed=1, rows=150_000, codec="auto", threads=[1, 2, 4], dataframe_format="arrow")
@example(seed=1, rows=150_000, codec="zstd", threads=[1, 8], dataframe_format="parquet")
def test_pandas(seed, rows, codec, threads, dataframe_format):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "n": rng.integers(0, 9, rows),
            "x": rng.integers(0, 100, rows) / 4,
            "s": [f"s{i % 13}" for i in range(rows)],
        }
    )
    handler = assert_identical(frame, codec, threads, dataframe_format=dataframe_format)
    assert handler == "pandas"


@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.sampled_from([0, 10, 300_000]),
    codec=st.sampled_from(CODECS),
    threads=THREADS,
)
@example(seed=1, rows=300_000, codec="blosc2", threads=[1, 2, 4])
def test_arrow(seed, rows, codec, threads):
    pa = pytest.importorskip("pyarrow")
    rng = np.random.default_rng(seed)
    table = pa.table({"n": rng.integers(0, 9, rows), "s": [f"v{i % 5}" for i in range(rows)]})
    assert assert_identical(table, codec, threads) == "arrow"


@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.sampled_from([0, 10, 300_000]),
    codec=st.sampled_from(CODECS),
    threads=THREADS,
    dataframe_format=st.sampled_from(["arrow", "parquet"]),
)
@example(seed=1, rows=300_000, codec="auto", threads=[1, 8], dataframe_format="parquet")
@example(seed=1, rows=300_000, codec="zstd", threads=[2, 3], dataframe_format="arrow")
def test_polars(seed, rows, codec, threads, dataframe_format):
    pl = pytest.importorskip("polars")
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"n": rng.integers(0, 9, rows), "s": [f"v{i % 5}" for i in range(rows)]})
    handler = assert_identical(frame, codec, threads, dataframe_format=dataframe_format)
    assert handler == "polars"


PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(max_size=8), children, max_size=6)
        | st.tuples(children, children)
        | st.sets(st.text(max_size=12) | st.integers(), max_size=30)
        | st.frozensets(st.tuples(st.integers(), st.text(max_size=4)), max_size=10)
    ),
    max_leaves=40,
)


@settings(max_examples=60)
@given(value=PLAIN, codec=st.sampled_from(CODECS), threads=THREADS)
@example(value=list(range(700_000)), codec="blosc2", threads=[1, 2, 4])
def test_plain_data(value, codec, threads):
    assert_identical({"value": value, "pad": list(range(2_000))}, codec, threads)


@settings(max_examples=60)
@given(members=st.lists(st.text(max_size=12), min_size=2, max_size=60, unique=True))
def test_equal_sets_built_in_any_order_store_identical_bytes(members):
    forwards, backwards = set(), set()
    for member in members:  # the same members, inserted in opposite orders
        forwards.add(member)
    for member in members[::-1]:
        backwards.add(member)
    assert forwards == backwards
    for codec in ("none", "zstd"):
        assert stored_bytes(forwards, codec, 1) == stored_bytes(backwards, codec, 1)
        assert stored_bytes(frozenset(forwards), codec, 1) == stored_bytes(
            frozenset(backwards), codec, 1
        )


def test_equal_sets_store_identical_bytes_whatever_the_hash_seed():
    """String hashes (and so set order) differ between processes: the bytes must not."""
    script = (
        "import sys; from cacheness.storage import default_registry, "
        "SerializationOptions; import io; sink = io.BytesIO(); "
        "default_registry().dump({'tags': {f'tag-{i}' for i in range(200)}}, sink, "
        "SerializationOptions(codec='none')); sys.stdout.write(sink.getvalue().hex())"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1


class Point:
    """A user class: stored by the objects handler (pickle)."""

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.sampled_from([1, 1_000, 300_000]),
    codec=st.sampled_from(CODECS),
    threads=THREADS,
)
def test_pickled_objects(seed, count, codec, threads):
    rng = np.random.default_rng(seed)
    values = [complex(float(x), 1.0) for x in rng.integers(0, 20, count)]
    assert assert_identical(values, codec, threads) == "objects"
    points = [Point(float(x), 0.5) for x in rng.integers(0, 20, min(count, 5_000))]
    assert assert_identical(points, codec, threads) == "objects"


def chunk_data(kind: str) -> bytes:
    rng = np.random.default_rng(7)
    if kind == "zeros":  # Blosc2 stores a run of one value as a header only
        return bytes(8_000_000)
    if kind == "noise":  # incompressible: Blosc2 stores it uncompressed, in one piece
        return rng.bytes(8_000_000)
    return arrays(rng, 3_000_000, "int64").tobytes()  # 24 MB in many blocks


@pytest.mark.parametrize("kind", ["compressible", "zeros", "noise"])
@pytest.mark.parametrize("codec", ["zstd", "gzip", "blosc2"])
@pytest.mark.parametrize("threads", [2, 4, 8])
def test_compress_alone_is_thread_independent(kind, codec, threads):
    data = chunk_data(kind)
    one = compress(data, codec, SerializationOptions(nthreads=1), typesize=8)
    assert compress(data, codec, SerializationOptions(nthreads=threads), typesize=8) == one


@pytest.mark.parametrize("kind", ["numpy", "pandas", "raw"])
def test_a_content_addressed_store_keeps_one_blob_for_identical_data(kind):
    """The issue's repro: the same array put again and again, from stores with several
    thread counts over the same backends: one key, one blob."""
    rng = np.random.default_rng(3)
    if kind == "numpy":
        data: Any = arrays(rng, 2_000_000, "float64")  # 16 MB, Blosc2 in many blocks
    elif kind == "pandas":
        pd = pytest.importorskip("pandas")
        columns = {"a": arrays(rng, 1_000_000, "int64"), "b": arrays(rng, 1_000_000, "float64")}
        data = pd.DataFrame(columns)
    else:
        data = arrays(rng, 6_000_000, "uint8").tobytes()
    metadata, blobs = MemoryMetadataBackend(), MemoryBlobBackend()
    keys = set()
    for nthreads in (1, 2, 3, 4, 8, 2, 4, 8):
        store = BlobStore(
            metadata_backend=metadata,
            blob_backend=blobs,
            content_addressable=True,
            serialization={"nthreads": nthreads},
        )
        keys.add(store.put(data))
        keys.add(store.put(data))
    assert len(keys) == 1
    assert len(blobs) == 1
