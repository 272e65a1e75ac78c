"""The pandas handler: DataFrame/Series as Arrow IPC or Parquet, data only, exact round trip."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from cacheness.storage import ObjectDeclinedError, SerializationOptions, default_registry
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage._handlers.pandas import PandasHandler
from cacheness.storage.testing.handlers import HandlerConformance, dataframes, series


def assert_pandas_identical(loaded, original):
    assert type(loaded) is type(original)
    kwargs = {
        "check_exact": True,
        "check_index_type": True,
        "check_categorical": True,
        "check_freq": True,
    }
    if isinstance(original, pd.Series):
        pd.testing.assert_series_equal(loaded, original, check_series_type=True, **kwargs)
    else:
        pd.testing.assert_frame_equal(
            loaded, original, check_column_type=True, check_frame_type=True, **kwargs
        )
        assert list(loaded.columns) == list(original.columns)
    assert loaded.attrs == original.attrs


class PandasSuite(HandlerConformance):
    handler = PandasHandler()
    foreign_values = (np.zeros(3), {"a": [1]}, [pd.Series([1])])
    max_examples = 15

    def assert_same(self, loaded, original):
        assert_pandas_identical(loaded, original)

    def checks_raw_size(self, info):
        return info.codec in ("blosc2", "gzip") and info.format == "arrow-ipc"


class TestPandasFrames(PandasSuite):
    values = dataframes()


class TestPandasSeries(PandasSuite):
    values = series()
    codecs = ("auto", "none")


def parquet_keeps(frame):
    """Frames the handler declines for Parquet (and pickles instead)."""
    if len(frame) and not frame.shape[1]:
        return False
    categorical = [isinstance(d, pd.CategoricalDtype) for d in frame.dtypes]
    return len(frame) or not any(categorical)


class TestPandasParquet(PandasSuite):
    values = dataframes().filter(parquet_keeps)
    options: ClassVar = {"dataframe_format": "parquet"}
    codecs = ("auto", "none", "gzip")


def dump(obj, options=DEFAULT_OPTIONS):
    sink = io.BytesIO()
    info = PandasHandler().dump(obj, sink, options)
    return info, sink.getvalue()


def round_trip(obj, options=DEFAULT_OPTIONS):
    info, stored = dump(obj, options)
    return info, PandasHandler().load(io.BytesIO(stored), info, options)


def benchmark_like_frame(n=20_000):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "i": rng.integers(0, 1000, n),
            "f": rng.normal(size=n).round(2),
            "c": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
            "t": pd.date_range("2020", periods=n, freq="s"),
            "b": rng.random(n) > 0.5,
        }
    )


def test_default_is_blosc2_compressed_arrow_ipc():
    frame = benchmark_like_frame()
    info, stored = dump(frame)
    assert (info.format, info.codec) == ("arrow-ipc", "blosc2")
    assert len(stored) < 0.7 * frame.memory_usage(deep=True).sum()
    assert_pandas_identical(PandasHandler().load(io.BytesIO(stored), info, DEFAULT_OPTIONS), frame)


def test_stored_ipc_is_plain_arrow_once_decompressed():
    import pyarrow as pa

    from cacheness.storage import decompress

    frame = benchmark_like_frame(1000)
    info, stored = dump(frame)
    ipc = decompress(stored, info.codec, raw_size=info.raw_size)
    table = pa.ipc.open_stream(ipc).read_all()
    assert table.column_names == ["i", "f", "c", "t", "b"]
    assert b"pandas" in table.schema.metadata  # pandas' own metadata travels in the schema


def test_parquet_is_a_standard_file(tmp_path):
    import pyarrow.parquet as pq

    frame = benchmark_like_frame(1000)
    info, stored = dump(frame, SerializationOptions(dataframe_format="parquet"))
    assert (info.format, info.codec) == ("parquet", "zstd")
    path = tmp_path / "frame.parquet"
    path.write_bytes(stored)
    assert_pandas_identical(pd.read_parquet(path), frame)
    assert pq.read_metadata(path).num_rows == 1000


def test_parquet_stores_a_blosc2_request_as_zstd():
    frame = benchmark_like_frame(100)
    info, _ = dump(frame, SerializationOptions(dataframe_format="parquet", codec="blosc2"))
    assert info.codec == "zstd"


CASES = {
    "category-ordered": pd.DataFrame(
        {"a": pd.Categorical(["x", "y", "x"], categories=["y", "x", "z"], ordered=True)}
    ),
    "tz-datetime": pd.DataFrame({"a": pd.date_range("2020", periods=3, tz="Europe/Paris")}),
    "nullable": pd.DataFrame(
        {
            "i": pd.array([1, None, 3], dtype="Int64"),
            "u": pd.array([1, None, 3], dtype="UInt8"),
            "f": pd.array([1.5, None, 3], dtype="Float32"),
            "b": pd.array([True, None, False], dtype="boolean"),
        }
    ),
    "strings": pd.DataFrame(
        {
            "string": pd.array(["a", None, "c"], dtype="string"),
            "str": pd.array(["a", np.nan, "c"], dtype="str"),
            "object": np.array(["a", "b", None], dtype=object),
        }
    ),
    "bytes-and-dates": pd.DataFrame(
        {
            "b": np.array([b"\x00", None], dtype=object),
            "d": np.array([dt.date(2020, 1, 1), None], dtype=object),
        }
    ),
    "period-interval-timedelta": pd.DataFrame(
        {
            "p": pd.period_range("2020", periods=2, freq="M"),
            "iv": pd.interval_range(0, 2),
            "td": pd.to_timedelta([1, None], unit="s"),
        }
    ),
    "arrow-dtype": pd.DataFrame({"a": pd.array([1, None], dtype="int64[pyarrow]")}),
    "multiindex": pd.DataFrame(
        {"v": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    ),
    "multi-columns": pd.DataFrame(
        [[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")], names=["g", None])
    ),
    "int-columns": pd.DataFrame({5: [1], 3: [2]}),
    "range-columns": pd.DataFrame(np.zeros((2, 3))).rename_axis(columns="feature"),
    "object-str-columns": pd.DataFrame([[1]], columns=pd.Index(["a"], dtype=object)),
    "freq-index": pd.DataFrame(
        {"v": [1, 2, 3]}, index=pd.date_range("2020", periods=3, freq="W-SUN")
    ),
    "timedelta-freq-index": pd.DataFrame(
        {"v": [1, 2]}, index=pd.timedelta_range("1D", periods=2, freq="h")
    ),
    "range-index": pd.DataFrame({"v": [1, 2]}, index=pd.RangeIndex(3, 7, 2, name="r")),
    "categorical-index": pd.DataFrame({"v": [1, 2]}, index=pd.CategoricalIndex(["a", "b"])),
    "empty": pd.DataFrame(),
    "no-rows": pd.DataFrame({"a": pd.Series([], dtype="int64")}),
    "attrs": pd.DataFrame({"a": [1]}).pipe(lambda f: f.attrs.update(unit="m") or f),
    "seconds-resolution": pd.DataFrame(
        {
            "d": np.array([1, 2], dtype="datetime64[s]"),
            "z": pd.Series(np.array([3, 4], dtype="datetime64[s]")).dt.tz_localize("Asia/Tokyo"),
        },
        index=pd.DatetimeIndex(np.array([5, 6], dtype="datetime64[s]"), name="at"),
    ),
}


@pytest.mark.parametrize("frame", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_exact_round_trips(frame, fmt):
    info, back = round_trip(frame, SerializationOptions(dataframe_format=fmt))
    assert info.handler == "pandas"
    assert_pandas_identical(back, frame)


@pytest.mark.parametrize(
    "name", [None, "price", 0, 2.5, True], ids=["none", "str", "int", "float", "bool"]
)
def test_series_names_round_trip(name):
    s = pd.Series([1.5, None], name=name, index=pd.Index(["x", "y"], name="k"))
    info, back = round_trip(s)
    assert info.details["kind"] == "Series"
    assert_pandas_identical(back, s)


DECLINED = {
    "duplicate-columns": pd.DataFrame([[1, 2]], columns=["a", "a"]),
    "mixed-object": pd.DataFrame({"a": np.array(["a", 1], dtype=object)}),
    "object-bool": pd.DataFrame({"a": np.array([True, False], dtype=object)}),
    "object-nan": pd.DataFrame({"a": pd.Series(["a", np.nan], dtype=object)}),
    "decimal": pd.DataFrame({"a": [decimal.Decimal("1.5")]}),
    "lists": pd.DataFrame({"a": [[1, 2], [3]]}),
    "complex": pd.DataFrame({"a": [1j, 2]}),
    "sparse": pd.DataFrame({"a": pd.arrays.SparseArray([0, 1, 0])}),
    "python-strings": pd.DataFrame({"a": pd.array(["x"], dtype=pd.StringDtype("python"))}),
    "mixed-labels": pd.DataFrame({"a": [1], 1: [2]}),
    "float-labels": pd.DataFrame({1.5: [1]}),
    "mixed-index": pd.DataFrame({"v": [1, 2]}, index=pd.Index(["a", 1], dtype=object)),
    "tuple-index-name": pd.DataFrame({"v": [1]}, index=pd.Index([1], name=("a", "b"))),
    "tuple-series-name": pd.Series([1], name=("a", "b")),
}


PARQUET_DECLINED = {
    "rows-without-columns": pd.DataFrame(index=[1, 2]),
    "empty-categorical": pd.DataFrame({"c": pd.Categorical([], categories=["a"])}),
}


@pytest.mark.parametrize(
    ("obj", "fmt"),
    [
        *((v, "arrow") for v in DECLINED.values()),
        *((v, "parquet") for v in PARQUET_DECLINED.values()),
    ],
    ids=[*DECLINED, *PARQUET_DECLINED],
)
def test_frames_arrow_cannot_hold_are_pickled_instead(obj, fmt):
    options = SerializationOptions(dataframe_format=fmt)
    with pytest.raises(ObjectDeclinedError):
        PandasHandler().dump(obj, io.BytesIO(), options)
    registry = default_registry()
    sink = io.BytesIO()
    info = registry.dump(obj, sink, options)
    assert info.handler == "objects"
    back = registry.load(io.BytesIO(sink.getvalue()), info)
    if isinstance(obj, pd.Series):
        pd.testing.assert_series_equal(back, obj)
    else:
        pd.testing.assert_frame_equal(back, obj)


def test_subclasses_are_left_to_the_objects_handler():
    class Tagged(pd.DataFrame):
        @property
        def _constructor(self):
            return Tagged

    assert not PandasHandler().can_handle(Tagged({"a": [1]}))


def test_without_pyarrow_frames_are_pickled_not_failed():
    probe = """
import io, json, sys
sys.modules["pyarrow"] = None  # as if not installed
import pandas as pd
from cacheness.storage import default_registry
frame = pd.DataFrame({"a": [1, 2]})
sink = io.BytesIO()
info = default_registry().dump(frame, sink)
back = default_registry().load(io.BytesIO(sink.getvalue()), info)
print(json.dumps([info.handler, back.equals(frame)]))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == ["objects", True]
    assert "pickled instead of stored as Arrow" in result.stderr


@pytest.mark.parametrize("codec", ["blosc2", "gzip", "zstd", "none"])
def test_loaded_frames_are_writable_and_independent(codec):
    """Columns read in place from the stream this load decoded (Blosc2, gzip) come back
    writable, as after ``pickle.loads``; two loads share no memory, and changing one
    changes nothing else. (Arrow's own codecs keep Arrow's read-only columns.)"""
    frame = benchmark_like_frame(5_000)
    frame["u"] = np.arange(5_000, dtype=np.uint16)
    frame["d"] = frame["t"] - frame["t"].iloc[0]  # timedelta64
    frame.attrs = {"source": "test"}
    options = SerializationOptions(codec=codec)
    info, stored = dump(frame, options)
    first = PandasHandler().load(io.BytesIO(stored), info, options)
    second = PandasHandler().load(io.BytesIO(stored), info, options)
    assert_pandas_identical(first, frame)
    if codec in ("blosc2", "gzip"):  # decoded by this load into its own buffer
        first.iloc[0, 0] = -1
        first.iloc[1, 1] = 0.25
        first.iloc[2, 2] = "blue"
        first.iloc[3, 3] = pd.Timestamp("1999-12-31")
        first.iloc[4, 4] = not frame.iloc[4, 4]
        first.loc[5, "u"] = 7
        first.loc[6, "d"] = pd.Timedelta(1, "s")
        assert (first.iloc[0, 0], first.iloc[2, 2], first.loc[5, "u"]) == (-1, "blue", 7)
        for name in ("i", "f", "t", "b", "u", "d"):
            assert not np.shares_memory(first[name].to_numpy(), second[name].to_numpy())
    assert_pandas_identical(second, frame)
    assert_pandas_identical(PandasHandler().load(io.BytesIO(stored), info, options), frame)


def test_a_loaded_series_is_writable():
    series = pd.Series(np.arange(10_000, dtype=np.int64), name="s")
    info, loaded = round_trip(series)
    assert info.codec == "blosc2"
    loaded.iloc[0] = 99
    assert loaded.iloc[0] == 99
    assert loaded.name == "s"


def test_auto_shuffle_is_bit_shuffle_for_frames():
    """``blosc2_shuffle="auto"`` (the default) bit-shuffles the Arrow stream of a frame;
    arrays keep byte shuffle (tests/handlers/test_numpy.py)."""
    frame = benchmark_like_frame(20_000)
    info, default = dump(frame)
    _, bits = dump(frame, SerializationOptions(blosc2_shuffle="bitshuffle"))
    _, byte = dump(frame, SerializationOptions(blosc2_shuffle="shuffle"))
    assert default == bits
    assert default != byte
    assert len(bits) < len(byte)
    for stored in (bits, byte):  # the filter is in each chunk's header, not in the info
        loaded = PandasHandler().load(io.BytesIO(stored), info, DEFAULT_OPTIONS)
        assert_pandas_identical(loaded, frame)
