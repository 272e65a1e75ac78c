"""HandlerRegistry: validation, priorities, dispatch, declines, and the default registry."""

from __future__ import annotations

import io
import logging
import threading

import pytest

from cacheness.storage import (
    FormatInfo,
    Handler,
    HandlerRegistry,
    ObjectDeclinedError,
    SerializationOptions,
    default_registry,
    get_handler,
    handler_for,
    list_handlers,
    register_handler,
    unregister_handler,
)
from cacheness.storage._handlers.base import DEFAULT_OPTIONS
from cacheness.storage._handlers.registry import BUILTIN_PRIORITIES
from cacheness.storage.errors import ConfigError, SerializationError


class IntHandler(Handler):
    name = "ints"

    def can_handle(self, obj):
        return type(obj) is int

    def dump(self, obj, sink, options):
        data = str(obj).encode()
        sink.write(data)
        return self.format_info("decimal-text", "none", len(data))

    def load(self, source, info, options, *, local_path=None):
        return int(source.read())


class EvenOnly(IntHandler):
    """Claims ints but declines odd ones before writing."""

    name = "even"

    def dump(self, obj, sink, options):
        if obj % 2:
            raise ObjectDeclinedError("odd")
        return super().dump(obj, sink, options)


def test_builtins_in_dispatch_order():
    registry = HandlerRegistry.with_builtins()
    assert registry.list() == ["raw", "plain", "numpy", "pandas", "arrow", "polars", "objects"]
    assert [registry.priority(n) for n in registry.list()] == list(BUILTIN_PRIORITIES.values())


def test_a_class_is_instantiated_and_validated():
    registry = HandlerRegistry()
    handler = registry.register(IntHandler)
    assert isinstance(handler, IntHandler)
    assert registry.for_object(5) is handler


def test_priorities_decide_and_ties_go_to_the_latest():
    registry = HandlerRegistry()
    first = registry.register(IntHandler(), priority=0)
    second = registry.register(EvenOnly(), priority=0)
    assert registry.list() == ["even", "ints"]
    assert registry.for_object(2) is second
    registry.register(first, priority=1)
    assert registry.list() == ["ints", "even"]


def test_same_name_replaces_unless_told_not_to():
    registry = HandlerRegistry()
    registry.register(IntHandler())
    replacement = registry.register(IntHandler())
    assert registry.get("ints") is replacement
    assert registry.list() == ["ints"]
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(IntHandler(), replace=False)


class NotAHandler:
    name = "duck"

    def can_handle(self, obj):
        return True


class Incomplete(Handler):
    name = "incomplete"

    def can_handle(self, obj):
        return True


class NoName(IntHandler):
    name = ""


class BadName(IntHandler):
    name = "Has Spaces"


class WrongLoad(IntHandler):
    name = "wrong-load"

    def load(self, source, info):  # missing options and local_path
        return 0


class WrongDump(IntHandler):
    name = "wrong-dump"

    def dump(self, obj):
        return None


@pytest.mark.parametrize(
    ("candidate", "error", "match"),
    [
        (NotAHandler(), TypeError, "register a Handler instance or subclass"),
        (NotAHandler, TypeError, "must subclass Handler"),
        (Incomplete, TypeError, "does not implement: dump, load"),
        (NoName, ConfigError, "needs a class attribute `name`"),
        (BadName, ConfigError, "'Has Spaces'"),
        (WrongLoad, TypeError, r"load\(\) must accept"),
        (WrongDump, TypeError, r"dump\(\) must accept"),
    ],
)
def test_registration_validates_the_interface(candidate, error, match):
    registry = HandlerRegistry()
    with pytest.raises(error, match=match):
        registry.register(candidate)
    assert registry.list() == []


def test_bad_priority_is_refused():
    with pytest.raises(ConfigError, match="priority"):
        HandlerRegistry().register(IntHandler(), priority="high")


def test_an_incomplete_subclass_cannot_be_instantiated():
    with pytest.raises(TypeError):
        Incomplete()


def test_unknown_names():
    registry = HandlerRegistry.with_builtins()
    with pytest.raises(ConfigError, match="no handler named 'nope'; registered: raw, plain"):
        registry.unregister("nope")
    with pytest.raises(SerializationError, match="register the handler that wrote the entry"):
        registry.get("nope")
    with pytest.raises(ConfigError):
        registry.priority("nope")


def test_nothing_takes_it_names_the_type():
    registry = HandlerRegistry()
    registry.register(IntHandler())
    with pytest.raises(SerializationError, match="object of type bytes"):
        registry.for_object(b"x")
    with pytest.raises(SerializationError, match=r"object of type .*test_registry.IntHandler"):
        registry.dump(IntHandler(), io.BytesIO())


def test_a_decline_passes_the_object_to_the_next_handler():
    registry = HandlerRegistry()
    registry.register(IntHandler(), priority=0)
    registry.register(EvenOnly(), priority=10)
    sink = io.BytesIO()
    assert registry.dump(4, sink).handler == "even"
    sink = io.BytesIO()
    info = registry.dump(3, sink)
    assert info.handler == "ints"
    assert sink.getvalue() == b"3"
    assert registry.load(io.BytesIO(b"3"), info) == 3


def test_when_every_handler_declines_the_reasons_are_given():
    registry = HandlerRegistry()
    registry.register(EvenOnly())
    with pytest.raises(SerializationError, match="even: odd"):
        registry.dump(3, io.BytesIO())


class LateDecliner(IntHandler):
    name = "late"

    def dump(self, obj, sink, options):
        sink.write(b"partial")
        raise ObjectDeclinedError("too late")


def test_a_decline_after_writing_is_an_error_not_a_fallback():
    registry = HandlerRegistry()
    registry.register(IntHandler(), priority=0)
    registry.register(LateDecliner(), priority=1)
    with pytest.raises(SerializationError, match="after writing 7 bytes"):
        registry.dump(1, io.BytesIO())


class Exploding(IntHandler):
    name = "exploding"

    def can_handle(self, obj):
        raise RuntimeError("boom")


def test_a_can_handle_that_raises_is_logged_and_skipped(caplog):
    registry = HandlerRegistry()
    registry.register(IntHandler(), priority=0)
    registry.register(Exploding(), priority=1)
    with caplog.at_level(logging.ERROR, logger="cacheness.storage._handlers.registry"):
        assert registry.for_object(1).name == "ints"
    assert "handler 'exploding' raised in can_handle(int)" in caplog.text


class NotJsonDetails(IntHandler):
    name = "not-json"

    def dump(self, obj, sink, options):
        info = super().dump(obj, sink, options)
        return FormatInfo(
            handler=self.name, format=info.format, codec="none", raw_size=1, details={"x": object()}
        )


class ReturnsNone(IntHandler):
    name = "returns-none"

    def dump(self, obj, sink, options):
        super().dump(obj, sink, options)


@pytest.mark.parametrize(
    ("handler", "match"),
    [(NotJsonDetails(), "not JSON-able"), (ReturnsNone(), "must return a FormatInfo")],
)
def test_what_dump_returns_is_checked(handler, match):
    registry = HandlerRegistry()
    registry.register(handler)
    with pytest.raises(SerializationError, match=match):
        registry.dump(1, io.BytesIO())


def test_copy_is_independent():
    registry = HandlerRegistry.with_builtins()
    clone = registry.copy()
    clone.register(IntHandler(), priority=100)
    clone.unregister("objects")
    assert "ints" not in registry
    assert "objects" in registry
    assert clone.list()[0] == "ints"
    assert clone.priority("raw") == registry.priority("raw")


def test_default_registry_functions():
    assert default_registry() is default_registry()
    assert list_handlers() == default_registry().list()
    assert get_handler("plain").name == "plain"
    assert handler_for(b"x").name == "raw"
    register_handler(IntHandler, priority=100)
    try:
        assert handler_for(7).name == "ints"
        assert list_handlers()[0] == "ints"
    finally:
        unregister_handler("ints")
    assert handler_for(7).name == "plain"


def test_concurrent_registration_and_dispatch_stay_consistent():
    registry = HandlerRegistry.with_builtins()
    errors = []

    def churn(i):
        try:
            for _ in range(200):
                cls = type(f"H{i}", (IntHandler,), {"name": f"h{i}"})
                registry.register(cls(), priority=i)
                registry.unregister(f"h{i}")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    def dispatch():
        try:
            for _ in range(2000):
                assert registry.for_object({"a": 1}).name in {"plain"}
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=dispatch))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert registry.list() == HandlerRegistry.with_builtins().list()


def test_options_validation_messages():
    with pytest.raises(ConfigError, match="dataframe_format must be one of auto, arrow, parquet"):
        SerializationOptions(dataframe_format="feather")
    with pytest.raises(ConfigError, match="unknown serialization options: colour"):
        SerializationOptions.from_mapping({"colour": "red"})
    with pytest.raises(ConfigError, match=r"gzip levels are 0\.\.9"):
        SerializationOptions(codec="gzip", level=19).level_for("gzip")
    with pytest.raises(ConfigError, match="invalid serialization options"):
        SerializationOptions.from_mapping({"level": "high"})
    assert SerializationOptions.from_mapping({}) == DEFAULT_OPTIONS


def test_format_info_from_an_entry():
    from cacheness.storage import Entry

    entry = Entry.new(
        "k",
        handler="numpy",
        format="ndarray",
        codec="blosc2",
        raw_size=80,
        format_info={"dtype": "<f8", "shape": [10]},
    )
    info = FormatInfo.from_entry(entry)
    assert info == FormatInfo(
        handler="numpy",
        format="ndarray",
        codec="blosc2",
        raw_size=80,
        details={"dtype": "<f8", "shape": [10]},
    )
