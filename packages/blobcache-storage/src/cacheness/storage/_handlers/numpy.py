"""The ``numpy`` handler: ``ndarray`` of any non-object dtype and shape, streamed.

The stored bytes are the array's elements in C order (or Fortran order for
Fortran-contiguous arrays, which then load Fortran-ordered without a copy), cut into
slabs of ``chunk_size`` bytes and compressed with Blosc2 (shuffled by element size,
all cores) when ``auto`` finds it worthwhile. Nothing is held twice: a contiguous array
is compressed straight from its memory, a strided one slab by slab, and loading
decompresses straight into the new array. Arrays beyond 2 GB work (Blosc2's own limit
is per chunk).

Dtypes: bool, integers, floats, complex, ``datetime64``/``timedelta64``, fixed-size
bytes/unicode and structured dtypes without objects, in either byte order. Object
arrays are declined (the ``objects`` handler pickles them); ``allow_pickle`` is never
used. 0-d, empty and non-contiguous arrays round-trip; subclasses other than
``numpy.memmap`` (masked arrays, matrices) go to ``objects`` to keep their type.

With ``codec="none"`` the blob is the raw element bytes, so when it sits in a local file
``SerializationOptions(mmap_mode="r")`` (or ``"c"``) memory-maps it like ``numpy.load``.

Example:
    >>> import io
    >>> import numpy as np
    >>> from cacheness.storage._handlers.base import DEFAULT_OPTIONS
    >>> handler = NumpyHandler()
    >>> array = np.arange(100_000, dtype=np.int64).reshape(1000, 100)[:, ::2]
    >>> sink = io.BytesIO()
    >>> info = handler.dump(array, sink, DEFAULT_OPTIONS)
    >>> info.format, info.codec, info.details["shape"], info.details["dtype"]
    ('ndarray', 'blosc2', [1000, 50], '<i8')
    >>> np.array_equal(handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS), array)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cacheness.storage._compression import open_compressor, resolve_codec
from cacheness.storage._handlers._common import is_exact_type, open_reader
from cacheness.storage._handlers.base import FormatInfo, Handler, SerializationOptions
from cacheness.storage._optional import import_optional
from cacheness.storage.errors import IntegrityError, ObjectDeclinedError, SerializationError

_FORMAT = "ndarray"


def _np() -> Any:
    return import_optional("numpy", extra="numpy", purpose="the numpy handler")


class NumpyHandler(Handler):
    """Stores ``numpy.ndarray`` (and ``numpy.memmap``) of non-object dtypes.

    ``details``: ``dtype`` (``dtype.str``, or the descr list of a structured dtype),
    ``shape`` and ``order`` (``"C"`` or ``"F"``).

    Example:
        >>> import numpy as np
        >>> NumpyHandler().can_handle(np.zeros(3)), NumpyHandler().can_handle(np.array([None]))
        (True, False)
    """

    name = "numpy"

    def can_handle(self, obj: Any) -> bool:
        """True for an ``ndarray``/``memmap`` whose dtype holds no Python objects."""
        return is_exact_type(obj, "numpy", "ndarray", "memmap") and not obj.dtype.hasobject

    def dump(self, obj: Any, sink: BinaryIO, options: SerializationOptions) -> FormatInfo:
        """Write the elements, compressed per ``options`` (``auto``: Blosc2 or none).

        Raises:
            ObjectDeclinedError: object dtype (left to the ``objects`` handler).
        """
        np = _np()
        if obj.dtype.hasobject:
            raise ObjectDeclinedError("object arrays are pickled by the objects handler")
        array = obj.view(np.ndarray) if type(obj) is not np.ndarray else obj
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        flat = array.T if order == "F" else array
        settings = options
        typesize = _typesize(array.dtype)
        raw_size = array.nbytes
        codec = options.codec
        if codec == "auto":
            sample = _head(flat, settings.auto_sample_size) if raw_size else b""
            codec = resolve_codec(
                "auto", sample, raw_size, default="blosc2", settings=settings, typesize=typesize
            )
        details = {"dtype": _dtype_to_json(np, array.dtype), "shape": list(array.shape)}
        if order == "F":
            details["order"] = "F"
        if codec == "none":
            for slab in _slabs(np, flat, settings.chunk_size):
                sink.write(slab)
        else:
            with open_compressor(
                sink, codec, settings, typesize=typesize, size_hint=raw_size
            ) as writer:
                for slab in _slabs(np, flat, settings.chunk_size):
                    writer.write(slab)
        return self.format_info(_FORMAT, codec, raw_size, **details)

    def load(
        self,
        source: BinaryIO,
        info: FormatInfo,
        options: SerializationOptions,
        *,
        local_path: Path | None = None,
    ) -> Any:
        """Return the array; memory-mapped when ``options.mmap_mode`` allows it.

        A memory map needs ``codec == "none"`` and ``local_path``; otherwise the array
        is read into memory.

        Raises:
            IntegrityError: the stored bytes or recorded size do not match dtype and shape.
            SerializationError: the recorded dtype or format is unknown.
        """
        np = _np()
        if info.format != _FORMAT:
            raise SerializationError(f"the numpy handler cannot read format {info.format!r}")
        details = info.details
        try:
            dtype = _dtype_from_json(np, details["dtype"])
            shape = tuple(int(n) for n in details["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"invalid numpy format details {details!r}: {exc}") from exc
        order = details.get("order", "C")
        expected = math.prod(shape) * dtype.itemsize
        if expected != info.raw_size:
            raise IntegrityError(
                f"recorded raw size {info.raw_size} does not match dtype {dtype} and shape "
                f"{shape} ({expected} bytes): corrupt entry"
            )
        if options.mmap_mode and info.codec == "none" and local_path is not None and expected:
            size = Path(local_path).stat().st_size
            if size != expected:
                raise IntegrityError(
                    f"blob file {local_path} holds {size} bytes, the array needs {expected}"
                )
            return np.memmap(
                local_path, dtype=dtype, mode=options.mmap_mode, shape=shape, order=order
            )
        out = np.empty(shape, dtype=dtype, order=order)
        reader = open_reader(source, info.codec, info.raw_size, options)
        if expected:
            target = out.T if order == "F" else out
            reader.readinto_exact(target.reshape(-1).view(np.uint8))
        else:
            reader.finish()
        return out


def _typesize(dtype: Any) -> int:
    """Element size for Blosc2's shuffle (at most 255; unicode shuffles by character)."""
    itemsize = int(dtype.itemsize)
    if itemsize <= 255:
        return max(itemsize, 1)
    return 4 if dtype.kind == "U" else 1


def _dtype_to_json(np: Any, dtype: Any) -> Any:
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    return _as_lists(np.lib.format.dtype_to_descr(dtype))


def _as_lists(value: Any) -> Any:
    """The descr with tuples as lists: what it looks like after a JSON round trip."""
    if isinstance(value, list | tuple):
        return [_as_lists(item) for item in value]
    return value


def _dtype_from_json(np: Any, value: Any) -> Any:
    dtype = np.dtype(value) if isinstance(value, str) else np.lib.format.descr_to_dtype(value)
    if dtype.hasobject:
        raise ValueError("object dtypes are never loaded by the numpy handler")
    return dtype


def _head(array: Any, size: int) -> Any:
    """Up to ``size`` bytes from the start of ``array`` (copied only if strided)."""
    if array.flags.c_contiguous:
        return array.reshape(-1).view("uint8")[:size]
    rows = max(1, size // max(array[0].nbytes, 1)) if array.ndim else 1
    return array[:rows].copy().reshape(-1).view("uint8")[:size]


def _slabs(np: Any, array: Any, chunk_size: int) -> Iterator[Any]:
    """Yield the array's bytes in C order as contiguous uint8 slabs of about ``chunk_size``."""
    if array.size == 0:
        return
    if array.flags.c_contiguous:
        flat = array.reshape(-1).view(np.uint8)
        step = max(chunk_size - chunk_size % array.itemsize, array.itemsize)
        for start in range(0, flat.size, step):
            yield flat[start : start + step]
        return
    # Strided: copy one block of leading-axis rows at a time (rows themselves recurse).
    row_bytes = array[0].nbytes
    if row_bytes > chunk_size and array.ndim > 1:
        for row in array:
            yield from _slabs(np, row, chunk_size)
        return
    rows = max(1, chunk_size // max(row_bytes, 1))
    for start in range(0, array.shape[0], rows):
        yield np.ascontiguousarray(array[start : start + rows]).reshape(-1).view(np.uint8)
