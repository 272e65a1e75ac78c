"""The arrow handler: pyarrow Table / RecordBatch as Arrow IPC with zstd."""

from __future__ import annotations

import io
from typing import ClassVar

import pyarrow as pa
import pytest

from cacheness.storage import SerializationOptions
from cacheness.storage._handlers.arrow import ArrowHandler
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage.errors import IntegrityError
from cacheness.storage.testing.handlers import HandlerConformance, arrow_tables


def assert_arrow_identical(loaded, original):
    assert type(loaded) is type(original)
    assert loaded.schema.equals(original.schema, check_metadata=True)
    assert loaded.equals(original, check_metadata=True)


class ArrowSuite(HandlerConformance):
    handler = ArrowHandler()
    values = arrow_tables()
    foreign_values = ({"a": [1]}, pa.array([1, 2]), b"ARROW1")

    def assert_same(self, loaded, original):
        assert_arrow_identical(loaded, original)

    def checks_raw_size(self, info):
        return info.format == "arrow-ipc" and info.codec in ("blosc2", "gzip")


class TestArrowIpc(ArrowSuite):
    pass


class TestArrowParquet(ArrowSuite):
    options: ClassVar = {"dataframe_format": "parquet"}
    codecs = ("auto", "gzip")


def dump(obj, options=DEFAULT_OPTIONS):
    sink = io.BytesIO()
    info = ArrowHandler().dump(obj, sink, options)
    return info, sink.getvalue()


def big_table():
    return pa.table({"id": pa.array(range(50_000)), "label": pa.array(["abc", "de"] * 25_000)})


def test_default_is_a_standard_zstd_ipc_stream_any_arrow_reader_opens():
    table = big_table()
    info, stored = dump(table)
    assert (info.format, info.codec) == ("arrow-ipc", "zstd")
    assert info.raw_size == table.nbytes
    assert info.details["stream_size"] == len(stored)
    assert len(stored) < table.nbytes / 3
    direct = pa.ipc.open_stream(stored).read_all()  # plain pyarrow, no cacheness
    assert direct.equals(table)


def test_chunk_layout_is_kept():
    table = pa.concat_tables([big_table().slice(0, 10), big_table().slice(10, 5)])
    info, stored = dump(table)
    back = ArrowHandler().load(io.BytesIO(stored), info, DEFAULT_OPTIONS)
    assert [len(c) for c in back.column(0).chunks] == [10, 5]


def test_uncompressed_stream_is_memory_mapped_from_a_local_file(tmp_path):
    table = big_table()
    options = SerializationOptions(codec="none")
    info, stored = dump(table, options)
    path = tmp_path / "blob"
    path.write_bytes(stored)
    before = pa.total_allocated_bytes()
    back = ArrowHandler().load(io.BytesIO(), info, options, local_path=path)
    assert back.equals(table)
    assert pa.total_allocated_bytes() - before < table.nbytes / 10  # buffers live in the map


def test_cut_at_a_message_boundary_is_caught():
    table = pa.concat_tables([big_table().slice(0, 100), big_table().slice(100, 100)])
    info, stored = dump(table, SerializationOptions(codec="none"))
    # drop the last batch and the end-of-stream marker: still a well-formed shorter stream
    reader = pa.ipc.open_stream(stored)
    first_only = pa.BufferOutputStream()
    with pa.ipc.new_stream(first_only, reader.schema) as writer:
        writer.write_batch(reader.read_next_batch())
    with pytest.raises(IntegrityError, match="truncated or has extra bytes"):
        ArrowHandler().load(io.BytesIO(first_only.getvalue().to_pybytes()), info, DEFAULT_OPTIONS)


def test_record_batch_round_trips_as_a_record_batch():
    batch = pa.record_batch({"x": [1, 2, 3]})
    for options in (DEFAULT_OPTIONS, SerializationOptions(dataframe_format="parquet")):
        info, stored = dump(batch, options)
        back = ArrowHandler().load(io.BytesIO(stored), info, options)
        assert isinstance(back, pa.RecordBatch)
        assert back.equals(batch)


def test_auto_skips_compression_for_incompressible_columns():
    import numpy as np

    noise = pa.table({"x": np.random.default_rng(3).random(100_000)})
    info, stored = dump(noise)
    assert info.codec == "none"
    assert info.details["stream_size"] == len(stored)
    assert ArrowHandler().load(io.BytesIO(stored), info, DEFAULT_OPTIONS).equals(noise)
    small = pa.table({"x": [1, 2, 3]})
    assert dump(small)[0].codec == "none"
