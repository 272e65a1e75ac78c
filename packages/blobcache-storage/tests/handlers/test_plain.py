"""The plain handler: nested plain data as MessagePack, types kept, no code on load."""

from __future__ import annotations

import collections
import datetime as dt
import io
import zoneinfo

import msgspec
import numpy as np
import pytest

from cacheness.storage import ObjectDeclinedError, SerializationOptions, default_registry
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage._handlers.plain import MAX_DEPTH, PlainHandler
from cacheness.storage.errors import SerializationError
from cacheness.storage.testing.handlers import (
    HandlerConformance,
    assert_deep_equal,
    plain_values,
)


class TestPlainConformance(HandlerConformance):
    handler = PlainHandler()
    values = plain_values()
    foreign_values = (object(), [1, object()], {"a": 1j}, collections.OrderedDict(a=1))
    max_examples = 40


class HandMadeZone(dt.tzinfo):
    def utcoffset(self, when):
        return dt.timedelta(hours=1)


def round_trip(value, options=DEFAULT_OPTIONS):
    sink = io.BytesIO()
    info = PlainHandler().dump(value, sink, options)
    return info, sink.getvalue(), PlainHandler().load(io.BytesIO(sink.getvalue()), info, options)


def test_small_dict_is_bare_msgpack_without_compression():
    value = {"id": 7, "name": "run", "tags": ["a", "b"], "ok": True, "loss": 0.25}
    info, stored, back = round_trip(value)
    assert (info.format, info.codec, info.details) == ("msgpack", "none", {})
    assert stored == msgspec.msgpack.encode(value)  # readable by any MessagePack reader
    assert info.raw_size == len(stored)
    assert_deep_equal(back, value)


def test_tuple_and_list_survive_distinctly():
    value = {"shape": (3, 4), "dims": [3, 4], "nested": [(1, [2, (3,)])], "empty": ((), [])}
    _, _, back = round_trip(value)
    assert_deep_equal(back, value)
    assert type(back["shape"]) is tuple
    assert type(back["nested"][0][1]) is list


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 3, 29, 2, 30),  # naive
        dt.datetime(2026, 3, 29, 2, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3), "BRT")),
        dt.datetime(2025, 10, 26, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        dt.date(1, 1, 1),
        dt.time(23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.timedelta(days=-3, microseconds=17),
        2**64,
        -(2**200),
        {1, 2, 3},
        frozenset({"a"}),
        {(1, "a"): {frozenset({2}): None}},
    ],
)
def test_rich_values_round_trip_with_their_types(value):
    _, _, back = round_trip([value])
    assert_deep_equal(back, [value])


def test_big_structures_are_compressed():
    value = {"rows": [{"id": i, "label": f"item-{i % 10}"} for i in range(5000)]}
    info, stored, back = round_trip(value)
    assert info.codec == "zstd"
    assert len(stored) < info.raw_size / 3
    assert back == value


@pytest.mark.parametrize(
    "value",
    [
        collections.OrderedDict(a=1),
        collections.defaultdict(list),
        [1, 2j],
        {"x": 1.5, "y": np.float64(2.5)},
        [dt.datetime(2026, 1, 1, tzinfo=HandMadeZone())],
    ],
)
def test_non_plain_values_are_declined_and_pickled_with_their_type(value):
    assert not PlainHandler().can_handle(value)
    with pytest.raises(ObjectDeclinedError):
        PlainHandler().dump(value, io.BytesIO(), DEFAULT_OPTIONS)


def test_registry_sends_non_plain_data_to_objects_and_keeps_it_exact():
    value = {"ordered": collections.OrderedDict(b=2, a=1), "list": [1, 2]}
    registry = default_registry()
    sink = io.BytesIO()
    info = registry.dump(value, sink)
    assert info.handler == "objects"
    back = registry.load(io.BytesIO(sink.getvalue()), info)
    assert type(back["ordered"]) is collections.OrderedDict
    assert list(back["ordered"]) == ["b", "a"]


def test_nesting_deeper_than_the_limit_goes_to_objects():
    deep = []
    node = deep
    for _ in range(MAX_DEPTH + 5):
        node.append([])
        node = node[0]
    assert not PlainHandler().can_handle(deep)
    assert default_registry().for_object(deep).name == "objects"
    ok = [[[]]]
    assert PlainHandler().can_handle(ok)


def test_self_referencing_list_is_not_plain_but_pickles():
    loop = [1]
    loop.append(loop)
    assert not PlainHandler().can_handle(loop)
    registry = default_registry()
    sink = io.BytesIO()
    info = registry.dump(loop, sink)
    back = registry.load(io.BytesIO(sink.getvalue()), info)
    assert back[1] is back


def test_unknown_extension_code_fails_to_load_without_running_anything():
    forged = msgspec.msgpack.encode([msgspec.msgpack.Ext(99, b"\x90")])
    info = PlainHandler().format_info("msgpack", "none", len(forged))
    with pytest.raises(SerializationError, match="cannot be decoded"):
        PlainHandler().load(io.BytesIO(forged), info, DEFAULT_OPTIONS)


def test_unavailable_time_zone_fails_to_load_clearly():
    _, stored, _ = round_trip([dt.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC"))])
    forged = stored.replace(b"UTC", b"Xyz")
    info = PlainHandler().format_info("msgpack", "none", len(forged))
    with pytest.raises(SerializationError, match="Xyz"):
        PlainHandler().load(io.BytesIO(forged), info, DEFAULT_OPTIONS)


def test_explicit_codec_applies():
    info, stored, back = round_trip({"a": "b" * 100}, SerializationOptions(codec="zstd"))
    assert info.codec == "zstd"
    assert stored[:4] == b"\x28\xb5\x2f\xfd"
    assert back == {"a": "b" * 100}


def test_one_handler_serves_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    handler = PlainHandler()

    def work(i):
        value = {
            "i": i,
            "shape": (i, (i, [i])),
            "at": dt.date(2000, 1, 1 + i % 28),
            "big": 2**70 + i,
        }
        for _ in range(300):
            sink = io.BytesIO()
            info = handler.dump(value, sink, DEFAULT_OPTIONS)
            back = handler.load(io.BytesIO(sink.getvalue()), info, DEFAULT_OPTIONS)
            assert_deep_equal(back, value)
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(16)))


@pytest.mark.parametrize("value", [["é\udc80"], {"k": "lone\ud800"}, "\udfff"])
def test_text_with_a_lone_surrogate_is_declined_and_kept_exact_by_objects(value):
    """MessagePack holds only valid Unicode: the plain handler declines before writing a
    byte, and the registry stores the value with the next handler, exactly."""
    with pytest.raises(ObjectDeclinedError, match="not valid Unicode"):
        PlainHandler().dump(value, io.BytesIO(), DEFAULT_OPTIONS)
    registry = default_registry()
    sink = io.BytesIO()
    info = registry.dump(value, sink)
    assert info.handler == ("raw" if isinstance(value, str) else "objects")
    assert registry.load(io.BytesIO(sink.getvalue()), info) == value
