"""Conformance suite for serialization handlers, with hypothesis strategies.

Every built-in handler runs it, and a plugin author's handler can too: subclass
:class:`HandlerConformance`, set ``handler`` and ``values`` (a hypothesis strategy of
objects the handler stores), and pytest collects the tests (the class name must start
with ``Test``)::

    from hypothesis import strategies as st
    from cacheness.storage.testing.handlers import HandlerConformance

    class TestFractionHandler(HandlerConformance):
        handler = FractionHandler()
        values = st.fractions()
        foreign_values = (1.5, "1/3")

Each test draws values, stores them through a write-only, non-seekable sink with every
codec in ``codecs``, passes the :class:`~cacheness.storage._handlers.base.FormatInfo`
through JSON (as a metadata backend would), and checks the object read back (from a
read-only stream and from a local file) with :meth:`HandlerConformance.assert_same`.
Cut, padded and mislabelled stored bytes must raise a
:class:`~cacheness.storage.errors.CacheError`, never load as a different object.

The strategies (``plain_values``, ``raw_values``, ``numpy_arrays``, ``dataframes``,
``arrow_tables``, ``polars_frames``, ``picklable_values``) import their library when
called, so importing this module needs only pytest and hypothesis.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import tempfile
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal, cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage._handlers.registry import HandlerRegistry
from cacheness.storage.errors import CacheError, IntegrityError, SerializationError

__all__ = [
    "HandlerConformance",
    "PicklableSample",
    "ReadOnlyStream",
    "WriteOnlySink",
    "arrow_tables",
    "assert_deep_equal",
    "dataframes",
    "numpy_arrays",
    "picklable_values",
    "plain_values",
    "polars_frames",
    "raw_values",
    "series",
]


# --------------------------------------------------------------------------- streams


class WriteOnlySink:
    """A sink that only accepts ``write`` (like a blob writer); anything else fails the test."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self.writes = 0

    def write(self, data: Any) -> int:
        """Append ``data``."""
        self.writes += 1
        return self._buffer.write(data)

    def getvalue(self) -> bytes:
        """The bytes written so far (for the test, not for the handler)."""
        return self._buffer.getvalue()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a handler called sink.{name}(): sinks are write-only streams")


def _view(data: bytes) -> memoryview:
    return memoryview(data)


class ReadOnlyStream(io.RawIOBase):
    """A readable, non-seekable stream over ``data`` (like a blob reader over HTTP)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always False."""
        return False

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the data."""
        return self._inner.readinto(buffer)


# --------------------------------------------------------------------------- equality


def assert_deep_equal(loaded: Any, original: Any, path: str = "value") -> None:
    """Assert ``loaded`` equals ``original`` with the same types all the way down.

    NaN equals NaN, tuples differ from lists, ``1`` differs from ``1.0`` and ``True``.

    Example:
        >>> assert_deep_equal({"a": (1, float("nan"))}, {"a": (1, float("nan"))})
        >>> assert_deep_equal([1], (1,))
        Traceback (most recent call last):
        ...
        AssertionError: value: type list != tuple
    """
    if type(loaded) is not type(original):
        raise AssertionError(f"{path}: type {type(loaded).__name__} != {type(original).__name__}")
    if isinstance(original, float) and math.isnan(original):
        assert math.isnan(loaded), f"{path}: {loaded!r} != nan"
        return
    if isinstance(original, list | tuple):
        assert len(loaded) == len(original), f"{path}: length {len(loaded)} != {len(original)}"
        for i, (a, b) in enumerate(zip(loaded, original, strict=True)):
            assert_deep_equal(a, b, f"{path}[{i}]")
        return
    if isinstance(original, dict):
        assert list(loaded) == list(original), f"{path}: keys {list(loaded)} != {list(original)}"
        for key in original:
            assert_deep_equal(loaded[key], original[key], f"{path}[{key!r}]")
        return
    if isinstance(original, dt.datetime | dt.time):
        assert loaded == original, f"{path}: {loaded!r} != {original!r}"
        assert loaded.tzinfo == original.tzinfo, f"{path}: {loaded.tzinfo!r}"
        assert loaded.fold == original.fold, f"{path}: fold differs"
        assert repr(loaded.tzinfo) == repr(original.tzinfo), f"{path}: {loaded.tzinfo!r}"
        return
    assert loaded == original, f"{path}: {loaded!r} != {original!r}"


# --------------------------------------------------------------------------- the suite


class HandlerConformance:
    """Mixin of tests every handler must pass. Subclass it as ``Test...``.

    Attributes:
        handler: the handler under test.
        values: hypothesis strategy of objects the handler stores.
        foreign_values: objects it must not claim (``can_handle`` False).
        codecs: the ``SerializationOptions.codec`` values to try.
        options: extra ``SerializationOptions`` fields for every test.
        max_examples: hypothesis examples per test (more under the ``thorough`` profile).
        file_options: extra options for the local-file test (e.g. ``mmap_mode``).
    """

    handler: ClassVar[Handler]
    values: ClassVar[st.SearchStrategy[Any]]
    foreign_values: ClassVar[Sequence[Any]] = ()
    codecs: ClassVar[Sequence[str]] = ("auto", "none", "zstd", "gzip", "blosc2")
    options: ClassVar[dict[str, Any]] = {}
    file_options: ClassVar[dict[str, Any]] = {}
    max_examples: ClassVar[int] = 20

    # ---- hooks

    def assert_same(self, loaded: Any, original: Any) -> None:
        """Assert the loaded object equals the original (override for arrays, frames...)."""
        assert_deep_equal(loaded, original)

    def make_options(self, **changes: Any) -> SerializationOptions:
        """Options for one round trip: ``options`` plus ``changes``."""
        return SerializationOptions(**{**self.options, **changes})

    # ---- helpers

    def run(self, strategy: st.SearchStrategy[Any], check: Callable[[Any], None]) -> None:
        """Run ``check`` on examples drawn from ``strategy`` (hypothesis, this class's budget)."""
        default = settings.default
        thorough = default.max_examples if default is not None and _thorough() else 0
        examples = max(self.max_examples, thorough)

        @settings(
            max_examples=examples,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(strategy)
        def property_test(value: Any) -> None:
            check(value)

        property_test()

    def dump(self, obj: Any, options: SerializationOptions) -> tuple[bytes, FormatInfo]:
        """Dump through a write-only sink; return the stored bytes and the persisted info."""
        sink = WriteOnlySink()
        info = self.handler.dump(obj, cast(BinaryIO, sink), options)  # a write-only file
        assert isinstance(info, FormatInfo), f"dump returned {type(info).__name__}"
        assert info.handler == self.handler.name, f"info names handler {info.handler!r}"
        assert isinstance(info.format, str), "format must be a str"
        assert info.format, "empty format"
        assert isinstance(info.codec, str), "codec must be a str"
        assert info.codec, "empty codec"
        assert isinstance(info.raw_size, int), f"raw_size {info.raw_size!r}"
        assert info.raw_size >= 0, f"raw_size {info.raw_size}"
        # Metadata backends keep the info as JSON: load from what comes back.
        persisted = msgspec.json.decode(msgspec.json.encode(info), type=FormatInfo)
        assert persisted == info, "FormatInfo does not survive JSON (details must be JSON-able)"
        return sink.getvalue(), persisted

    def load(
        self,
        data: bytes,
        info: FormatInfo,
        options: SerializationOptions,
        local_path: Path | None = None,
    ) -> Any:
        """Load from a read-only, non-seekable stream over ``data``."""
        stream = cast(BinaryIO, ReadOnlyStream(data))  # a binary file that only reads
        return self.handler.load(stream, info, options, local_path=local_path)

    def _codec_and_value(self) -> st.SearchStrategy[tuple[str, Any]]:
        return st.tuples(st.sampled_from(list(self.codecs)), self.values)

    # ---- tests

    def test_registers_in_a_registry(self) -> None:
        registry = HandlerRegistry()
        registry.register(self.handler)
        assert registry.list() == [self.handler.name]
        assert registry.get(self.handler.name) is self.handler

    def test_claims_its_values(self) -> None:
        self.run(self.values, lambda value: _check(self.handler.can_handle(value), value))

    def test_refuses_foreign_values(self) -> None:
        for value in self.foreign_values:
            assert not self.handler.can_handle(value), f"claims foreign value {value!r}"

    def test_round_trip_through_streams(self) -> None:
        def check(case: tuple[str, Any]) -> None:
            codec, value = case
            options = self.make_options(codec=codec)
            data, info = self.dump(value, options)
            self.assert_same(self.load(data, info, options), value)

        self.run(self._codec_and_value(), check)

    def test_round_trip_from_local_file(self) -> None:
        def check(case: tuple[str, Any]) -> None:
            codec, value = case
            options = self.make_options(codec=codec, **self.file_options)
            data, info = self.dump(value, options)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "blob"
                path.write_bytes(data)
                with path.open("rb") as source:
                    loaded = self.handler.load(source, info, options, local_path=path)
                self.assert_same(loaded, value)
                del loaded  # release memory maps before the folder goes

        self.run(self._codec_and_value(), check)

    def test_dump_is_deterministic(self) -> None:
        """The same object stores as the same bytes (content-addressed stores dedup them)."""

        def check(case: tuple[str, Any]) -> None:
            codec, value = case
            options = self.make_options(codec=codec)
            first, info1 = self.dump(value, options)
            second, info2 = self.dump(value, options)
            assert info1 == info2, f"{info1} != {info2}"
            assert first == second, "two dumps of one object differ"

        self.run(self._codec_and_value(), check)

    def test_cut_bytes_fail_loudly(self) -> None:
        def check(case: tuple[str, Any]) -> None:
            codec, value = case
            options = self.make_options(codec=codec)
            data, info = self.dump(value, options)
            if not data:
                return
            with pytest.raises(CacheError):
                self.load(data[: len(data) // 2], info, options)

        self.run(self._codec_and_value(), check)

    def test_extra_bytes_fail_loudly(self) -> None:
        def check(case: tuple[str, Any]) -> None:
            codec, value = case
            options = self.make_options(codec=codec)
            data, info = self.dump(value, options)
            with pytest.raises(CacheError):
                self.load(data + b"\x00garbage", info, options)

        self.run(self._codec_and_value(), check)

    def test_unknown_format_is_refused(self) -> None:
        def check(value: Any) -> None:
            options = self.make_options()
            data, info = self.dump(value, options)
            forged = msgspec.structs.replace(info, format="no-such-format")
            with pytest.raises(SerializationError):
                self.load(data, forged, options)

        self.run(self.values, check)

    def test_wrong_raw_size_is_refused(self) -> None:
        """A decoder stops at the recorded size: a smaller one must fail, not truncate."""

        def check(case: tuple[str, Any]) -> None:
            codec, value = case
            options = self.make_options(codec=codec)
            data, info = self.dump(value, options)
            if info.raw_size == 0 or not self.checks_raw_size(info):
                return
            forged = msgspec.structs.replace(info, raw_size=info.raw_size - 1)
            with pytest.raises((IntegrityError, SerializationError)):
                self.load(data, forged, options)

        self.run(self._codec_and_value(), check)

    def checks_raw_size(self, info: FormatInfo) -> bool:
        """Whether ``info.raw_size`` bounds decoding for this format (override if not)."""
        return True


def _check(claimed: bool, value: Any) -> None:
    assert claimed, f"can_handle is False for {type(value).__name__}: {value!r}"


def _thorough() -> bool:
    return os.environ.get("HYPOTHESIS_PROFILE", "default") != "default"


# --------------------------------------------------------------------------- strategies

_ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")


def _timezones() -> st.SearchStrategy[dt.tzinfo | None]:
    offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
        lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
    )
    zones = st.sampled_from(_ZONES).map(zoneinfo.ZoneInfo)
    return st.one_of(st.none(), st.just(dt.UTC), offsets, zones)


def _scalars(*, hashable_floats: bool = False) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=not hashable_floats),
        st.text(max_size=20),
        st.binary(max_size=20),
        st.datetimes(timezones=_timezones(), allow_imaginary=True),
        st.dates(),
        st.times(timezones=_timezones()),
        st.timedeltas(),
    )


def plain_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Nested plain data: what the ``plain`` handler stores (tuples, sets, dates included).

    Example:
        >>> from cacheness.storage._handlers.plain import PlainHandler
        >>> from hypothesis import find
        >>> find(plain_values(), lambda v: isinstance(v, tuple) and len(v) == 2)
        (None, None)
    """
    keys = st.one_of(
        st.text(max_size=10),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.tuples(st.text(max_size=5), st.integers(min_value=0, max_value=9)),
    )
    hashables = _scalars(hashable_floats=True).filter(lambda v: not isinstance(v, dt.time))

    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=5).map(tuple),
            st.dictionaries(keys, children, max_size=5),
            st.frozensets(hashables, max_size=4),
            st.sets(hashables, max_size=4),
        )

    return st.recursive(_scalars(), containers, max_leaves=max_leaves)


def raw_values() -> st.SearchStrategy[Any]:
    """``bytes``, ``bytearray``, ``memoryview`` (typed too) and ``str`` with lone surrogates.

    Example:
        >>> from hypothesis import find
        >>> find(raw_values(), lambda v: isinstance(v, bytearray))
        bytearray(b'')
    """
    import array

    surrogates = st.sampled_from(["\ud800", "a\udfffb", "\udc80\ud7ff"])
    texts = st.one_of(st.text(max_size=200), surrogates)
    blobs = st.one_of(st.binary(max_size=3000), st.integers(0, 5000).map(lambda n: b"ab" * n))
    doubles = st.lists(st.floats(allow_nan=False), max_size=50).map(
        lambda xs: memoryview(array.array("d", xs))
    )
    matrices = st.integers(1, 6).flatmap(
        lambda rows: st.lists(
            st.integers(-(2**31), 2**31 - 1), min_size=rows * 3, max_size=rows * 3
        ).map(lambda xs: memoryview(array.array("i", xs)).cast("B").cast("i", [len(xs) // 3, 3]))
    )
    return st.one_of(
        blobs,
        blobs.map(bytearray),
        blobs.map(_view),
        texts,
        doubles,
        matrices,
    )


@dataclass
class PicklableSample:
    """An importable class for the ``objects`` handler's tests (pickled by reference)."""

    name: str
    weights: Any = None
    tags: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)


def picklable_values() -> st.SearchStrategy[Any]:
    """Objects only pickle stores: dataclasses, Fractions, Decimals, complex numbers...

    With numpy installed, some carry arrays (pickled out of band).

    Example:
        >>> from hypothesis import find
        >>> find(picklable_values(), lambda v: isinstance(v, PicklableSample)).name
        ''
    """
    from collections import OrderedDict

    base = st.one_of(
        st.builds(Fraction, st.integers(), st.integers(min_value=1)),
        st.decimals(allow_nan=False),
        st.complex_numbers(allow_nan=False),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=4).map(OrderedDict),
    )
    weights: st.SearchStrategy[Any] = st.none()
    try:
        import numpy as np

        weights = st.integers(0, 50_000).map(lambda n: np.arange(n, dtype=np.float64) / 7)
    except ImportError:
        pass
    samples = st.builds(
        PicklableSample,
        name=st.text(max_size=10),
        weights=weights,
        tags=st.frozensets(st.text(max_size=4), max_size=3),
        extra=st.dictionaries(st.text(max_size=4), base, max_size=3),
    )
    return st.one_of(base, samples, st.lists(base, max_size=3).map(lambda xs: [*xs, object]))


def numpy_arrays(max_side: int = 6) -> st.SearchStrategy[Any]:
    """Arrays of random numeric/bool/datetime/string/structured dtypes and shapes.

    Includes 0-d, empty, Fortran-ordered and non-contiguous (strided, transposed) arrays,
    both byte orders.

    Example:
        >>> from hypothesis import find
        >>> find(numpy_arrays(), lambda a: a.ndim == 2 and not a.flags.c_contiguous).ndim
        2
    """
    import numpy as np
    from hypothesis.extra import numpy as hnp

    endians = st.sampled_from("<>")
    dtypes = st.one_of(
        hnp.boolean_dtypes(),
        hnp.integer_dtypes(endianness="?"),
        hnp.unsigned_integer_dtypes(endianness="?"),
        hnp.floating_dtypes(endianness="?"),
        hnp.complex_number_dtypes(endianness="?"),
        hnp.datetime64_dtypes(endianness="?"),
        hnp.timedelta64_dtypes(endianness="?"),
        hnp.byte_string_dtypes(max_len=8),
        hnp.unicode_string_dtypes(max_len=8, endianness="?"),
        endians.map(lambda e: np.dtype([("id", e + "i4"), ("xy", e + "f8", (2,))])),
    )
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=max_side)
    base = st.builds(lambda d, s: (d, s), dtypes, shapes).flatmap(
        lambda ds: hnp.arrays(ds[0], ds[1])
    )

    def reshape(array: Any, how: int) -> Any:
        if array.ndim == 0:
            return array
        if how == 1:
            return array.T
        if how == 2:
            return np.asfortranarray(array)
        if how == 3:
            return array[::2]
        if how == 4 and array.ndim > 1:
            return array[:, ::-1]
        return array

    return st.builds(reshape, base, st.integers(0, 4))


def assert_arrays_identical(loaded: Any, original: Any) -> None:
    """Assert same type, dtype, shape and bit-identical elements (NaN payloads too)."""
    import numpy as np

    assert isinstance(loaded, np.ndarray), type(loaded)
    assert loaded.dtype == original.dtype, (loaded.dtype, original.dtype)
    assert loaded.shape == original.shape, (loaded.shape, original.shape)
    assert loaded.tobytes() == original.tobytes(), "element bytes differ"


_COLUMN_KINDS = (
    "int64",
    "float64",
    "bool",
    "category",
    "datetime_tz",
    "datetime",
    "timedelta",
    "Int64",
    "string",
    "str",
    "object_str",
    "boolean",
    "uint8",
    "float32",
    "period",
)


def _column(kind: str, n: int, draw: Callable[..., Any]) -> Any:
    import numpy as np
    import pandas as pd

    ints = st.integers(-(2**40), 2**40)
    if kind in ("int64", "uint8"):
        bounds = (0, 255) if kind == "uint8" else (-(2**62), 2**62)
        values = draw(st.lists(st.integers(*bounds), min_size=n, max_size=n))
        return np.array(values, dtype=kind)
    if kind in ("float64", "float32"):
        width: Literal[32, 64] = 32 if kind == "float32" else 64
        values = draw(st.lists(st.floats(width=width), min_size=n, max_size=n))
        return np.array(values, dtype=kind)
    if kind == "bool":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    words = st.text(alphabet="abcxyz", max_size=4)
    if kind == "category":
        cats = draw(st.lists(words, min_size=1, max_size=4, unique=True))
        codes = draw(st.lists(st.integers(-1, len(cats) - 1), min_size=n, max_size=n))
        ordered = draw(st.booleans())
        return pd.Categorical.from_codes(codes, categories=cats, ordered=ordered)
    if kind in ("datetime_tz", "datetime", "timedelta", "period"):
        values = draw(st.lists(st.one_of(st.none(), ints), min_size=n, max_size=n))
        stamps = [pd.NaT if v is None else v for v in values]
        if kind == "timedelta":
            return pd.to_timedelta(stamps, unit="us")
        if kind == "period":
            return pd.PeriodIndex(
                [pd.NaT if v is None else pd.Period("2020-01", "M") + v % 1000 for v in values],
                freq="M",
            )
        index = pd.to_datetime(stamps, unit="us")
        if kind == "datetime_tz":
            index = index.tz_localize("UTC").tz_convert(draw(st.sampled_from(_ZONES)))
        return index
    if kind in ("Int64", "boolean"):
        inner = ints if kind == "Int64" else st.booleans()
        values = draw(st.lists(st.one_of(st.none(), inner), min_size=n, max_size=n))
        return pd.array(values, dtype=kind)
    values = draw(st.lists(st.one_of(st.none(), words), min_size=n, max_size=n))
    if kind == "string":
        return pd.array(values, dtype="string")
    if kind == "str":
        return pd.array([np.nan if v is None else v for v in values], dtype="str")
    return np.array(values, dtype=object)


def _index(n: int, draw: Callable[..., Any]) -> Any:
    import pandas as pd

    kind = draw(st.sampled_from(("range", "int", "str", "datetime_tz", "multi")))
    name = draw(st.one_of(st.none(), st.text(alphabet="ijk", min_size=1, max_size=3)))
    if kind == "range":
        start = draw(st.integers(-5, 5))
        step = draw(st.integers(1, 3))
        return pd.RangeIndex(start, start + n * step, step, name=name)
    if kind == "int":
        return pd.Index(draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n)), name=name)
    if kind == "str":
        words = st.text(alphabet="pqr", max_size=3)
        return pd.Index(draw(st.lists(words, min_size=n, max_size=n)), name=name)
    if kind == "datetime_tz":
        freq = draw(st.sampled_from(("D", "h", "15min")))
        return pd.date_range("2024-03-30", periods=n, freq=freq, tz="Europe/Paris", name=name)
    outer = draw(st.lists(st.sampled_from("ab"), min_size=n, max_size=n))
    inner = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return pd.MultiIndex.from_arrays([outer, inner], names=[name, "level_1"])


@st.composite
def dataframes(draw: Callable[..., Any], max_rows: int = 12, max_columns: int = 5) -> Any:
    """DataFrames with random columns (numeric, bool, category, tz datetime, nullable,
    string, object-str, period...), random index kinds and labels (str or RangeIndex).

    Example:
        >>> from hypothesis import find
        >>> find(dataframes(), lambda f: f.shape[1] == 2).shape[1]
        2
    """
    import pandas as pd

    n = draw(st.integers(0, max_rows))
    kinds = draw(st.lists(st.sampled_from(_COLUMN_KINDS), min_size=0, max_size=max_columns))
    columns = {f"c{i}_{kind}": _column(kind, n, draw) for i, kind in enumerate(kinds)}
    frame = pd.DataFrame(columns, index=_index(n, draw))
    if draw(st.booleans()):
        frame.columns = pd.RangeIndex(len(frame.columns))
    if draw(st.booleans()):
        frame.attrs["source"] = draw(st.text(max_size=5))
    return frame


@st.composite
def series(draw: Callable[..., Any], max_rows: int = 12) -> Any:
    """Series cut from :func:`dataframes`, with a str, int or None name.

    Example:
        >>> from hypothesis import find
        >>> type(find(series(), lambda s: True)).__name__
        'Series'
    """
    frame = draw(dataframes(max_rows=max_rows).filter(lambda f: f.shape[1] > 0))
    column = frame.iloc[:, draw(st.integers(0, frame.shape[1] - 1))]
    return column.rename(draw(st.one_of(st.none(), st.text(max_size=5), st.integers())))


@st.composite
def arrow_tables(draw: Callable[..., Any], max_rows: int = 20) -> Any:
    """pyarrow Tables (random chunking) and RecordBatches of assorted Arrow types.

    Example:
        >>> from hypothesis import find
        >>> table = find(arrow_tables(), lambda t: t.num_rows > 2)
        >>> type(table).__name__ in {"Table", "RecordBatch"}
        True
    """
    import pyarrow as pa

    n = draw(st.integers(0, max_rows))
    maybe = st.one_of
    fields = {
        "i": (pa.int64(), maybe(st.none(), st.integers(-(2**63), 2**63 - 1))),
        "f": (pa.float32(), maybe(st.none(), st.floats(width=32, allow_nan=False))),
        "s": (pa.string(), maybe(st.none(), st.text(max_size=8))),
        "b": (pa.binary(), maybe(st.none(), st.binary(max_size=8))),
        "t": (pa.timestamp("us", tz="Asia/Tokyo"), maybe(st.none(), st.integers(0, 2**50))),
        "l": (pa.list_(pa.int16()), maybe(st.none(), st.lists(st.integers(-9, 9), max_size=3))),
        "d": (pa.dictionary(pa.int8(), pa.string()), maybe(st.none(), st.sampled_from("xyz"))),
        "st": (
            pa.struct([("a", pa.int8()), ("b", pa.bool_())]),
            maybe(st.none(), st.fixed_dictionaries({"a": st.integers(-9, 9), "b": st.booleans()})),
        ),
    }
    names = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=4, unique=True))
    arrays = []
    for name in names:
        kind, values = fields[name]
        data = draw(st.lists(values, min_size=n, max_size=n))
        arrays.append(pa.array(data, type=kind))
    schema = pa.schema(
        [pa.field(name, array.type) for name, array in zip(names, arrays, strict=True)],
        metadata={"origin": draw(st.text(max_size=5))} if draw(st.booleans()) else None,
    )
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if draw(st.booleans()):
        return batch
    cut = draw(st.integers(0, n))
    return pa.Table.from_batches([batch.slice(0, cut), batch.slice(cut)], schema=schema)


@st.composite
def polars_frames(draw: Callable[..., Any], max_rows: int = 15) -> Any:
    """polars DataFrames and Series of assorted dtypes (nulls included).

    Example:
        >>> from hypothesis import find
        >>> type(find(polars_frames(), lambda f: len(f) > 1)).__name__ in {"DataFrame", "Series"}
        True
    """
    import polars as pl

    n = draw(st.integers(0, max_rows))
    maybe = st.one_of
    columns: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
        "i": (pl.Int64, maybe(st.none(), st.integers(-(2**63), 2**63 - 1))),
        "u": (pl.UInt8, maybe(st.none(), st.integers(0, 255))),
        "f": (pl.Float64, maybe(st.none(), st.floats())),
        "s": (pl.String, maybe(st.none(), st.text(max_size=8))),
        "b": (pl.Boolean, maybe(st.none(), st.booleans())),
        "d": (pl.Date, maybe(st.none(), st.dates())),
        "t": (
            pl.Datetime("us", "Europe/Paris"),
            maybe(st.none(), st.datetimes(timezones=st.just(dt.UTC))),
        ),
        "c": (pl.Categorical, maybe(st.none(), st.sampled_from(("lo", "hi")))),
        "l": (pl.List(pl.Int32), maybe(st.none(), st.lists(st.integers(-9, 9), max_size=3))),
        "dec": (
            pl.Decimal(10, 2),
            maybe(st.none(), st.decimals(places=2, min_value=-1000, max_value=1000)),
        ),
    }
    names = draw(st.lists(st.sampled_from(sorted(columns)), min_size=1, max_size=4, unique=True))
    data = {}
    for name in names:
        dtype, values = columns[name]
        data[name] = pl.Series(name, draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)
    frame = pl.DataFrame(data)
    if draw(st.booleans()):
        return frame.to_series(0)
    return frame
