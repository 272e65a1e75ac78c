"""Canonical form of numpy and pandas key values (private; see ``cacheness.keys``).

Only reached when numpy or pandas is already imported: a value cannot be an ndarray or
a DataFrame otherwise, so hashing a dict never imports either.

* ndarray: dtype (byte order normalised to little-endian), shape and the XXH3-128 of the
  C-ordered bytes, so a Fortran-ordered or strided view hashes like its contiguous copy.
  Object arrays are hashed element by element; masked arrays by data and mask.
* numpy scalars: dtype and bytes (NaN normalised), distinct from Python numbers.
* pandas: DataFrame by columns (an Index), index and every column's dtype and values;
  Series by name, index, dtype and values; Index by name(s), dtype and values.
  numpy-backed columns hash at memory speed; object and extension columns (strings,
  nullable, tz-aware, arrow) value by value; categoricals by categories and codes.
"""

from __future__ import annotations

import sys
from typing import Any

from cacheness._keys_canon import (
    M_MASKED_ARRAY,
    M_NDARRAY,
    M_NDARRAY_OBJECT,
    M_NUMPY_DTYPE,
    M_NUMPY_SCALAR,
    M_PD_ARRAY,
    M_PD_CATEGORICAL,
    M_PD_FRAME,
    M_PD_INDEX,
    M_PD_MULTIINDEX,
    M_PD_NA,
    M_PD_NAT,
    M_PD_SERIES,
    M_PD_TIMEDELTA,
    M_PD_TIMESTAMP,
    M_SUBCLASS,
    Canonicalizer,
    KeyProblem,
    qualified_name,
)
from cacheness.storage import hash_bytes

__all__ = ["canonical"]


def canonical(c: Canonicalizer, v: Any) -> Any:
    """Return the canonical tree of a numpy/pandas value, or None for anything else."""
    pd = sys.modules.get("pandas")
    if pd is not None:
        out = _pandas(c, v, pd)
        if out is not None:
            return out
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.ndarray):
            return _ndarray(c, v, np)
        if isinstance(v, np.generic):
            return _scalar(c, v, np)
        if isinstance(v, np.dtype):
            return [M_NUMPY_DTYPE, _dtype(c, v)]
    return None


# -- numpy ---------------------------------------------------------------------------------


def _dtype(c: Canonicalizer, dtype: Any) -> Any:
    return dtype.str if dtype.fields is None else c.value(dtype.descr)


def _little_endian(a: Any) -> Any:
    target = a.dtype.newbyteorder("<")
    return a if target == a.dtype else a.astype(target)


def _ndarray(c: Canonicalizer, a: Any, np: Any) -> list[Any]:
    t = type(a)
    if t is not np.ndarray and t is not np.memmap:
        ma = sys.modules.get("numpy.ma")
        if ma is not None and isinstance(a, ma.MaskedArray):
            plain = a.view(np.ndarray)
            return [M_MASKED_ARRAY, _ndarray(c, plain, np), _ndarray(c, ma.getmaskarray(a), np)]
        return [M_SUBCLASS, qualified_name(t), _ndarray(c, a.view(np.ndarray), np)]
    dtype = a.dtype
    shape = list(a.shape)
    if dtype.hasobject:
        if dtype.kind != "O":
            raise c.unsupported(a, ": structured arrays with object fields cannot be hashed")
        c.enter(a)
        out = [M_NDARRAY_OBJECT, shape, c.items(a.reshape(-1).tolist())]
        c.leave(a)
        return out
    a = np.ascontiguousarray(_little_endian(a))
    digest = hash_bytes(memoryview(a.reshape(-1).view(np.uint8)) if a.nbytes else b"")
    return [M_NDARRAY, _dtype(c, a.dtype), shape, digest]


def _scalar(c: Canonicalizer, v: Any, np: Any) -> list[Any]:
    a = np.array(v)
    kind = a.dtype.kind
    if kind == "f" and np.isnan(a):
        a = np.array(np.nan, dtype=a.dtype)
    elif kind == "c" and np.isnan(a):
        if np.isnan(a.real):
            a.real = np.nan
        if np.isnan(a.imag):
            a.imag = np.nan
    a = _little_endian(a)
    return [M_NUMPY_SCALAR, _dtype(c, a.dtype), a.tobytes()]


# -- pandas --------------------------------------------------------------------------------


def _pandas(c: Canonicalizer, v: Any, pd: Any) -> Any:
    if isinstance(v, pd.DataFrame):
        out: list[Any] = [M_PD_FRAME, _index(c, v.columns, pd), _index(c, v.index, pd)]
        for position, (_label, column) in enumerate(v.items()):
            try:
                out.append(_values(c, column, pd))
            except KeyProblem as problem:
                problem.where.append(f".iloc[:, {position}]")
                raise
        return out
    if isinstance(v, pd.Series):
        return [M_PD_SERIES, c.value(v.name), _index(c, v.index, pd), _values(c, v, pd)]
    if isinstance(v, pd.Index):
        return _index(c, v, pd)
    if isinstance(v, pd.api.extensions.ExtensionArray):
        return [M_SUBCLASS, qualified_name(type(v)), _values(c, v, pd)]
    if v is pd.NaT:
        return [M_PD_NAT]
    if v is pd.NA:
        return [M_PD_NA]
    if isinstance(v, pd.Timestamp):
        # to_pydatetime keeps microseconds (UTC-normalised like datetime); ns come apart.
        return [M_PD_TIMESTAMP, c.value(v.to_pydatetime(warn=False)), v.nanosecond]
    if isinstance(v, pd.Timedelta):
        return [M_PD_TIMEDELTA, c.value(v.to_pytimedelta()), v.nanoseconds]
    return None


def _index(c: Canonicalizer, index: Any, pd: Any) -> list[Any]:
    if isinstance(index, pd.MultiIndex):
        levels = [_values(c, index.get_level_values(i), pd) for i in range(index.nlevels)]
        return [M_PD_MULTIINDEX, c.value(list(index.names)), levels]
    return [M_PD_INDEX, c.value(index.name), _values(c, index, pd)]


def _values(c: Canonicalizer, values: Any, pd: Any) -> list[Any]:
    """dtype + content of a Series, Index or ExtensionArray."""
    np = sys.modules["numpy"]
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        return _ndarray(c, values.to_numpy(), np)
    if isinstance(dtype, pd.CategoricalDtype):
        array = values if isinstance(values, pd.Categorical) else values.array
        return [
            M_PD_CATEGORICAL,
            dtype.ordered,
            _index(c, dtype.categories, pd),
            _ndarray(c, np.asarray(array.codes), np),
        ]
    return [M_PD_ARRAY, str(dtype), _ndarray(c, values.to_numpy(dtype=object), np)]
