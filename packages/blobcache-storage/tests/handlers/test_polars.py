"""The polars handler: DataFrame / Series as Parquet (default) or Arrow IPC, by polars."""

from __future__ import annotations

import io
from typing import ClassVar

import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from cacheness.storage import ObjectDeclinedError, SerializationOptions, default_registry
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage._handlers.polars import PolarsHandler
from cacheness.storage.errors import IntegrityError, SerializationError
from cacheness.storage.testing.handlers import HandlerConformance, polars_frames


def assert_polars_identical(loaded, original):
    assert type(loaded) is type(original)
    if isinstance(original, pl.Series):
        assert loaded.name == original.name
        assert_series_equal(loaded, original, check_exact=True)
    else:
        assert loaded.schema == original.schema
        assert_frame_equal(loaded, original, check_exact=True)


class PolarsSuite(HandlerConformance):
    handler = PolarsHandler()
    values = polars_frames()
    foreign_values = ({"a": [1]}, [1, 2])
    max_examples = 15

    def assert_same(self, loaded, original):
        assert_polars_identical(loaded, original)

    def checks_raw_size(self, info):
        return False  # polars writes and reads the bytes; stream_size guards them instead


class TestPolarsParquet(PolarsSuite):
    codecs = ("auto", "none", "gzip")


class TestPolarsIpc(PolarsSuite):
    options: ClassVar = {"dataframe_format": "arrow"}
    codecs = ("auto", "none")


def test_default_is_zstd_parquet_readable_by_anyone():
    frame = pl.DataFrame({"id": range(10_000), "name": ["a", "bb"] * 5_000})
    sink = io.BytesIO()
    info = PolarsHandler().dump(frame, sink, DEFAULT_OPTIONS)
    assert (info.format, info.codec) == ("parquet", "zstd")
    assert info.details["stream_size"] == len(sink.getvalue())
    assert_frame_equal(pl.read_parquet(io.BytesIO(sink.getvalue())), frame)


def test_codec_requests_parquet_cannot_honour_are_recorded_as_used():
    frame = pl.DataFrame({"a": [1]})
    for requested, fmt in (("blosc2", "auto"), ("gzip", "arrow")):
        options = SerializationOptions(codec=requested, dataframe_format=fmt)
        info = PolarsHandler().dump(frame, io.BytesIO(), options)
        assert info.codec == "zstd"


def test_object_columns_are_declined_then_refused_by_name():
    frame = pl.DataFrame({"o": pl.Series([object(), object()], dtype=pl.Object)})
    with pytest.raises(ObjectDeclinedError):
        PolarsHandler().dump(frame, io.BytesIO(), DEFAULT_OPTIONS)
    # polars cannot pickle Object columns either: a clear error, not a broken blob
    with pytest.raises(SerializationError, match=r"polars\.dataframe\.frame\.DataFrame"):
        default_registry().dump(frame, io.BytesIO())


def test_cut_blob_is_an_integrity_error(tmp_path):
    frame = pl.DataFrame({"a": range(1000)})
    sink = io.BytesIO()
    info = PolarsHandler().dump(frame, sink, DEFAULT_OPTIONS)
    path = tmp_path / "blob"
    path.write_bytes(sink.getvalue()[:-10])
    with pytest.raises(IntegrityError):
        PolarsHandler().load(io.BytesIO(), info, DEFAULT_OPTIONS, local_path=path)
