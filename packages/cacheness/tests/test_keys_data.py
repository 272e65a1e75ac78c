"""derive_key on numpy arrays and scalars and on pandas objects: by content."""

from __future__ import annotations

import warnings

import pytest

from cacheness.keys import derive_key

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")


def key(value, **options):
    return derive_key({"v": value}, **options)


def all_distinct(*values) -> bool:
    found = [key(v) for v in values]
    return len(set(found)) == len(found)


# -- numpy arrays ---------------------------------------------------------------------------


def test_arrays_by_dtype_shape_and_bytes():
    a = np.arange(12, dtype="float64").reshape(3, 4)
    assert key(a) == key(a.copy())
    assert all_distinct(a, a.reshape(4, 3), a.reshape(-1), a.astype("float32"), a.astype("int64"))
    b = a.copy()
    b[2, 3] = -1
    assert key(a) != key(b)


def test_layout_does_not_matter_only_the_logical_array():
    a = np.arange(24, dtype="int32").reshape(4, 6)
    assert key(np.asfortranarray(a)) == key(a)
    strided = a[::2, 1::3]
    assert not strided.flags.c_contiguous
    assert key(strided) == key(np.ascontiguousarray(strided))
    assert key(a.T) == key(np.ascontiguousarray(a.T))
    assert key(a.T) != key(a)


def test_byte_order_is_normalised():
    a = np.arange(5, dtype="<i4")
    assert key(a.astype(">i4")) == key(a)
    assert key(np.array(["ab"], dtype=">U2")) == key(np.array(["ab"], dtype="<U2"))


def test_arrays_are_not_python_sequences():
    assert all_distinct(np.array([1, 2]), [1, 2], (1, 2), np.array([1.0, 2.0]))


def test_empty_zero_dimensional_and_special_dtypes():
    assert all_distinct(np.zeros((0, 3)), np.zeros((3, 0)), np.zeros(0), np.array(5), np.array([5]))
    assert all_distinct(
        np.array(["2024-01-01"], dtype="datetime64[D]"),
        np.array(["2024-01-01"], dtype="datetime64[s]"),
        np.array([True, False]),
        np.array([1 + 2j]),
        np.array(["a", "bc"]),
        np.array([b"a"]),
    )
    assert all_distinct(np.zeros(2, dtype="U0"), np.zeros(3, dtype="U0"), np.zeros(2, dtype="S0"))


def test_structured_arrays():
    dtype = [("a", "i4"), ("b", "f8")]
    a = np.array([(1, 2.0), (3, 4.0)], dtype=dtype)
    assert key(a) == key(a.copy())
    assert key(a) != key(np.array([(1, 2.0), (3, 4.5)], dtype=dtype))
    assert key(a) != key(a.astype([("a", "i4"), ("c", "f8")]))


def test_object_arrays_element_by_element():
    def obj(*items):
        return np.array(items, dtype=object)

    assert key(obj(1, "a", None)) == key(obj(1, "a", None))
    assert key(obj(1, "1")) != key(obj("1", "1"))
    assert key(np.array([[1, 2], [3, 4]], dtype=object)) != key(obj(1, 2, 3, 4))
    assert key(obj(1, 2)) != key(np.array([1, 2]))


def test_masked_arrays_include_the_mask():
    data = np.array([1.0, 2.0, 3.0])
    ma = np.ma.masked_array(data, mask=[0, 1, 0])
    assert key(ma) == key(np.ma.masked_array(data.copy(), mask=[0, 1, 0]))
    assert all_distinct(ma, np.ma.masked_array(data, mask=[0, 0, 0]), data)


def test_memmap_hashes_like_the_array(tmp_path):
    path = tmp_path / "mm.dat"
    mm = np.memmap(path, dtype="float32", mode="w+", shape=(4,))
    mm[:] = [1, 2, 3, 4]
    mm.flush()
    assert key(mm) == key(np.array([1, 2, 3, 4], dtype="float32"))
    del mm


def test_other_ndarray_subclasses_are_tagged():
    class Tagged(np.ndarray):
        pass

    plain = np.arange(3)
    assert key(plain.view(Tagged)) == key(np.arange(3).view(Tagged))
    assert key(plain.view(Tagged)) != key(plain)


# -- numpy scalars and dtypes ---------------------------------------------------------------


def test_numpy_scalars_by_dtype_and_value():
    assert all_distinct(np.float64(1), np.float32(1), np.int64(1), np.bool_(True), 1.0, 1, True)
    assert key(np.float64(0.25)) == key(np.float64(0.25))
    assert key(np.str_("ab")) != key("ab")
    assert key(np.datetime64("2024-01-01")) != key(np.datetime64("2024-01-02"))


def test_numpy_nan_scalars_are_normalised():
    with np.errstate(invalid="ignore"):
        negative_nan = np.float64(np.inf) - np.float64(np.inf)
    assert key(negative_nan) == key(np.float64(np.nan))
    assert key(np.float32(np.nan)) == key(-np.float32(np.nan))
    assert key(np.complex128(complex(np.nan, 1))) == key(np.complex128(complex(-np.nan, 1)))
    assert key(np.float64(np.nan)) != key(np.float32(np.nan))


def test_dtypes_as_values():
    assert key(np.dtype("float64")) == key(np.dtype(float))
    assert all_distinct(np.dtype("float64"), np.dtype("float32"), np.float64, "float64")
    assert key(np.dtype([("a", "i4")])) != key(np.dtype([("b", "i4")]))


# -- pandas ---------------------------------------------------------------------------------


def frame():
    return pd.DataFrame(
        {
            "n": [1, 2, 3],
            "x": [0.5, np.nan, 2.0],
            "s": pd.Series(["a", None, "c"], dtype=object),
            "cat": pd.Categorical(["u", "v", "u"]),
            "i": pd.array([1, None, 3], dtype="Int64"),
            "t": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris"),
        },
        index=pd.Index([10, 20, 30], name="id"),
    )


def test_dataframe_by_content():
    df = frame()
    assert key(df) == key(frame())
    assert key(df) == key(df.copy(deep=True))


@pytest.mark.parametrize(
    "change",
    [
        lambda df: df.assign(n=[1, 2, 4]),
        lambda df: df.assign(n=df["n"].astype("float64")),
        lambda df: df.assign(n=df["n"].astype("int32")),
        lambda df: df.rename(columns={"n": "m"}),
        lambda df: df[["x", "n", "s", "cat", "i", "t"]],
        lambda df: df.set_axis([10, 20, 31], axis=0),
        lambda df: df.rename_axis("key"),
        lambda df: df.assign(s=pd.Series(["a", "1", "c"], index=df.index, dtype=object)),
        lambda df: df.assign(i=pd.array([1, 2, 3], dtype="Int64")),
        lambda df: df.assign(i=pd.array([1, 0, 3], dtype="Int64")),
        lambda df: df.assign(cat=pd.Categorical(["u", "v", "u"], categories=["v", "u"])),
        lambda df: df.assign(cat=pd.Categorical(["u", "v", "u"], ordered=True)),
        lambda df: df.assign(t=df["t"].dt.tz_convert("UTC")),
        lambda df: df.iloc[:2],
        lambda df: df.drop(columns="x"),
    ],
    ids=[
        "value",
        "int-to-float",
        "int64-to-int32",
        "column-name",
        "column-order",
        "index-value",
        "index-name",
        "object-cell",
        "missing-value",
        "na-vs-zero",
        "category-order",
        "ordered",
        "time-zone",
        "rows",
        "columns",
    ],
)
def test_dataframe_changes_change_the_key(change):
    df = frame()
    assert key(change(df)) != key(df)


def test_object_columns_keep_types_apart():
    a = pd.DataFrame({"c": pd.Series([1, 2], dtype=object)})
    b = pd.DataFrame({"c": pd.Series(["1", "2"], dtype=object)})
    c = pd.DataFrame({"c": pd.Series([1.0, 2.0], dtype=object)})
    assert all_distinct(a, b, c)


def test_series_and_index():
    s = pd.Series([1.0, 2.0], index=["a", "b"], name="s")
    assert key(s) == key(s.copy())
    assert all_distinct(s, s.rename("t"), s.rename(None), s.set_axis(["a", "c"]), s.to_frame())
    idx = pd.Index([1, 2, 3], name="k")
    assert key(idx) == key(pd.Index([1, 2, 3], name="k"))
    assert all_distinct(idx, idx.rename("j"), pd.Index([1.0, 2.0, 3.0], name="k"), [1, 2, 3])
    assert key(pd.RangeIndex(3)) == key(pd.Index([0, 1, 2]))


def test_multiindex():
    mi = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["l", "n"])
    assert key(mi) == key(pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["l", "n"]))
    assert all_distinct(
        mi,
        pd.MultiIndex.from_tuples([("a", 1), ("b", 3)], names=["l", "n"]),
        pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["l", "m"]),
    )
    df = pd.DataFrame({"v": [1, 2]}, index=mi)
    assert key(df) != key(df.reset_index(level="n"))


def test_extension_arrays_and_string_dtypes():
    strings = pd.array(["a", None], dtype="string")
    assert key(strings) == key(pd.array(["a", None], dtype="string"))
    assert all_distinct(strings, pd.array(["a", "b"], dtype="string"), ["a", None])
    assert key(pd.Series(["x", "y"], dtype="string")) != key(pd.Series(["x", "y"], dtype=object))


def test_pandas_scalars():
    ts = pd.Timestamp("2024-01-01 12:00")
    assert key(ts) == key(pd.Timestamp("2024-01-01 12:00"))
    assert key(ts) != key(ts.to_pydatetime())
    assert key(ts) != key(ts + pd.Timedelta(1, "ns"))
    utc = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    assert key(utc) == key(utc.tz_convert("Asia/Tokyo"))
    assert key(utc) != key(ts)
    assert all_distinct(pd.Timedelta(1, "ns"), pd.Timedelta(2, "ns"), pd.NaT, pd.NA, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        key(pd.Timestamp("2024-01-01 00:00:00.000000001"))
        key(pd.Timedelta(1, "ns"))


def test_unsupported_cells_are_located():
    df = pd.DataFrame({"a": [1], "b": pd.Series([object()], dtype=object)})
    with pytest.raises(TypeError) as caught:
        key(df)
    assert caught.value.parameter == "v.iloc[:, 1][0]"
