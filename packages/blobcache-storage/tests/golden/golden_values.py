"""The values stored in the golden stores, rebuilt exactly from fixed seeds.

``make_golden.py`` stores these values and ``test_golden_stores.py`` compares what it
reads back from the committed stores with them, so both must build the same objects:
nothing here depends on the clock, the process (``PYTHONHASHSEED``) or numpy's random
generators (whose streams may change between numpy releases). Pseudo-random numbers
come from :class:`random.Random` with a fixed seed, whose ``random()`` and
``randbytes()`` streams Python keeps stable; everything else is arithmetic.

Each value has a name (``VALUE_BUILDERS``); a store's ``manifest.json`` says which value
every key holds. :func:`assert_same` compares a value read back with the expected one
exactly: same type, dtypes, shapes, index, categories, time zones, element by element.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import fractions
import pathlib
import random
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

SEED = 20260102
"""Seed of every pseudo-random value."""

CLOCK_START = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
"""The first timestamp the generator's clock gives (it then ticks 1 ms per call)."""

CODECS = ("auto", "zstd", "gzip", "blosc2", "none")
"""Codecs of the codec matrix (``auto`` records what it chose)."""


_NEW_YEAR = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _rng(salt: int) -> random.Random:
    return random.Random(SEED + salt)


# --------------------------------------------------------------------------- raw


def raw_bytes() -> bytes:
    """1,000 bytes: a compressible pattern, then random bytes."""
    return bytes(range(256)) * 2 + _rng(1).randbytes(488)


def raw_bytearray() -> bytearray:
    return bytearray(b"golden bytearray \x00\xff " * 40)


def raw_str() -> str:
    """Text with accents, CJK, an emoji and a lone surrogate (kept by the raw handler)."""
    return "héllo wörld ✓ 日本語 🦉 " * 30 + "\ud800 lone surrogate"


def raw_memoryview() -> memoryview:
    """A typed, two-dimensional memoryview (format and shape are recorded)."""
    import array

    return memoryview(array.array("i", range(-120, 120))).cast("B").cast("i", [12, 20])


# --------------------------------------------------------------------------- plain


def plain_data() -> dict[str, Any]:
    """Nested plain data with every type the plain handler keeps exactly."""
    oslo = zoneinfo.ZoneInfo("Europe/Oslo")
    return {
        "name": "golden ✓",
        "int": -42,
        "big": 2**100,
        "negative_big": -(2**80),
        "float": 0.1,
        "inf": float("inf"),
        "bool": True,
        "none": None,
        "bytes": b"\x00\x01\xfe\xff",
        "list": [1, 2.5, "three", None, [4, [5]]],
        "tuple": (1, (2, 3), "x"),
        "set": {3, 1, 2, 10**6},
        "frozenset": frozenset({-1, 7}),
        "datetime_utc": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "datetime_naive": dt.datetime(1999, 12, 31, 23, 59, 59),
        "datetime_offset": dt.datetime(
            2026, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
        ),
        "datetime_named_offset": dt.datetime(
            2026, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3), "BRT")
        ),
        "datetime_zone": dt.datetime(2026, 10, 25, 2, 30, tzinfo=oslo, fold=1),
        "date": dt.date(2026, 2, 28),
        "time": dt.time(23, 59, 58, 999999, tzinfo=dt.UTC),
        "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
        "nested": {"a": {"b": {"c": [{"d": (1,)}]}}, "ünïcode": "ключ"},
        "numbers": list(range(100)),
        "floats": [_rng(2).random() for _ in range(40)],
    }


# --------------------------------------------------------------------------- numpy


def _np() -> Any:
    import numpy as np

    return np


def np_float64() -> Any:
    """600 random float64 (4,800 bytes, hardly compressible: above the inline threshold)."""
    rng = _rng(3)
    return _np().array([rng.random() * 1000 - 500 for _ in range(600)], dtype="<f8")


def np_float64_small() -> Any:
    """100 float64 (800 bytes): inline, and above ``auto``'s minimum size."""
    rng = _rng(4)
    return _np().array([round(rng.random(), 3) for _ in range(100)], dtype="<f8")


def np_int32_2d() -> Any:
    return (_np().arange(600, dtype="<i4") * 7 % 101 - 50).reshape(20, 30)


def np_uint8() -> Any:
    return _np().frombuffer(_rng(5).randbytes(700), dtype="u1").copy()


def np_bool() -> Any:
    rng = _rng(6)
    return _np().array([rng.random() < 0.3 for _ in range(900)], dtype=bool)


def np_float32_fortran() -> Any:
    np = _np()
    return np.asfortranarray(np.arange(240, dtype="<f4").reshape(12, 20) / 8)


def np_bigendian_int64() -> Any:
    return _np().arange(-100, 100, dtype=">i8")


def np_complex128() -> Any:
    np = _np()
    return np.arange(64, dtype="<f8") + 1j * np.arange(64, 0, -1, dtype="<f8")


def np_datetime64() -> Any:
    np = _np()
    start = np.datetime64("2026-01-01T00:00:00", "ms")
    return start + np.arange(100, dtype="<i8") * np.timedelta64(3_600_123, "ms")


def np_unicode() -> Any:
    return _np().array(["alpha", "βeta", "γάμμα", "日本", ""] * 8, dtype="<U6")


def np_structured() -> Any:
    np = _np()
    dtype = np.dtype([("id", "<i4"), ("x", "<f8"), ("tag", "S3")])
    return np.array([(i, i / 4, f"t{i % 10}".encode()) for i in range(50)], dtype=dtype)


def np_empty() -> Any:
    return _np().zeros((0, 3), dtype="<i2")


def np_scalar_0d() -> Any:
    return _np().array(3.25, dtype="<f8")


# --------------------------------------------------------------------------- pandas


def pd_frame() -> Any:
    """A frame of many dtypes on a tz-aware hourly index (``freq`` is kept)."""
    import pandas as pd

    rng = _rng(7)
    n = 16
    index = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC", name="t")
    return pd.DataFrame(
        {
            "int": pd.array(range(n), dtype="int64"),
            "float": pd.array([rng.random() for _ in range(n)], dtype="float64"),
            "bool": pd.array([i % 3 == 0 for i in range(n)], dtype="bool"),
            "category": pd.Categorical(
                [["red", "green", "blue"][i % 3] for i in range(n)],
                categories=["blue", "green", "red"],
                ordered=True,
            ),
            "local_time": pd.Series(
                pd.date_range("2026-03-28 12:00", periods=n, freq="37min", tz="Europe/Oslo"),
                index=index,
            ),
            "nullable_int": pd.array([None if i % 5 == 0 else i * 10 for i in range(n)], "Int64"),
            "text": pd.array([f"row {i} ✓" for i in range(n)], dtype="string[pyarrow]"),
            "duration": pd.array(
                [pd.Timedelta(seconds=i * 90) for i in range(n)], dtype="timedelta64[ns]"
            ),
        },
        index=index,
    )


def pd_series() -> Any:
    """A named float Series on a named string index."""
    import pandas as pd

    rng = _rng(8)
    index = pd.Index([f"k{i:03d}" for i in range(30)], name="key", dtype="string[pyarrow]")
    values = [round(rng.random() * 100, 2) for _ in range(30)]
    return pd.Series(values, index=index, name="price", dtype="float64")


def pd_frame_multiindex() -> Any:
    """Integer column labels and a two-level row index."""
    import pandas as pd

    index = pd.MultiIndex.from_tuples(
        [(city, year) for city in ("Lima", "Oslo") for year in range(2020, 2026)],
        names=["city", "year"],
    )
    return pd.DataFrame(
        {0: pd.array(range(12), dtype="int16"), 1: pd.array([i / 3 for i in range(12)], "float32")},
        index=index,
    )


# --------------------------------------------------------------------------- arrow, polars


def arrow_table() -> Any:
    import pyarrow as pa

    n = 20
    return pa.table(
        {
            "id": pa.array(range(n), type=pa.int64()),
            "name": pa.array([f"name-{i}" for i in range(n)], type=pa.string()),
            "score": pa.array([None if i % 7 == 0 else i / 7 for i in range(n)], pa.float32()),
            "tags": pa.array([[i, i + 1][: i % 3] for i in range(n)], pa.list_(pa.int32())),
            "kind": pa.array([["a", "b"][i % 2] for i in range(n)]).dictionary_encode(),
            "at": pa.array(
                [_NEW_YEAR + dt.timedelta(minutes=i) for i in range(n)],
                type=pa.timestamp("us", tz="UTC"),
            ),
            "price": pa.array(
                [decimal.Decimal(i) / 4 for i in range(n)], type=pa.decimal128(10, 2)
            ),
        },
        metadata={"source": "golden"},
    )


def arrow_record_batch() -> Any:
    import pyarrow as pa

    return pa.record_batch(
        {"x": pa.array(range(30), pa.int8()), "y": pa.array([str(i) for i in range(30)])}
    )


def polars_frame() -> Any:
    import polars as pl

    n = 16
    return pl.DataFrame(
        {
            "id": pl.Series(range(n), dtype=pl.Int64),
            "value": pl.Series([i * 0.25 for i in range(n)], dtype=pl.Float64),
            "flag": pl.Series([i % 2 == 0 for i in range(n)], dtype=pl.Boolean),
            "label": pl.Series([f"lbl{i % 4}" for i in range(n)], dtype=pl.String),
            "at": pl.Series(
                [_NEW_YEAR + dt.timedelta(hours=i) for i in range(n)],
                dtype=pl.Datetime("us", "Europe/Oslo"),
            ),
            "items": pl.Series([[i, i * 2] for i in range(n)], dtype=pl.List(pl.Int32)),
        }
    )


def polars_series() -> Any:
    import polars as pl

    return pl.Series("counts", [i * i for i in range(70)], dtype=pl.UInt32)


# --------------------------------------------------------------------------- pickled


def pickled_objects() -> dict[str, Any]:
    """Not plain data (a Fraction, a Decimal...) holding a numpy array: pickle protocol 5
    with an out-of-band buffer."""
    np = _np()
    return {
        "fraction": fractions.Fraction(1, 3),
        "decimal": decimal.Decimal("1.10"),
        "complex": 2 + 3j,
        "counter": collections.Counter("abracadabra"),
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "uuid": uuid.UUID(int=42),
        "path": pathlib.PurePosixPath("/data/golden/file.txt"),
        "array": np.arange(600, dtype="<i2"),
    }


def cloudpickled_function() -> Callable[[int], int]:
    """A lambda: pickle refuses it, cloudpickle (opt-in) stores it by value."""
    return lambda x: x * 3 + 1


# --------------------------------------------------------------------------- registry

VALUE_BUILDERS: dict[str, Callable[[], Any]] = {
    "raw_bytes": raw_bytes,
    "raw_bytearray": raw_bytearray,
    "raw_str": raw_str,
    "raw_memoryview": raw_memoryview,
    "plain_data": plain_data,
    "np_float64": np_float64,
    "np_float64_small": np_float64_small,
    "np_int32_2d": np_int32_2d,
    "np_uint8": np_uint8,
    "np_bool": np_bool,
    "np_float32_fortran": np_float32_fortran,
    "np_bigendian_int64": np_bigendian_int64,
    "np_complex128": np_complex128,
    "np_datetime64": np_datetime64,
    "np_unicode": np_unicode,
    "np_structured": np_structured,
    "np_empty": np_empty,
    "np_scalar_0d": np_scalar_0d,
    "pd_frame": pd_frame,
    "pd_series": pd_series,
    "pd_frame_multiindex": pd_frame_multiindex,
    "arrow_table": arrow_table,
    "arrow_record_batch": arrow_record_batch,
    "polars_frame": polars_frame,
    "polars_series": polars_series,
    "pickled_objects": pickled_objects,
    "cloudpickled_function": cloudpickled_function,
}
"""Every value by name."""

CODEC_MATRIX = (
    "raw_bytes",
    "raw_str",
    "plain_data",
    "np_float64_small",
    "pd_frame",
    "pd_series",
    "arrow_table",
    "polars_frame",
    "pickled_objects",
)
"""One value per handler, stored once with each codec of :data:`CODECS`."""

CLOUDPICKLE_PROBE = 4
"""The stored lambda is called with this argument ..."""
CLOUDPICKLE_ANSWER = 13
"""... and must answer this."""


def build(name: str) -> Any:
    """Return a fresh copy of the value called ``name`` (as it was stored)."""
    return VALUE_BUILDERS[name]()


READ_BACK_DIFFERENCES: dict[str, str] = {
    "pd_series": (
        "the pandas handler reads a 'string[pyarrow]' index (StringDtype(na_value=<NA>)) "
        "back as 'str' (StringDtype(na_value=nan)); values, name and storage are kept. "
        "A known loss of the code that wrote the stores, pinned so that a change shows"
    ),
}
"""Values the code that wrote the golden stores does not read back exactly as stored."""


def read_back(name: str) -> Any:
    """Return the value called ``name`` as the stores give it back: :func:`build`, with
    the :data:`READ_BACK_DIFFERENCES` applied."""
    value = build(name)
    if name == "pd_series":
        value.index = value.index.astype("str")
    return value


# --------------------------------------------------------------------------- comparing


def assert_same(actual: Any, expected: Any, what: str = "value") -> None:
    """Assert ``actual`` is exactly ``expected``: type, dtypes, shape, index, elements."""
    kind = type(expected)
    assert type(actual) is kind, f"{what}: {type(actual)!r} is not {kind!r}"
    module = kind.__module__.split(".")[0]
    if module == "numpy":
        _same_array(actual, expected, what)
    elif module == "pandas":
        import pandas.testing as pdt

        if kind.__name__ == "Series":
            pdt.assert_series_equal(actual, expected, check_exact=True, check_freq=True)
        else:
            pdt.assert_frame_equal(actual, expected, check_exact=True, check_freq=True)
        freq = getattr(expected.index, "freq", None)
        assert getattr(actual.index, "freq", None) == freq, f"{what}: index freq"
        assert actual.attrs == expected.attrs, f"{what}: attrs"
    elif module == "pyarrow":
        assert actual.schema.equals(expected.schema, check_metadata=True), (
            f"{what}: schema {actual.schema} != {expected.schema}"
        )
        assert actual.equals(expected), f"{what}: rows differ"
    elif module == "polars":
        import polars.testing as plt

        if kind.__name__ == "Series":
            plt.assert_series_equal(actual, expected, check_exact=True)
        else:
            plt.assert_frame_equal(actual, expected, check_exact=True)
    elif kind is memoryview:
        assert (actual.format, actual.shape, actual.tobytes()) == (
            expected.format,
            expected.shape,
            expected.tobytes(),
        ), f"{what}: memoryview differs"
    elif kind is dict:
        assert list(actual) == list(expected), f"{what}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{what}[{key!r}]")
    elif kind in (list, tuple):
        assert len(actual) == len(expected), f"{what}: length"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{what}[{i}]")
    elif isinstance(expected, dt.datetime | dt.time):
        assert actual == expected, f"{what}: {actual!r} != {expected!r}"
        assert (actual.tzinfo, actual.fold) == (expected.tzinfo, expected.fold), (
            f"{what}: tzinfo/fold {actual.tzinfo!r}/{actual.fold} != "
            f"{expected.tzinfo!r}/{expected.fold}"
        )
        if actual.tzinfo is not None:
            assert actual.tzname() == expected.tzname(), f"{what}: tzname"
    else:
        assert actual == expected, f"{what}: {actual!r} != {expected!r}"


def _same_array(actual: Any, expected: Any, what: str) -> None:
    np = _np()
    if not isinstance(expected, np.ndarray):  # numpy scalars inside pickled data
        assert actual == expected, f"{what}: {actual!r} != {expected!r}"
        return
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.dtype.str == expected.dtype.str, f"{what}: byte order"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.flags.f_contiguous == expected.flags.f_contiguous, f"{what}: memory order"
    assert actual.tobytes(order="A") == expected.tobytes(order="A"), f"{what}: elements differ"
