"""The objects handler: pickle protocol 5 with out-of-band buffers, zstd, cloudpickle opt-in."""

from __future__ import annotations

import io
import pickle
import sys
import threading
import types
from fractions import Fraction

import numpy as np
import pytest

from cacheness.storage import SerializationOptions
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage._handlers.objects import ObjectsHandler
from cacheness.storage.errors import IntegrityError, SerializationError
from cacheness.storage.testing.handlers import (
    HandlerConformance,
    PicklableSample,
    picklable_values,
)


def same_object(loaded, original):
    assert type(loaded) is type(original)
    if isinstance(original, PicklableSample):
        assert loaded.name == original.name
        assert loaded.tags == original.tags
        assert loaded.extra == original.extra
        if original.weights is None:
            assert loaded.weights is None
        else:
            assert loaded.weights.tobytes() == original.weights.tobytes()
    else:
        assert loaded == original


class TestObjectsConformance(HandlerConformance):
    handler = ObjectsHandler()
    values = picklable_values()

    def assert_same(self, loaded, original):
        same_object(loaded, original)


def round_trip(value, options=DEFAULT_OPTIONS):
    sink = io.BytesIO()
    info = ObjectsHandler().dump(value, sink, options)
    return info, sink.getvalue(), ObjectsHandler().load(io.BytesIO(sink.getvalue()), info, options)


class Holder:
    def __init__(self, **attrs):
        self.__dict__.update(attrs)


class Slotted:
    __slots__ = ("inner",)

    def __init__(self, inner):
        self.inner = inner


def test_large_buffers_travel_out_of_band():
    weights = np.arange(200_000, dtype=np.float64)
    value = {"weights": weights, "step": 3}
    _, stored, back = round_trip(value, SerializationOptions(codec="none"))
    # layout: pickle length, pickle, buffer count, then each buffer's length and bytes
    pickle_len = int.from_bytes(stored[:8], "little")
    assert pickle_len < 1000  # the array's data is not inside the pickle
    count = int.from_bytes(stored[8 + pickle_len : 12 + pickle_len], "little")
    assert count == 1
    assert stored.endswith(weights.tobytes())
    assert back["weights"].tobytes() == weights.tobytes()
    assert back["weights"].flags.writeable


def test_compressed_with_zstd_when_it_pays():
    info, stored, back = round_trip(PicklableSample("x" * 10_000, np.zeros(50_000)))
    assert (info.format, info.codec) == ("pickle5", "zstd")
    assert len(stored) < info.raw_size / 10
    assert back.name == "x" * 10_000


def test_error_names_the_type_and_attribute_path():
    value = Holder(config={"workers": [1, Slotted(threading.Lock())]})
    with pytest.raises(SerializationError) as failure:
        ObjectsHandler().dump(value, io.BytesIO(), DEFAULT_OPTIONS)
    message = str(failure.value)
    assert "test_objects.Holder" in message
    assert "obj.config['workers'][1].inner (a _thread.lock)" in message
    assert "cannot pickle '_thread.lock' object" in message


def test_lambda_error_suggests_cloudpickle():
    with pytest.raises(SerializationError, match="allow_cloudpickle=True"):
        ObjectsHandler().dump({"f": lambda x: x + 1}, io.BytesIO(), DEFAULT_OPTIONS)


def make_closure(offset):
    def shifted(x):
        return x + offset

    return shifted


def test_cloudpickle_stores_lambdas_closures_and_local_classes_when_allowed():
    class Local:
        def __init__(self, v):
            self.v = v

    options = SerializationOptions(allow_cloudpickle=True)
    info, _, back = round_trip(
        {"f": lambda x: x * 2, "g": make_closure(10), "obj": Local(5)}, options
    )
    assert info.format == "cloudpickle"
    assert back["f"](4) == 8
    assert back["g"](1) == 11
    assert back["obj"].v == 5


def test_plain_pickle_is_used_first_even_with_cloudpickle_allowed():
    info, _, back = round_trip(Fraction(1, 3), SerializationOptions(allow_cloudpickle=True))
    assert info.format == "pickle5"
    assert back == Fraction(1, 3)


def test_cloudpickle_failure_still_names_the_culprit():
    with pytest.raises(SerializationError, match=r"obj\['lock'\]"):
        ObjectsHandler().dump(
            {"lock": threading.Lock()}, io.BytesIO(), SerializationOptions(allow_cloudpickle=True)
        )


def test_unpickling_a_class_that_moved_fails_with_a_hint():
    module = types.ModuleType("cacheness_vanishing_module")
    exec("class Gone:\n    pass\n", module.__dict__)
    module.Gone.__module__ = module.__name__
    sys.modules[module.__name__] = module
    try:
        info, stored, _ = round_trip(module.Gone())
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(SerializationError, match="must be importable"):
        ObjectsHandler().load(io.BytesIO(stored), info, DEFAULT_OPTIONS)


def test_forged_inner_length_is_an_integrity_error():
    info, stored, _ = round_trip(Fraction(2, 7), SerializationOptions(codec="none"))
    forged = (10**9).to_bytes(8, "little") + stored[8:]
    with pytest.raises(IntegrityError, match="corrupt stream"):
        ObjectsHandler().load(io.BytesIO(forged), info, DEFAULT_OPTIONS)


def test_stored_pickle_is_standard_protocol_5():
    _, stored, _ = round_trip([Fraction(1, 2)], SerializationOptions(codec="none"))
    length = int.from_bytes(stored[:8], "little")
    assert pickle.loads(stored[8 : 8 + length]) == [Fraction(1, 2)]
    assert stored[8:10] == b"\x80\x05"
