"""The raw handler: bytes, bytearray, memoryview and str, exact types."""

from __future__ import annotations

import array
import enum
import io

import pytest

from cacheness.storage import SerializationOptions, default_registry
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage._handlers.raw import RawHandler
from cacheness.storage.errors import IntegrityError, SerializationError
from cacheness.storage.testing.handlers import HandlerConformance, raw_values


class TestRawConformance(HandlerConformance):
    handler = RawHandler()
    values = raw_values()
    foreign_values = (1, None, [b"x"], {"a": "b"}, 1.5)

    def assert_same(self, loaded, original):
        assert type(loaded) is type(original)
        if isinstance(original, memoryview):
            assert loaded.format == original.format
            assert loaded.shape == original.shape
            assert loaded.tolist() == original.tolist()
        else:
            assert loaded == original


def round_trip(value, options=DEFAULT_OPTIONS):
    sink = io.BytesIO()
    info = RawHandler().dump(value, sink, options)
    return info, sink.getvalue(), RawHandler().load(io.BytesIO(sink.getvalue()), info, options)


def test_stored_bytes_are_the_objects_own_bytes():
    info, stored, back = round_trip(bytearray(b"\x00\x01payload"))
    assert stored == b"\x00\x01payload"
    assert (info.format, info.codec, info.raw_size) == ("bytes", "none", 9)
    assert back == bytearray(b"\x00\x01payload")
    assert type(back) is bytearray


def test_text_is_utf8_and_keeps_lone_surrogates():
    info, stored, back = round_trip("é\ud800")
    assert stored == "é\ud800".encode("utf-8", "surrogatepass")
    assert back == "é\ud800"
    assert info.details == {"kind": "str"}


def test_compressible_bytes_are_compressed_and_the_choice_recorded():
    data = b"0123456789" * 10_000
    info, stored, back = round_trip(data)
    assert info.codec == "zstd"
    assert len(stored) < len(data) // 10
    assert back == data


def test_incompressible_bytes_are_stored_as_is():
    data = bytes(range(256)) * 4 + __import__("os").urandom(100_000)
    info, stored, back = round_trip(data)
    assert info.codec == "none"
    assert stored == data
    assert back == data


def test_explicit_codec_is_used_even_for_small_data():
    info, stored, back = round_trip(b"tiny", SerializationOptions(codec="gzip"))
    assert info.codec == "gzip"
    assert stored[:2] == b"\x1f\x8b"
    assert back == b"tiny"


def test_strided_memoryview_is_stored_contiguously():
    view = memoryview(array.array("h", range(10)))[::3]
    _, stored, back = round_trip(view)
    assert back.tolist() == [0, 3, 6, 9]
    assert back.format == "h"
    assert len(stored) == 8


def test_memoryview_of_unknown_format_is_refused_at_dump():
    import numpy as np

    structured = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])
    with pytest.raises(SerializationError, match="cannot be restored"):
        RawHandler().dump(memoryview(structured), io.BytesIO(), DEFAULT_OPTIONS)


class Color(enum.StrEnum):
    RED = "red"


def test_subclasses_go_to_the_objects_handler_and_keep_their_type():
    assert not RawHandler().can_handle(Color.RED)
    registry = default_registry()
    sink = io.BytesIO()
    info = registry.dump(Color.RED, sink)
    assert info.handler == "objects"
    assert registry.load(io.BytesIO(sink.getvalue()), info) is Color.RED


def test_text_that_is_not_utf8_fails_to_load():
    info, _, _ = round_trip("ok")
    with pytest.raises(SerializationError, match="UTF-8"):
        RawHandler().load(io.BytesIO(b"\xff\xfe"), info, DEFAULT_OPTIONS)


def test_size_mismatch_is_an_integrity_error():
    info, stored, _ = round_trip(b"abcdef")
    with pytest.raises(IntegrityError):
        RawHandler().load(io.BytesIO(stored[:3]), info, DEFAULT_OPTIONS)
    with pytest.raises(IntegrityError):
        RawHandler().load(io.BytesIO(stored + b"!"), info, DEFAULT_OPTIONS)
