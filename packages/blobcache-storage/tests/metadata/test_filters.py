"""The filter language: parsing, the Python evaluator, and the SQL compiler's binding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cacheness.storage import Entry, matches, parse_filter
from cacheness.storage._filters import (
    And,
    Condition,
    Not,
    Or,
    compile_predicate,
    json_rank,
    parse_order_by,
    sort_key,
)
from cacheness.storage._metadata._sqlcore import build_tables
from cacheness.storage._metadata._sqlfilter import compile_filter, prefix_upper
from cacheness.storage.errors import FilterError


def test_parse_shapes():
    assert parse_filter(None) == And(())
    assert parse_filter({}) == And(())
    assert parse_filter({"key": "a"}) == Condition("key", (), "str", "$eq", "a")
    parsed = parse_filter({"$or": [{"size": 1}, {"$not": {"metadata.a.b": {"$exists": True}}}]})
    assert parsed == Or(
        (
            Condition("size", (), "int", "$eq", 1),
            Not(Condition("metadata", ("a", "b"), "json", "$exists", True)),
        )
    )
    assert parse_filter({"key": {"$in": {"b"}}}).value == ("b",)


def test_timestamps_are_normalized_to_utc():
    plus_two = timezone(timedelta(hours=2))
    cond = parse_filter({"created_at": {"$gt": datetime(2026, 1, 1, 2, tzinfo=plus_two)}})
    assert cond.value == datetime(2026, 1, 1, tzinfo=UTC)
    assert cond.value.tzinfo is UTC
    iso = parse_filter({"created_at": "2026-01-01T00:00:00Z"})
    assert iso.value == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "rank"),
    [(None, 1), (True, 2), (0, 3), (1.5, 3), ("", 4), ([], 5), ({}, 6), (b"", 0)],
)
def test_json_rank(value, rank):
    assert json_rank(value) == rank


def test_type_strict_metadata_semantics():
    entry = Entry.new("k", metadata={"one": 1, "true": True, "text": "1", "none": None})
    assert matches(entry, {"metadata.one": 1.0})
    assert not matches(entry, {"metadata.one": True})
    assert not matches(entry, {"metadata.true": 1})
    assert not matches(entry, {"metadata.text": 1})
    assert matches(entry, {"metadata.none": None})
    assert not matches(entry, {"metadata.missing": None})
    assert matches(entry, {"metadata.missing": {"$ne": None}})
    assert matches(entry, {"metadata.none": {"$exists": True}})
    assert not matches(entry, {"metadata.text": {"$gt": 0}})
    assert matches(entry, {"metadata.text": {"$gt": "0"}})
    assert not matches(entry, {"metadata.one.deeper": {"$exists": True}})


def test_predicate_is_compiled_once():
    predicate = compile_predicate({"size": {"$gt": 1}, "handler": {"$nin": ["raw"]}})
    assert predicate(Entry.new("a", size=2, handler="numpy"))
    assert not predicate(Entry.new("a", size=2, handler="raw"))


def test_order_by_parsing():
    assert parse_order_by("size").field == "size"
    assert parse_order_by("metadata.a.b").path == ("a", "b")
    for bad in ("format", "metadata", "metadata.", "nope", 3):
        with pytest.raises(FilterError):
            parse_order_by(bad)


def test_sort_key_breaks_ties_by_key():
    entries = [Entry.new("b", size=1), Entry.new("a", size=1)]
    assert [e.key for e in sorted(entries, key=sort_key("size"))] == ["a", "b"]


@pytest.mark.parametrize(
    ("prefix", "upper"),
    [("abc", "abd"), ("", None), ("a\U0010ffff", "b"), ("\U0010ffff", None), ("\ud7ff", "\ue000")],
)
def test_prefix_upper_bound(prefix, upper):
    assert prefix_upper(prefix) == upper


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()])
def test_values_and_paths_are_bound_parameters(dialect):
    table, _ = build_tables("cacheness_entries", None, dialect.name)
    hostile = "x'; DROP TABLE cacheness_entries; --"
    path = "metadata.a'); DROP TABLE cacheness_entries; --.b"
    expr = parse_filter(
        {"key": hostile, path: hostile, "handler": {"$prefix": hostile}, "metadata.n": {"$gt": 1}}
    )
    compiled = (
        sa.select(table).where(compile_filter(expr, table, dialect.name)).compile(dialect=dialect)
    )
    assert "DROP" not in compiled.string
    params = [str(value) for value in compiled.params.values()]
    assert any(hostile in value for value in params)
    assert any("DROP TABLE cacheness_entries; --" in value and "a'" in value for value in params)
