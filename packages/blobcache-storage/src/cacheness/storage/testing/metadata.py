"""Conformance suite for metadata backends, reusable by plugin authors.

Subclass :class:`MetadataBackendConformance` in a test module (name it ``Test...``) and
provide a ``backend`` fixture that yields a fresh, empty backend; optionally a
``ground_truth`` fixture returning a function that reads every stored entry *around*
the backend (the rows through a plain database connection, the file on disk), and a
``reopen`` fixture for persistent backends::

    import pytest
    from cacheness.storage.testing.metadata import MetadataBackendConformance
    from my_package import MyMetadataBackend

    class TestMyBackend(MetadataBackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            with MyMetadataBackend(tmp_path / "index") as index:
                yield index

        @pytest.fixture
        def reopen(self, tmp_path):
            return lambda: MyMetadataBackend(tmp_path / "index")

The suite covers every ``MetadataBackend`` method: round trips of every field (inline
bytes, nested ``format_info``, unicode and large metadata), validation, each filter
operator on every field kind with hand-written expected results, ordering on every
field (``metadata.<path>`` included) with ``limit``/``offset`` and multi-page reads,
batch operations with mixed hits and misses, duplicates and empty input, key
immutability, copy/move semantics, and concurrent use from threads (atomic replace,
insert-if-absent and move under contention). Two properties run under hypothesis:
metadata values round-trip with their exact type and value (floats with their sign and
every bit, ints up to 64 bits, nesting) through every read, update, copy and re-put, and
every metadata key (dots, quotes, backslashes, control characters) can be named in a
filter and an ordering.

:func:`metadata_state_machine` builds a hypothesis ``RuleBasedStateMachine`` that
drives a backend with random operations and compares it with a dict model after every
step; :func:`run_mixed_workload` is the body of the multi-process stress test (4
processes x 500 operations on one index in the repository's own tests).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheness.storage._entry import MAX_KEY_LENGTH, Entry, utc_now
from cacheness.storage._filters import (
    INT64_MAX,
    ORDER_FIELDS,
    Filter,
    matches,
    metadata_field,
    sort_key,
)
from cacheness.storage._metadata.base import MetadataBackend, PayloadInfo
from cacheness.storage.errors import (
    EntryExistsError,
    EntryNotFoundError,
    FilterError,
    InvalidEntryError,
    InvalidKeyError,
    KeyImmutableError,
    MetadataError,
)

__all__ = [
    "FILTER_CASES",
    "ODD_METADATA_KEYS",
    "GroundTruth",
    "MetadataBackendConformance",
    "assert_copy_of",
    "exact_json",
    "exact_metadata",
    "filter_dataset",
    "metadata_state_machine",
    "run_mixed_workload",
]

GroundTruth = Callable[[], "dict[str, Entry]"]
"""Reads every stored entry around the backend, keyed by entry key."""

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)


def exact_json(value: Any) -> Any:
    """Return ``value`` in a form that compares equal only for the same JSON type and value.

    ``1 == 1.0`` and ``0.0 == -0.0`` in Python; here they differ, so an assertion on the
    result catches a backend that turns floats into ints or loses a sign (PostgreSQL's
    ``jsonb`` does both).

    Example:
        >>> exact_json({"a": 1}) == exact_json({"a": 1.0}), exact_json(-0.0) == exact_json(0.0)
        (False, False)
    """
    kind = type(value)
    if kind is float:
        return ("float", value.hex())
    if kind is dict:
        return ("dict", sorted((key, exact_json(item)) for key, item in value.items()))
    if kind is list:
        return ("list", [exact_json(item) for item in value])
    return (kind.__name__, value)


_JSON_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=8,
)
_FLOAT_MAX = 1.7976931348623157e308
_SMALLEST_NORMAL = 2.2250738585072014e-308
_EXACT_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e16, max_value=_FLOAT_MAX),
    st.floats(min_value=-_FLOAT_MAX, max_value=-1e16),
    st.floats(min_value=-_SMALLEST_NORMAL, max_value=_SMALLEST_NORMAL),  # subnormals, +-0.0
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e16, 1e20, -1e20, 1e300, _FLOAT_MAX, 2.0**63]),
)
_EXACT_SCALARS = st.one_of(
    _EXACT_FLOATS,
    st.integers(min_value=-INT64_MAX, max_value=INT64_MAX),
    st.sampled_from([INT64_MAX, -INT64_MAX, 2**53 + 1, 0]),
    st.booleans(),
    st.none(),
    _JSON_TEXT,
)


def exact_metadata() -> st.SearchStrategy[dict[str, Any]]:
    """A hypothesis strategy of metadata dicts that stress exact round trips.

    Floats of every magnitude (+-0.0, subnormals, 1e16..1e308), ints up to +-(2**63 - 1),
    booleans, None, text, lists and nested objects.
    """
    values = st.recursive(
        _EXACT_SCALARS,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(_JSON_TEXT, children, max_size=4)
        ),
        max_leaves=12,
    )
    return st.dictionaries(_JSON_TEXT, values, max_size=5)


ODD_METADATA_KEYS: tuple[str, ...] = (
    "a.b",
    'say "hi"',
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "del\x7f",
    "$.x[0]",
    "..",
    "ünï.códe",
    "0",
)
"""Metadata keys a filter must be able to name (with :func:`metadata_field`)."""


def filter_dataset() -> list[Entry]:
    """The entries the filter and ordering tests run against.

    Metadata values cover every JSON type, nested objects, arrays, a missing path,
    numbers equal across int/float, ``True`` next to ``1``, and a numeric string.
    """
    return [
        Entry.new(
            "alpha",
            handler="pickle",
            size=10,
            raw_size=20,
            now=T0,
            metadata={
                "project": "ml",
                "n": 1,
                "score": 0.5,
                "flag": True,
                "tags": ["a", "b"],
                "train": {"lr": 0.1, "opt": "adam"},
            },
        ),
        Entry.new(
            "beta",
            handler="numpy",
            size=200,
            raw_size=400,
            access_count=5,
            now=T0 + _HOUR,
            metadata={
                "project": "cv",
                "n": 2.0,
                "score": "high",
                "flag": False,
                "train": {"lr": 0.01},
            },
        ),
        Entry.new(
            "exp_1",
            handler="numpy",
            size=3000,
            access_count=2,
            now=T0 + 2 * _HOUR,
            metadata={"project": "ml", "n": 10, "flag": None, "train": {"lr": 1, "opt": "sgd"}},
        ),
        Entry.new(
            "exp_2",
            handler="pandas",
            size=3000,
            now=T0 + 3 * _HOUR,
            metadata={"project": "ML", "n": -5, "note": "naïve 日本"},
        ),
        Entry.new("exp%_3", handler="pickle", size=0, now=T0 + 4 * _HOUR, metadata={}),
        Entry.new(
            "日本/キー",
            handler="raw",
            size=7,
            now=T0 + 5 * _HOUR,
            metadata={"project": "ml", "n": "10", "0": {"1": "x"}},
        ),
        Entry.new(
            "zeta",
            handler="raw",
            size=1 << 40,
            now=T0 + 6 * _HOUR,
            metadata={"project": None, "n": True, "train": "none", "arr": [1, 2]},
        ),
    ]


_ALL = frozenset({"alpha", "beta", "exp_1", "exp_2", "exp%_3", "日本/キー", "zeta"})

FILTER_CASES: list[tuple[Filter, frozenset[str]]] = [
    ({}, _ALL),
    ({"key": "beta"}, frozenset({"beta"})),
    ({"key": {"$ne": "beta"}}, _ALL - {"beta"}),
    ({"key": {"$prefix": "exp_"}}, frozenset({"exp_1", "exp_2"})),
    ({"key": {"$prefix": "exp%"}}, frozenset({"exp%_3"})),
    ({"key": {"$prefix": "日本"}}, frozenset({"日本/キー"})),
    ({"key": {"$prefix": ""}}, _ALL),
    ({"key": {"$gt": "exp_1"}}, frozenset({"exp_2", "zeta", "日本/キー"})),
    ({"key": {"$in": ["alpha", "zeta", "nope"]}}, frozenset({"alpha", "zeta"})),
    ({"key": {"$nin": ["alpha", "zeta"]}}, _ALL - {"alpha", "zeta"}),
    ({"key": {"$nin": []}}, _ALL),
    ({"handler": "numpy"}, frozenset({"beta", "exp_1"})),
    ({"handler": {"$in": ["raw", "pandas"]}}, frozenset({"exp_2", "日本/キー", "zeta"})),
    ({"size": {"$gte": 200, "$lt": 3000}}, frozenset({"beta"})),
    ({"size": {"$gt": 1 << 39}}, frozenset({"zeta"})),
    ({"size": 3000.0}, frozenset({"exp_1", "exp_2"})),
    ({"size": {"$gt": 10, "$lt": 10}}, frozenset()),
    ({"raw_size": {"$gt": 0}}, frozenset({"alpha", "beta"})),
    ({"access_count": {"$in": [2, 5]}}, frozenset({"beta", "exp_1"})),
    (
        {"created_at": {"$gte": T0 + 2 * _HOUR}},
        frozenset({"exp_1", "exp_2", "exp%_3", "日本/キー", "zeta"}),
    ),
    ({"created_at": {"$lt": "2026-01-01T02:00:00+01:00"}}, frozenset({"alpha"})),
    (
        {"updated_at": {"$in": [T0, (T0 + 6 * _HOUR).astimezone(timezone(timedelta(hours=-5)))]}},
        frozenset({"alpha", "zeta"}),
    ),
    ({"accessed_at": {"$lte": T0}}, frozenset({"alpha"})),
    ({"metadata.project": "ml"}, frozenset({"alpha", "exp_1", "日本/キー"})),
    ({"metadata.project": {"$ne": "ml"}}, frozenset({"beta", "exp_2", "exp%_3", "zeta"})),
    ({"metadata.project": None}, frozenset({"zeta"})),
    ({"metadata.project": {"$exists": False}}, frozenset({"exp%_3"})),
    ({"metadata.project": {"$exists": True}}, _ALL - {"exp%_3"}),
    ({"metadata.project": {"$gte": "cv", "$lt": "ml"}}, frozenset({"beta"})),
    ({"metadata.project": {"$in": []}}, frozenset()),
    ({"metadata.n": 1}, frozenset({"alpha"})),
    ({"metadata.n": 2}, frozenset({"beta"})),
    ({"metadata.n": True}, frozenset({"zeta"})),
    ({"metadata.n": {"$gt": 1}}, frozenset({"beta", "exp_1"})),
    ({"metadata.n": {"$lt": 2}}, frozenset({"alpha", "exp_2"})),
    ({"metadata.n": {"$gte": "1"}}, frozenset({"日本/キー"})),
    ({"metadata.n": {"$in": [10, "10"]}}, frozenset({"exp_1", "日本/キー"})),
    ({"metadata.n": {"$nin": [1, 2]}}, _ALL - {"alpha", "beta"}),
    ({"metadata.n": {"$ne": None}}, _ALL),
    ({"metadata.score": {"$gt": 0.25}}, frozenset({"alpha"})),
    ({"metadata.score": {"$prefix": "hi"}}, frozenset({"beta"})),
    ({"metadata.flag": False}, frozenset({"beta"})),
    ({"metadata.flag": None}, frozenset({"exp_1"})),
    ({"metadata.train.lr": {"$lte": 0.1}}, frozenset({"alpha", "beta"})),
    ({"metadata.train.opt": {"$in": ["adam", "sgd"]}}, frozenset({"alpha", "exp_1"})),
    ({"metadata.train.lr": {"$exists": True}}, frozenset({"alpha", "beta", "exp_1"})),
    ({"metadata.tags": {"$exists": True}}, frozenset({"alpha"})),
    ({"metadata.tags": "a"}, frozenset()),
    ({"metadata.arr.0": {"$exists": True}}, frozenset()),
    ({"metadata.0.1": "x"}, frozenset({"日本/キー"})),
    ({"metadata.note": {"$prefix": "naïve 日"}}, frozenset({"exp_2"})),
    ({"$or": [{"handler": "raw"}, {"size": 0}]}, frozenset({"exp%_3", "日本/キー", "zeta"})),
    (
        {"$and": [{"metadata.project": "ml"}, {"size": {"$lt": 100}}]},
        frozenset({"alpha", "日本/キー"}),
    ),
    ({"$not": {"metadata.project": "ml"}}, frozenset({"beta", "exp_2", "exp%_3", "zeta"})),
    ({"$not": {"metadata.n": {"$gt": 1}}}, _ALL - {"beta", "exp_1"}),
    ({"metadata.n": {"$eq": 10}, "handler": "numpy"}, frozenset({"exp_1"})),
]
"""``(filter, expected keys over filter_dataset())``, written by hand."""

METADATA_ORDER = ["exp%_3", "zeta", "exp_2", "alpha", "beta", "exp_1", "日本/キー"]
"""Expected ``order_by="metadata.n"``: missing, bool, numbers by value, then strings."""


def assert_copy_of(copy: Entry, source: Entry, *changed: str) -> None:
    """Assert that ``copy`` is ``source`` but for the key, ``changed`` fields and the stamps."""
    assert copy.access_count == 0
    assert copy.created_at == copy.updated_at == copy.accessed_at
    restored = {name: getattr(source, name) for name in changed}
    stamps = ("created_at", "updated_at", "accessed_at", "access_count")
    restored.update({name: getattr(source, name) for name in stamps})
    assert copy.replace(key=source.key, **restored) == source


def _keys(entries: Iterator[Entry] | list[Entry]) -> list[str]:
    return [entry.key for entry in entries]


def _full_entry(key: str = "full") -> Entry:
    stamp = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=2)))
    return Entry(
        key=key,
        blob_ref="ab/cdef0123",
        handler="numpy",
        format="blosc2",
        format_info={"dtype": "<f8", "shape": [3, 4], "nested": {"order": "C", "k": None}},
        codec="zstd",
        size=1234,
        raw_size=5678,
        content_hash="0" * 32,
        etag='"abc-1"',
        version_id="v1",
        created_at=stamp,
        updated_at=stamp + timedelta(seconds=1),
        accessed_at=stamp + timedelta(microseconds=1),
        access_count=3,
        metadata={
            "project": "ml",
            "ünï": "Ωμέγα 😀",
            "n": 1.5,
            "ok": True,
            "none": None,
            "list": [1, "two", [3]],
            "deep": {"a": {"b": {"c": -7}}},
        },
        signature="sig",
        inline=b"\x00\x01binary\xff",
    )


class MetadataBackendConformance:
    """Tests every :class:`MetadataBackend` must pass; subclass it with a ``backend`` fixture.

    Class attributes to tune per backend:

    * ``threads``: threads in the concurrency tests (default 8).
    * ``large_metadata_keys``: keys of the large-metadata round trip (default 20,000).
    * ``atomic_move``: set False for a backend that keeps the default (put, then
      delete) ``move``; the test of concurrent moves of one key is then skipped.
    """

    threads: ClassVar[int] = 8
    large_metadata_keys: ClassVar[int] = 20_000
    atomic_move: ClassVar[bool] = True

    @pytest.fixture
    def backend(self) -> Iterator[MetadataBackend]:
        """The backend under test, fresh and empty: override this fixture."""
        raise NotImplementedError("subclasses provide a `backend` fixture")

    @pytest.fixture
    def ground_truth(self) -> GroundTruth | None:
        """Reads every entry around the backend; override it (None skips those checks)."""
        return None

    @pytest.fixture
    def reopen(self) -> Callable[[], MetadataBackend] | None:
        """Opens a second backend on the same storage (None: not persistent)."""
        return None

    @pytest.fixture
    def loaded(self, backend: MetadataBackend) -> MetadataBackend:
        """The backend holding :func:`filter_dataset`."""
        backend.put_many(filter_dataset())
        return backend

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def check_ground_truth(ground_truth: GroundTruth | None, expected: Mapping[str, Entry]) -> None:
        """Assert that what is stored around the backend is exactly ``expected``."""
        if ground_truth is not None:
            assert ground_truth() == dict(expected)

    # ------------------------------------------------------------------ basics

    def test_empty_backend(self, backend: MetadataBackend) -> None:
        assert backend.get("nothing") is None
        assert backend.exists("nothing") is False
        assert backend.count() == 0
        assert backend.total_size() == 0
        assert list(backend.query()) == []
        assert backend.delete("nothing") is None
        assert backend.update("nothing", size=1) is None
        assert backend.name
        assert backend.scope in ("process", "host", "shared")

    def test_round_trip_of_every_field(
        self, backend: MetadataBackend, ground_truth: GroundTruth | None
    ) -> None:
        entry = _full_entry()
        assert backend.put(entry) is None
        got = backend.get("full")
        assert got == entry
        assert got is not None
        assert got.inline == b"\x00\x01binary\xff"
        assert got.created_at.tzinfo is not None
        assert got.created_at.utcoffset() == timedelta(0)
        assert got.created_at == entry.created_at
        assert got.created_at.microsecond == 890123
        assert got.metadata["ünï"] == "Ωμέγα 😀"
        assert [e.key for e in backend.query()] == ["full"]
        self.check_ground_truth(ground_truth, {"full": entry})

    def test_get_payload_projects_the_entry(self, backend: MetadataBackend) -> None:
        entry = _full_entry()
        backend.put(entry)
        stored = backend.get(entry.key)
        assert stored is not None
        plain = backend.get_payload(entry.key)
        assert plain == PayloadInfo.of(stored)
        assert (plain.metadata, plain.accessed_at) == (None, None)
        with_state = backend.get_payload(entry.key, with_metadata=True)
        assert with_state == PayloadInfo.of(stored, with_metadata=True)
        assert with_state.metadata == stored.metadata
        assert with_state.accessed_at == stored.accessed_at
        assert backend.get_payload("missing", with_metadata=True) is None

    def test_entry_without_optional_fields(self, backend: MetadataBackend) -> None:
        entry = Entry.new("bare")
        backend.put(entry)
        got = backend.get("bare")
        assert got == entry
        assert got is not None
        assert (got.inline, got.etag, got.signature, got.metadata) == (None, None, None, {})

    def test_put_returns_the_replaced_entry(
        self, backend: MetadataBackend, ground_truth: GroundTruth | None
    ) -> None:
        first = Entry.new("k", blob_ref="one", size=1)
        second = Entry.new("k", blob_ref="two", size=2)
        assert backend.put(first) is None
        assert backend.put(second) == first
        assert backend.get("k") == second
        assert backend.count() == 1
        self.check_ground_truth(ground_truth, {"k": second})

    def test_put_without_overwrite_is_insert_if_absent(self, backend: MetadataBackend) -> None:
        first = Entry.new("k", blob_ref="one")
        assert backend.put(first, overwrite=False) is None
        with pytest.raises(EntryExistsError, match="overwrite=True"):
            backend.put(Entry.new("k", blob_ref="two"), overwrite=False)
        assert backend.get("k") == first

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("size", -1),
            ("size", True),
            ("size", "12"),
            ("size", 2**63),
            ("access_count", 1.5),
            ("handler", 3),
            ("handler", "nul\x00"),
            ("etag", b"bytes"),
            ("metadata", {"x": float("nan")}),
            ("metadata", {"x": float("inf")}),
            ("metadata", {1: "int key"}),
            ("metadata", {"x": {1, 2}}),
            ("metadata", {"x": "nul\x00"}),
            ("metadata", {"x": 2**64}),
            ("metadata", ["not", "a", "dict"]),
            ("format_info", {"x": object()}),
            ("inline", "text"),
        ],
    )
    def test_put_refuses_invalid_entries(
        self, backend: MetadataBackend, field: str, value: Any
    ) -> None:
        entry = Entry.new("bad")
        setattr(entry, field, value)
        with pytest.raises(InvalidEntryError) as excinfo:
            backend.put(entry)
        assert isinstance(excinfo.value, ValueError)
        assert field in str(excinfo.value)
        assert backend.get("bad") is None

    def test_put_refuses_a_naive_timestamp_and_non_entries(self, backend: MetadataBackend) -> None:
        entry = Entry.new("bad")
        entry.created_at = datetime(2026, 1, 1)
        with pytest.raises(InvalidEntryError, match="created_at"):
            backend.put(entry)
        with pytest.raises(InvalidEntryError):
            backend.put({"key": "bad"})  # type: ignore[arg-type]  # the wrong type on purpose
        assert backend.count() == 0

    def test_stored_entries_are_isolated_from_callers(self, backend: MetadataBackend) -> None:
        entry = Entry.new("k", metadata={"tags": ["a"], "nested": {"n": 1}})
        backend.put(entry)
        entry.metadata["tags"].append("mutated")
        got = backend.get("k")
        assert got is not None
        assert got.metadata == {"tags": ["a"], "nested": {"n": 1}}
        got.metadata["nested"]["n"] = 99
        again = backend.get("k")
        assert again is not None
        assert again.metadata["nested"] == {"n": 1}

    def test_metadata_is_normalized_through_json(self, backend: MetadataBackend) -> None:
        backend.put(Entry.new("k", metadata={"pair": (1, 2)}, format_info={"shape": (3,)}))
        got = backend.get("k")
        assert got is not None
        assert got.metadata == {"pair": [1, 2]}
        assert got.format_info == {"shape": [3]}

    def test_metadata_values_round_trip_exactly(self, backend: MetadataBackend) -> None:
        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(metadata=exact_metadata(), extra=exact_metadata())
        def round_trip(metadata: dict[str, Any], extra: dict[str, Any]) -> None:
            self.check_exact_round_trip(backend, metadata, extra)

        round_trip()

    @staticmethod
    def check_exact_round_trip(
        backend: MetadataBackend, metadata: dict[str, Any], extra: dict[str, Any]
    ) -> None:
        """Every read, update, copy and re-put keeps ``metadata``'s exact values."""
        expected = exact_json(metadata)
        backend.put(Entry.new("exact", metadata=metadata))
        got = backend.get("exact")
        assert got is not None
        assert exact_json(got.metadata) == expected
        payload = backend.get_payload("exact", with_metadata=True)
        assert payload is not None
        assert exact_json(payload.metadata) == expected
        assert exact_json(backend.get_many(["exact"])["exact"].metadata) == expected
        assert [exact_json(e.metadata) for e in backend.query({"key": "exact"})] == [expected]
        # what was read back can be written again, merged, copied and moved
        backend.put(Entry.new("again", metadata=got.metadata))
        merged = {**got.metadata, **extra}
        updated = backend.update("again", metadata=merged)
        assert updated is not None
        assert exact_json(updated.metadata) == exact_json(merged)
        many = backend.update_many({"exact": {"metadata": merged}})
        assert exact_json(many["exact"].metadata) == exact_json(merged)
        copy, _ = backend.copy("again", "copied", overwrite=True)
        assert exact_json(copy.metadata) == exact_json(merged)
        moved, _ = backend.move("copied", "moved", overwrite=True)
        assert exact_json(moved.metadata) == exact_json(merged)
        for key in ("exact", "again", "moved"):
            stored = backend.get(key)
            assert stored is not None
            assert exact_json(stored.metadata) == exact_json(merged)

    def test_every_metadata_key_can_be_named(self, backend: MetadataBackend) -> None:
        entries = [
            Entry.new(f"odd{i}", size=i, metadata={name: i, "nested": {name: f"v{i}"}})
            for i, name in enumerate(ODD_METADATA_KEYS)
        ]
        backend.put_many([*entries, Entry.new("plain", metadata={"nested": {"x": 1}})])
        everything = [*entries, backend.get("plain")]
        for i, name in enumerate(ODD_METADATA_KEYS):
            top, inner = metadata_field(name), metadata_field("nested", name)
            for filter_ in (
                {top: i},
                {top: {"$gte": i, "$lt": i + 1}},
                {top: {"$in": [i, -1]}},
                {inner: f"v{i}"},
                {inner: {"$prefix": f"v{i}"}},
                {inner: {"$exists": True}},
            ):
                assert _keys(backend.query(filter_)) == [f"odd{i}"], filter_
            others = sorted(e.key for e in everything if e is not None and e.key != f"odd{i}")
            assert sorted(_keys(backend.query({top: {"$ne": i}}))) == others
            assert sorted(_keys(backend.query({inner: {"$exists": False}}))) == others
        ordered = _keys(backend.query(order_by=metadata_field("nested", "a.b")))
        assert ordered[-1] == "odd0"  # the only string there; missing paths sort first
        assert [e.key for e in backend.delete_where({metadata_field('say "hi"'): 1})] == ["odd1"]
        assert backend.count() == len(ODD_METADATA_KEYS)

    @pytest.mark.parametrize("key", ["", "a\x00b", "x" * (MAX_KEY_LENGTH + 1), 17, None])
    def test_invalid_keys_are_refused(self, backend: MetadataBackend, key: Any) -> None:
        for call in (backend.get, backend.delete, backend.exists):
            with pytest.raises(InvalidKeyError):
                call(key)
        with pytest.raises(InvalidKeyError):
            backend.update(key, size=1)
        with pytest.raises(InvalidKeyError):
            backend.get_many(["ok", key])

    def test_longest_and_unicode_keys(self, backend: MetadataBackend) -> None:
        keys = ["x" * MAX_KEY_LENGTH, "日本語/キー", "emoji/😀/🎉", "עברית", "a b\tc\nd", "'; --"]
        backend.put_many([Entry.new(key, metadata={"key": key}) for key in keys])
        assert sorted(_keys(backend.query())) == sorted(keys)
        for key in keys:
            got = backend.get(key)
            assert got is not None
            assert got.metadata == {"key": key}
        assert _keys(backend.query({"key": {"$prefix": "emoji/😀"}})) == ["emoji/😀/🎉"]

    def test_large_metadata_and_inline_payload(self, backend: MetadataBackend) -> None:
        count = self.large_metadata_keys
        metadata = {f"field_{i}": {"value": i, "text": "ü" * 20} for i in range(count)}
        payload = random.Random(7).randbytes(256 * 1024)
        backend.put(Entry.new("big", metadata=metadata, inline=payload))
        got = backend.get("big")
        assert got is not None
        assert got.metadata == metadata
        assert got.inline == payload
        last = f"metadata.field_{self.large_metadata_keys - 1}.value"
        assert _keys(backend.query({last: self.large_metadata_keys - 1})) == ["big"]

    def test_delete(self, backend: MetadataBackend, ground_truth: GroundTruth | None) -> None:
        entry = Entry.new("k", blob_ref="r")
        backend.put(entry)
        backend.put(Entry.new("other"))
        assert backend.delete("k") == entry
        assert backend.delete("k") is None
        assert backend.get("k") is None
        assert backend.exists("other")
        self.check_ground_truth(ground_truth, {"other": _present(backend.get("other"))})

    # ------------------------------------------------------------------ update

    def test_update_changes_exactly_the_given_fields(
        self, backend: MetadataBackend, ground_truth: GroundTruth | None
    ) -> None:
        entry = _full_entry("k")
        backend.put(entry)
        later = T0 + timedelta(days=400, microseconds=5)
        updated = backend.update("k", accessed_at=later, access_count=9, metadata={"new": 1})
        expected = entry.replace(accessed_at=later, access_count=9, metadata={"new": 1})
        assert updated == expected
        assert backend.get("k") == expected
        assert backend.update("k") == expected
        self.check_ground_truth(ground_truth, {"k": expected})

    def test_update_refuses_key_unknown_fields_and_bad_values(
        self, backend: MetadataBackend
    ) -> None:
        entry = Entry.new("k", size=1)
        backend.put(entry)
        with pytest.raises(KeyImmutableError, match="move"):
            backend.update("k", key="other")
        with pytest.raises(InvalidEntryError, match="colour") as excinfo:
            backend.update("k", colour="red")
        assert isinstance(excinfo.value, ValueError)
        with pytest.raises(InvalidEntryError, match="size"):
            backend.update("k", size="large")
        with pytest.raises(InvalidEntryError):
            backend.update("k", updated_at=datetime(2026, 1, 1))
        with pytest.raises(InvalidEntryError, match="metadata"):
            backend.update("k", metadata={"x": float("nan")})
        assert backend.get("k") == entry
        assert backend.get("other") is None

    # ------------------------------------------------------------------ filters

    @pytest.mark.parametrize(("filter_", "expected"), FILTER_CASES, ids=repr)
    def test_filter(
        self, loaded: MetadataBackend, filter_: Filter, expected: frozenset[str]
    ) -> None:
        reference = {entry.key for entry in filter_dataset() if matches(entry, filter_)}
        assert reference == expected, "the reference evaluator disagrees with the case"
        got = _keys(loaded.query(filter_))
        assert len(got) == len(set(got))
        assert set(got) == expected
        assert loaded.count(filter_) == len(expected)
        sizes = {entry.key: entry.size for entry in filter_dataset()}
        assert loaded.total_size(filter_) == sum(sizes[key] for key in expected)

    @pytest.mark.parametrize(
        ("filter_", "culprit"),
        [
            ({"size": {"$regex": "1"}}, "$regex"),
            ({"colour": "red"}, "colour"),
            ({"metadata": "x"}, "metadata"),
            ({"metadata.": 1}, "metadata."),
            ({"metadata.a..b": 1}, "metadata.a..b"),
            ({"metadata.a\\b": 1}, "metadata.a"),
            ({"size": "big"}, "size"),
            ({"size": True}, "size"),
            ({"key": 5}, "key"),
            ({"key": {"$prefix": 5}}, "key"),
            ({"size": {"$prefix": "1"}}, "size"),
            ({"size": {"$exists": True}}, "size"),
            ({"metadata.x": {"$exists": "yes"}}, "metadata.x"),
            ({"metadata.x": {"$gt": None}}, "metadata.x"),
            ({"metadata.x": {"$gt": True}}, "metadata.x"),
            ({"metadata.x": {"$eq": [1]}}, "metadata.x"),
            ({"metadata.x": {"$in": "abc"}}, "metadata.x"),
            ({"metadata.x": float("nan")}, "metadata.x"),
            ({"created_at": {"$gt": "2026-01-01T00:00:00"}}, "created_at"),
            ({"created_at": {"$gt": datetime(2026, 1, 1)}}, "created_at"),
            ({"created_at": {"$gt": "yesterday"}}, "created_at"),
            ({"created_at": {"$gt": 1}}, "created_at"),
            ({"size": {"nested": 1}}, "size"),
            ({"size": {}}, "size"),
            ({"$or": []}, "$or"),
            ({"$or": {"size": 1}}, "$or"),
            ({"$nor": [{"size": 1}]}, "$nor"),
            ({"$not": [{"size": 1}]}, "$not"),
            ({5: 1}, "5"),
        ],
        ids=repr,
    )
    def test_invalid_filters_raise_naming_the_culprit(
        self, loaded: MetadataBackend, filter_: Any, culprit: str
    ) -> None:
        for call in (
            lambda: loaded.query(filter_),
            lambda: loaded.count(filter_),
            lambda: loaded.total_size(filter_),
            lambda: loaded.delete_where(filter_),
        ):
            with pytest.raises(FilterError) as excinfo:
                call()
            assert isinstance(excinfo.value, ValueError)
            assert culprit in str(excinfo.value)
        assert loaded.count() == len(_ALL)

    def test_filter_values_and_paths_are_data_not_code(self, loaded: MetadataBackend) -> None:
        hostile = [
            "x'; DROP TABLE cacheness_entries; --",
            'x"); DELETE FROM cacheness_entries; --',
            "%' OR '1'='1",
            "$.*",
        ]
        for value in hostile:
            assert list(loaded.query({"key": value})) == []
            assert list(loaded.query({"metadata.project": value})) == []
            assert list(loaded.query({"key": {"$prefix": value}})) == []
            assert loaded.delete_where({"handler": {"$in": [value]}}) == []
        path = "metadata.a'); DROP TABLE cacheness_entries; --"
        assert list(loaded.query({path: 1})) == []
        assert list(loaded.query({path: {"$exists": False}})) != []
        assert list(loaded.query({"metadata.$.project": "ml"})) == []
        assert loaded.count() == len(_ALL)
        loaded.put(Entry.new("x'; DROP TABLE cacheness_entries; --", metadata={"a'); DROP": 1}))
        assert _keys(loaded.query({"metadata.a'); DROP": 1})) == [
            "x'; DROP TABLE cacheness_entries; --"
        ]

    def test_limit_and_offset_validation(self, loaded: MetadataBackend) -> None:
        for kwargs in (
            {"limit": -1},
            {"limit": True},
            {"limit": 1.5},
            {"offset": -1},
            {"offset": None},
            {"order_by": "colour"},
            {"order_by": "metadata"},
            {"descending": "yes"},
        ):
            with pytest.raises(FilterError):
                loaded.query(**kwargs)  # raised by the call, before iteration

    # ------------------------------------------------------------------ ordering

    @pytest.mark.parametrize(
        "order_by",
        [*ORDER_FIELDS, "metadata.n", "metadata.project", "metadata.train.lr", "metadata.missing"],
    )
    @pytest.mark.parametrize("descending", [False, True])
    def test_order_by(self, loaded: MetadataBackend, order_by: str, descending: bool) -> None:
        expected = _keys(sorted(filter_dataset(), key=sort_key(order_by), reverse=descending))
        assert _keys(loaded.query(order_by=order_by, descending=descending)) == expected

    def test_order_by_metadata_ranks_types(self, loaded: MetadataBackend) -> None:
        assert _keys(loaded.query(order_by="metadata.n")) == METADATA_ORDER
        assert _keys(loaded.query(order_by="metadata.n", descending=True)) == METADATA_ORDER[::-1]

    def test_ties_are_broken_by_key(self, loaded: MetadataBackend) -> None:
        assert _keys(loaded.query({"size": 3000}, order_by="size")) == ["exp_1", "exp_2"]
        got = _keys(loaded.query({"size": 3000}, order_by="size", descending=True))
        assert got == ["exp_2", "exp_1"]

    @pytest.mark.parametrize("descending", [False, True])
    @pytest.mark.parametrize("order_by", ["key", "size", "metadata.n", "created_at"])
    def test_limit_offset_pages_and_many_pages(
        self,
        backend: MetadataBackend,
        monkeypatch: pytest.MonkeyPatch,
        order_by: str,
        descending: bool,
    ) -> None:
        if hasattr(backend, "page_size"):  # make a backend that reads in pages use many
            monkeypatch.setattr(backend, "page_size", 3)
        values: list[Any] = [1, 2.5, "x", None, True, [1], {"a": 1}, -3, "a", False]
        start = datetime(2026, 1, 1, tzinfo=UTC)
        entries = [  # created_at: runs of equal timestamps, broken by key
            Entry.new(
                f"k{i:02d}",
                size=i % 4,
                metadata={"n": values[i % len(values)]},
                now=start + timedelta(seconds=i // 4),
            )
            for i in range(23)
        ]
        backend.put_many(entries)
        expected = _keys(sorted(entries, key=sort_key(order_by), reverse=descending))
        order: dict[str, Any] = {"order_by": order_by, "descending": descending}
        assert _keys(backend.query(**order)) == expected
        paged = []
        for offset in range(0, 23, 5):
            paged += _keys(backend.query(**order, limit=5, offset=offset))
        assert paged == expected
        assert _keys(backend.query(**order, limit=7, offset=4)) == expected[4:11]
        assert _keys(backend.query(**order, limit=0)) == []
        assert _keys(backend.query(**order, offset=50)) == []
        assert (
            _keys(backend.query({"size": {"$gte": 2}}, **order, limit=4))
            == [key for key in expected if int(key[1:]) % 4 >= 2][:4]
        )

    @pytest.mark.parametrize("descending", [False, True])
    def test_query_without_payload_is_query_minus_inline_bytes(
        self, backend: MetadataBackend, monkeypatch: pytest.MonkeyPatch, descending: bool
    ) -> None:
        if hasattr(backend, "page_size"):
            monkeypatch.setattr(backend, "page_size", 3)
        entries = [
            Entry.new(f"k{i:02d}", size=i * 100, inline=bytes([i]) * (i * 100), metadata={"n": i})
            if i % 2
            else Entry.new(f"k{i:02d}", size=7, blob_ref=f"ab/k{i:02d}", metadata={"n": i})
            for i in range(11)
        ]
        backend.put_many(entries)
        options: dict[str, Any] = {"order_by": "metadata.n", "descending": descending}
        for where in (None, {"size": {"$gt": 150}}, {"blob_ref": ""}):
            whole = list(backend.query(where, **options, limit=8, offset=1))
            listed = list(backend.query_without_payload(where, **options, limit=8, offset=1))
            assert _keys(listed) == _keys(whole)
            for full, light in zip(whole, listed, strict=True):
                assert light.inline is None or light.inline == full.inline
                assert light.replace(inline=full.inline) == full

    def test_query_is_an_iterator(self, loaded: MetadataBackend) -> None:
        result = loaded.query(limit=2)
        assert iter(result) is result
        assert next(result).key == "alpha"

    # ------------------------------------------------------------------ batches

    def test_get_many(self, loaded: MetadataBackend) -> None:
        found = loaded.get_many(["zeta", "missing", "alpha", "zeta"])
        assert set(found) == {"zeta", "alpha"}
        assert found["alpha"] == loaded.get("alpha")
        assert loaded.get_many([]) == {}
        with pytest.raises(InvalidKeyError):
            loaded.get_many("alpha")

    def test_get_many_beyond_one_chunk(self, backend: MetadataBackend) -> None:
        backend.put_many([Entry.new(f"k{i:04d}", size=i) for i in range(1200)])
        wanted = [f"k{i:04d}" for i in range(0, 2400, 2)]
        found = backend.get_many(wanted)
        assert sorted(found) == [f"k{i:04d}" for i in range(0, 1200, 2)]
        assert all(entry.size == int(key[1:]) for key, entry in found.items())

    def test_put_many(self, backend: MetadataBackend, ground_truth: GroundTruth | None) -> None:
        old = Entry.new("a", blob_ref="old")
        backend.put(old)
        first_b = Entry.new("b", blob_ref="b1")
        batch = [Entry.new("a", blob_ref="new"), first_b, Entry.new("b", blob_ref="b2")]
        replaced = backend.put_many(batch)
        assert replaced == [old, first_b]
        assert backend.get("a") == batch[0]
        assert backend.get("b") == batch[2]
        assert backend.put_many([]) == []
        self.check_ground_truth(ground_truth, {"a": batch[0], "b": batch[2]})

    def test_put_many_is_all_or_nothing_on_invalid_input(self, backend: MetadataBackend) -> None:
        bad = Entry.new("bad")
        bad.size = -5
        with pytest.raises(InvalidEntryError):
            backend.put_many([Entry.new("fine"), bad])
        assert backend.count() == 0

    def test_update_many_if_applies_only_where_the_entry_is_unchanged(
        self, loaded: MetadataBackend
    ) -> None:
        before = {entry.key: entry for entry in loaded.query()}
        alpha, zeta = before["alpha"], before["zeta"]
        updated = loaded.update_many_if(
            {"alpha": {"access_count": 7}, "zeta": {"access_count": 8}, "missing": {"size": 1}},
            {
                "alpha": {"updated_at": alpha.updated_at, "size": alpha.size},  # holds
                "zeta": {"size": zeta.size + 1},  # changed since it was read: left alone
                "missing": {"size": 0},
            },
        )
        assert set(updated) == {"alpha"}
        assert updated["alpha"] == alpha.replace(access_count=7)
        assert loaded.get("zeta") == zeta
        assert loaded.get("missing") is None
        assert loaded.update_many_if({}, {}) == {}
        assert set(loaded.update_many_if({"zeta": {"access_count": 9}}, {})) == {"zeta"}

    def test_update_many(self, loaded: MetadataBackend, ground_truth: GroundTruth | None) -> None:
        before = {entry.key: entry for entry in loaded.query()}
        updated = loaded.update_many(
            {"alpha": {"access_count": 7}, "missing": {"size": 1}, "zeta": {"metadata": {}}}
        )
        assert set(updated) == {"alpha", "zeta"}
        assert updated["alpha"] == before["alpha"].replace(access_count=7)
        assert updated["zeta"] == before["zeta"].replace(metadata={})
        assert loaded.get("missing") is None
        assert loaded.update_many({}) == {}
        expected = {**before, **updated}
        self.check_ground_truth(ground_truth, expected)
        with pytest.raises(KeyImmutableError):
            loaded.update_many({"alpha": {"access_count": 1}, "beta": {"key": "x"}})
        with pytest.raises(InvalidEntryError):
            loaded.update_many({"alpha": {"access_count": 1}, "beta": {"size": "x"}})
        assert {entry.key: entry for entry in loaded.query()} == expected

    def test_delete_many(self, loaded: MetadataBackend) -> None:
        alpha, zeta = loaded.get("alpha"), loaded.get("zeta")
        removed = loaded.delete_many(["zeta", "missing", "alpha", "zeta"])
        assert removed == [zeta, alpha]
        assert loaded.count() == len(_ALL) - 2
        assert loaded.delete_many([]) == []
        assert loaded.delete_many(["alpha"]) == []

    def test_delete_where(self, loaded: MetadataBackend, ground_truth: GroundTruth | None) -> None:
        expected = {e.key: e for e in filter_dataset() if e.metadata.get("project") != "ml"}
        removed = loaded.delete_where({"metadata.project": "ml"})
        assert sorted(_keys(removed)) == ["alpha", "exp_1", "日本/キー"]
        assert {entry.key: entry for entry in loaded.query()} == expected
        self.check_ground_truth(ground_truth, expected)
        assert loaded.delete_where({"metadata.project": "ml"}) == []
        assert len(loaded.delete_where({})) == len(expected)
        assert loaded.count() == 0

    def test_delete_prefix(self, loaded: MetadataBackend) -> None:
        assert sorted(_keys(loaded.delete_prefix("exp_"))) == ["exp_1", "exp_2"]
        assert loaded.exists("exp%_3")
        assert _keys(loaded.delete_prefix("日本")) == ["日本/キー"]
        assert loaded.delete_prefix("nothing") == []
        assert sorted(_keys(loaded.delete_prefix(""))) == ["alpha", "beta", "exp%_3", "zeta"]
        assert loaded.count() == 0

    def test_count_total_size_exists(self, loaded: MetadataBackend) -> None:
        assert loaded.count() == len(_ALL)
        assert loaded.total_size() == sum(entry.size for entry in filter_dataset())
        assert loaded.count({"handler": "numpy"}) == 2
        assert loaded.total_size({"handler": "numpy"}) == 3200
        assert loaded.total_size({"handler": "nothing"}) == 0
        assert loaded.exists("alpha")
        assert not loaded.exists("omega")

    # ------------------------------------------------------------------ copy / move

    def test_copy(self, backend: MetadataBackend, ground_truth: GroundTruth | None) -> None:
        source = _full_entry("src")
        backend.put(source)
        before = utc_now()
        copy, replaced = backend.copy("src", "dst", blob_ref="copied", metadata={"c": 1})
        after = utc_now()
        assert replaced is None
        assert copy.key == "dst"
        assert (copy.blob_ref, copy.metadata, copy.access_count) == ("copied", {"c": 1}, 0)
        assert before <= copy.created_at == copy.updated_at == copy.accessed_at <= after
        assert_copy_of(copy, source, "blob_ref", "metadata")
        assert backend.get("dst") == copy
        assert backend.get("src") == source
        self.check_ground_truth(ground_truth, {"src": source, "dst": copy})

    def test_copy_errors_and_overwrite(self, backend: MetadataBackend) -> None:
        backend.put_many([Entry.new("src", blob_ref="s"), Entry.new("dst", blob_ref="d")])
        old_dst = backend.get("dst")
        with pytest.raises(EntryNotFoundError) as excinfo:
            backend.copy("missing", "x")
        assert isinstance(excinfo.value, KeyError)
        with pytest.raises(EntryExistsError):
            backend.copy("src", "dst")
        with pytest.raises(KeyImmutableError):
            backend.copy("src", "x", key="y")
        with pytest.raises(InvalidEntryError):
            backend.copy("src", "x", colour="red")
        with pytest.raises(InvalidKeyError):
            backend.copy("src", "")
        assert backend.get("dst") == old_dst
        assert backend.get("x") is None
        copy, replaced = backend.copy("src", "dst", overwrite=True, blob_ref="c")
        assert replaced == old_dst
        assert backend.get("dst") == copy
        copy, replaced = backend.copy("src", "src", overwrite=True, blob_ref="again")
        assert replaced is not None
        assert replaced.blob_ref == "s"
        assert backend.get("src") == copy

    def test_move(self, backend: MetadataBackend, ground_truth: GroundTruth | None) -> None:
        source = _full_entry("src")
        backend.put(source)
        before = utc_now()
        moved, replaced = backend.move("src", "dst")
        assert replaced is None
        assert moved.key == "dst"
        assert before <= moved.updated_at <= utc_now()
        assert moved.replace(key="src", updated_at=source.updated_at) == source
        assert backend.get("src") is None
        assert backend.get("dst") == moved
        self.check_ground_truth(ground_truth, {"dst": moved})

    def test_move_errors_and_overwrite(self, backend: MetadataBackend) -> None:
        backend.put_many([Entry.new("src", blob_ref="s"), Entry.new("dst", blob_ref="d")])
        old_dst, source = backend.get("dst"), backend.get("src")
        with pytest.raises(EntryNotFoundError):
            backend.move("missing", "x")
        with pytest.raises(EntryExistsError):
            backend.move("src", "dst")
        with pytest.raises(EntryExistsError):
            backend.move("src", "src")
        with pytest.raises(InvalidKeyError):
            backend.move("src", "bad\x00key")
        assert (backend.get("src"), backend.get("dst")) == (source, old_dst)
        moved, replaced = backend.move("src", "dst", overwrite=True)
        assert replaced == old_dst
        assert moved.blob_ref == "s"
        assert backend.get("src") is None
        assert backend.count() == 1
        stamped, replaced = backend.move("dst", "dst", overwrite=True)
        assert replaced is None
        assert stamped.blob_ref == "s"
        assert backend.get("dst") == stamped

    # ------------------------------------------------------------------ lifecycle

    def test_close_is_idempotent_and_final(self, backend: MetadataBackend) -> None:
        backend.put(Entry.new("k"))
        backend.close()
        backend.close()
        with pytest.raises(MetadataError, match="closed"):
            backend.get("k")
        with pytest.raises(MetadataError, match="closed"):
            backend.put(Entry.new("k2"))

    def test_persistence(
        self, backend: MetadataBackend, reopen: Callable[[], MetadataBackend] | None
    ) -> None:
        if reopen is None:
            pytest.skip("the backend is not persistent")
        entries = [_full_entry("a"), Entry.new("b", metadata={"x": [1, {"y": None}]})]
        backend.put_many(entries)
        backend.close()
        with reopen() as again:
            assert {entry.key: entry for entry in again.query()} == {e.key: e for e in entries}

    def test_two_handles_see_each_other(
        self, backend: MetadataBackend, reopen: Callable[[], MetadataBackend] | None
    ) -> None:
        if reopen is None:
            pytest.skip("the backend is not persistent")
        with reopen() as other:
            backend.put(Entry.new("from-first", size=1))
            assert other.get("from-first") is not None
            other.put(Entry.new("from-second", size=2))
            other.delete("from-first")
            assert _keys(backend.query()) == ["from-second"]

    # ------------------------------------------------------------------ threads

    def _in_threads(self, work: Callable[[int], Any]) -> list[Any]:
        barrier = threading.Barrier(self.threads)
        results: list[Any] = [None] * self.threads
        errors: list[BaseException] = []

        def run(index: int) -> None:
            try:
                barrier.wait()
                results[index] = work(index)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(self.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results

    def test_threads_mixed_operations(self, backend: MetadataBackend) -> None:
        def work(index: int) -> dict[str, Entry]:
            rng = random.Random(index)
            mine: dict[str, Entry] = {}
            for step in range(60):
                key = f"t{index}/{rng.randrange(8)}"
                action = rng.random()
                if action < 0.5:
                    entry = Entry.new(key, size=step, metadata={"owner": index})
                    backend.put(entry)
                    mine[key] = entry
                elif action < 0.7:
                    backend.delete(key)
                    mine.pop(key, None)
                elif action < 0.85:
                    updated = backend.update(key, access_count=step)
                    if updated is not None:
                        mine[key] = updated
                else:
                    backend.put(Entry.new(f"shared/{step % 5}", metadata={"owner": index}))
                    list(backend.query({"metadata.owner": index}, limit=3))
            return mine

        models = self._in_threads(work)
        for index, model in enumerate(models):
            stored = {e.key: e for e in backend.query({"key": {"$prefix": f"t{index}/"}})}
            assert stored == model

    def test_concurrent_puts_report_every_replaced_entry_once(
        self, backend: MetadataBackend
    ) -> None:
        def work(index: int) -> list[str]:
            replaced = []
            for step in range(15):
                old = backend.put(Entry.new("hot", blob_ref=f"{index}-{step}"))
                if old is not None:
                    replaced.append(old.blob_ref)
            return replaced

        replaced = [ref for refs in self._in_threads(work) for ref in refs]
        final = backend.get("hot")
        assert final is not None
        written = {f"{i}-{s}" for i in range(self.threads) for s in range(15)}
        counts = Counter([*replaced, final.blob_ref])
        assert set(counts) == written
        assert max(counts.values()) == 1  # no entry reported replaced twice, none lost

    def test_concurrent_insert_if_absent_has_one_winner(self, backend: MetadataBackend) -> None:
        def work(index: int) -> bool:
            try:
                backend.put(Entry.new("once", blob_ref=str(index)), overwrite=False)
            except EntryExistsError:
                return False
            return True

        wins = self._in_threads(work)
        assert wins.count(True) == 1
        stored = backend.get("once")
        assert stored is not None
        assert stored.blob_ref == str(wins.index(True))

    def test_concurrent_moves_of_one_key_have_one_winner(self, backend: MetadataBackend) -> None:
        if not self.atomic_move:
            pytest.skip("the backend keeps the default, non-atomic move()")
        backend.put(Entry.new("src", blob_ref="payload"))

        def work(index: int) -> str | None:
            try:
                return backend.move("src", f"dst/{index}")[0].key
            except EntryNotFoundError:
                return None

        moved = [key for key in self._in_threads(work) if key is not None]
        assert len(moved) == 1
        assert _keys(backend.query()) == moved

    # ------------------------------------------------------------------ named locks

    def test_lock_excludes_threads_and_leaves_other_names_free(
        self, backend: MetadataBackend
    ) -> None:
        inside = 0
        overlaps = 0
        guard = threading.Lock()

        def work(index: int) -> bool:
            nonlocal inside, overlaps
            with backend.named_lock("job", timeout=30) as held:
                with guard:
                    inside += 1
                    overlaps += inside > 1
                with backend.named_lock(f"other-{index}", timeout=0) as free:
                    assert free  # a different name never waits
                backend.put(Entry.new(f"lock/{index}"))
                with guard:
                    inside -= 1
            return held

        assert self._in_threads(work) == [True] * self.threads
        assert overlaps == 0
        assert backend.count({"key": {"$prefix": "lock/"}}) == self.threads

    def test_lock_timeout_reports_not_held(self, backend: MetadataBackend) -> None:
        taken = threading.Event()
        release = threading.Event()

        def holder() -> None:
            with backend.named_lock("busy") as held:
                assert held
                taken.set()
                release.wait(30)

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            assert taken.wait(30)
            with backend.named_lock("busy", timeout=0.05) as held:
                assert held is False
        finally:
            release.set()
            thread.join()
        with backend.named_lock("busy", timeout=5) as held:
            assert held is True  # released by the holder

    def test_lock_is_shared_by_two_handles(
        self, backend: MetadataBackend, reopen: Callable[[], MetadataBackend] | None
    ) -> None:
        if reopen is None:
            pytest.skip("the backend is not persistent")
        with reopen() as other:
            with backend.named_lock("shared-job") as held:
                assert held
                with other.named_lock("shared-job", timeout=0.05) as other_held:
                    assert other_held is False
            with other.named_lock("shared-job", timeout=5) as other_held:
                assert other_held is True


# ---------------------------------------------------------------------------- state machine


def metadata_state_machine(
    factory: Callable[[], MetadataBackend],
) -> type[Any]:
    """Return a hypothesis state machine comparing ``factory()`` backends with a dict model.

    Every example starts from ``factory()`` (a fresh, empty backend, closed at the
    end) and applies random puts (with and without overwrite), updates, deletes,
    copies, moves, batch operations, deletions by filter and prefix, and queries;
    after every step the backend's full content must equal the model's.

    Example:
        >>> from hypothesis import settings
        >>> from cacheness.storage import MemoryMetadataBackend
        >>> Machine = metadata_state_machine(MemoryMetadataBackend)
        >>> Machine.TestCase.settings = settings(max_examples=3, stateful_step_count=5)
        >>> Machine.TestCase("runTest").runTest()
    """
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

    keys = st.sampled_from(["a", "b", "ab", "b/c", "é", "日本", "x y", "a%", "a_"])
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.integers(-1000, 1000).map(lambda n: n / 8),
        st.text(st.sampled_from("ab_%é日 "), max_size=4),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(["n", "s", "0"]), inner, max_size=2),
        ),
        max_leaves=4,
    )
    metadata = st.dictionaries(st.sampled_from(["n", "s", "p", "deep"]), values, max_size=3)
    stamps = st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(UTC),
    )
    entries = st.builds(
        Entry,
        key=keys,
        blob_ref=st.text(st.sampled_from("0123abc/"), max_size=6),
        handler=st.sampled_from(["pickle", "numpy", "raw", ""]),
        size=st.integers(0, 2**40),
        access_count=st.integers(0, 10),
        created_at=stamps,
        updated_at=stamps,
        accessed_at=stamps,
        metadata=metadata,
        inline=st.none() | st.binary(max_size=8),
    )
    changes = st.fixed_dictionaries(
        {},
        optional={
            "size": st.integers(0, 100),
            "access_count": st.integers(0, 100),
            "accessed_at": stamps,
            "metadata": metadata,
            "handler": st.sampled_from(["pickle", "numpy"]),
            "inline": st.none() | st.binary(max_size=4),
        },
    )
    conditions = st.one_of(
        st.builds(lambda k: {"key": k}, keys),
        st.builds(lambda p: {"key": {"$prefix": p}}, st.sampled_from(["", "a", "b/", "日"])),
        st.builds(lambda n: {"size": {"$gte": n}}, st.integers(0, 2**40)),
        st.builds(lambda h: {"handler": {"$in": h}}, st.lists(st.sampled_from(["raw", "numpy"]))),
        st.builds(lambda t: {"created_at": {"$lt": t}}, stamps),
        st.builds(
            lambda f, v: {f"metadata.{f}": v}, st.sampled_from(["n", "s", "deep.n"]), scalars
        ),
        st.builds(
            lambda f, op, v: {f"metadata.{f}": {op: v}},
            st.sampled_from(["n", "s", "deep.0"]),
            st.sampled_from(["$gt", "$lte", "$ne"]),
            st.integers(-5, 5) | st.text(st.sampled_from("ab"), max_size=2),
        ),
        st.builds(
            lambda f, e: {f"metadata.{f}": {"$exists": e}},
            st.sampled_from(["n", "p", "deep.s"]),
            st.booleans(),
        ),
    )
    filters = st.one_of(
        st.just({}),
        conditions,
        st.builds(lambda a, b: {"$or": [a, b]}, conditions, conditions),
        st.builds(lambda a: {"$not": a}, conditions),
    )
    orders = st.sampled_from(["key", "size", "created_at", "access_count", "metadata.n"])

    class MetadataStateMachine(RuleBasedStateMachine):
        """Random operations on a backend, checked against a dict after every step."""

        def __init__(self) -> None:
            super().__init__()
            self.backend = factory()
            self.model: dict[str, Entry] = {}

        def teardown(self) -> None:
            self.backend.close()

        @rule(entry=entries, overwrite=st.booleans())
        def put(self, entry: Entry, overwrite: bool) -> None:
            old = self.model.get(entry.key)
            if old is not None and not overwrite:
                with pytest.raises(EntryExistsError):
                    self.backend.put(entry, overwrite=False)
                return
            assert self.backend.put(entry, overwrite=overwrite) == old
            assert self.backend.get(entry.key) == entry
            self.model[entry.key] = entry

        @rule(batch=st.lists(entries, max_size=4))
        def put_many(self, batch: list[Entry]) -> None:
            expected_replaced = []
            staged = dict(self.model)
            for entry in batch:
                if entry.key in staged:
                    expected_replaced.append(staged[entry.key])
                staged[entry.key] = entry
            assert self.backend.put_many(batch) == expected_replaced
            self.model = staged

        @rule(key=keys, fields=changes)
        def update(self, key: str, fields: dict[str, Any]) -> None:
            updated = self.backend.update(key, **fields)
            if key not in self.model:
                assert updated is None
                return
            assert updated is not None
            assert updated == self.model[key].replace(**fields)
            self.model[key] = updated

        @rule(batch=st.dictionaries(keys, changes, max_size=3))
        def update_many(self, batch: dict[str, dict[str, Any]]) -> None:
            updated = self.backend.update_many(batch)
            assert set(updated) == set(batch) & set(self.model)
            self.model.update(updated)

        @rule(key=keys)
        def delete(self, key: str) -> None:
            assert self.backend.delete(key) == self.model.pop(key, None)

        @rule(batch=st.lists(keys, max_size=4))
        def delete_many(self, batch: list[str]) -> None:
            expected = [self.model.pop(k) for k in dict.fromkeys(batch) if k in self.model]
            assert self.backend.delete_many(batch) == expected

        @rule(filter_=filters)
        def delete_where(self, filter_: Filter) -> None:
            doomed = {k: e for k, e in self.model.items() if matches(e, filter_)}
            removed = self.backend.delete_where(filter_)
            assert {entry.key: entry for entry in removed} == doomed
            for key in doomed:
                del self.model[key]

        @rule(prefix=st.sampled_from(["a", "b/", "日", "x"]))
        def delete_prefix(self, prefix: str) -> None:
            removed = self.backend.delete_prefix(prefix)
            assert sorted(e.key for e in removed) == sorted(
                k for k in self.model if k.startswith(prefix)
            )
            for entry in removed:
                del self.model[entry.key]

        @rule(src=keys, dst=keys, overwrite=st.booleans(), ref=st.text("xyz", max_size=3))
        def copy(self, src: str, dst: str, overwrite: bool, ref: str) -> None:
            if src not in self.model:
                with pytest.raises(EntryNotFoundError):
                    self.backend.copy(src, dst, overwrite=overwrite, blob_ref=ref)
                return
            if dst in self.model and not overwrite:
                with pytest.raises(EntryExistsError):
                    self.backend.copy(src, dst, overwrite=overwrite, blob_ref=ref)
                return
            copy, replaced = self.backend.copy(src, dst, overwrite=overwrite, blob_ref=ref)
            assert replaced == self.model.get(dst)
            assert copy.blob_ref == ref
            assert_copy_of(copy, self.model[src], "blob_ref")
            self.model[dst] = copy

        @rule(src=keys, dst=keys, overwrite=st.booleans())
        def move(self, src: str, dst: str, overwrite: bool) -> None:
            if src not in self.model:
                with pytest.raises(EntryNotFoundError):
                    self.backend.move(src, dst, overwrite=overwrite)
                return
            if dst in self.model and not overwrite:
                with pytest.raises(EntryExistsError):
                    self.backend.move(src, dst, overwrite=overwrite)
                return
            moved, replaced = self.backend.move(src, dst, overwrite=overwrite)
            assert replaced == (None if src == dst else self.model.get(dst))
            source = self.model.pop(src)
            assert moved.replace(key=src, updated_at=source.updated_at) == source
            self.model[dst] = moved

        @rule(
            filter_=filters,
            order_by=orders,
            descending=st.booleans(),
            limit=st.none() | st.integers(0, 5),
            offset=st.integers(0, 3),
        )
        def query(
            self, filter_: Filter, order_by: str, descending: bool, limit: int | None, offset: int
        ) -> None:
            matching = [e for e in self.model.values() if matches(e, filter_)]
            ordered = sorted(matching, key=sort_key(order_by), reverse=descending)[offset:]
            if limit is not None:
                ordered = ordered[:limit]
            got = list(
                self.backend.query(
                    filter_, order_by=order_by, descending=descending, limit=limit, offset=offset
                )
            )
            assert got == ordered
            assert self.backend.count(filter_) == len(matching)
            assert self.backend.total_size(filter_) == sum(e.size for e in matching)

        @precondition(lambda self: bool(self.model))
        @rule(extra=st.lists(keys, max_size=3))
        def get_many(self, extra: list[str]) -> None:
            wanted = [*self.model, *extra]
            assert self.backend.get_many(wanted) == self.model

        @invariant()
        def matches_the_model(self) -> None:
            assert {entry.key: entry for entry in self.backend.query()} == self.model

    return MetadataStateMachine


# ---------------------------------------------------------------------------- processes


def run_mixed_workload(
    backend_name: str, options: Mapping[str, Any], worker: int, operations: int, seed: int
) -> dict[str, Any]:
    """Run ``operations`` random operations on a backend opened from the registry.

    The body of the multi-process test: each process works on its own keys
    (``w<worker>/...``), whose final state it predicts exactly, and on shared keys
    (``shared/...``) that every process overwrites. Entries carry a checksum of their
    content in ``metadata`` so the test can tell an intact entry from a torn one.

    Returns:
        ``{"own": {key: entry dict or None}, "shared": [entry dicts written]}``.
    """
    from cacheness.storage._hashing import hash_bytes
    from cacheness.storage._registry import get_metadata_backend

    rng = random.Random(seed * 1000 + worker)

    def make(key: str, step: int) -> Entry:
        blob_ref = f"{worker}-{step}-{rng.randrange(1 << 30)}"
        return Entry.new(
            key,
            blob_ref=blob_ref,
            size=step,
            metadata={"worker": worker, "step": step, "check": hash_bytes(blob_ref.encode())},
        )

    own: dict[str, Entry | None] = {}
    shared: list[Entry] = []
    with get_metadata_backend(backend_name, **options) as backend:
        for step in range(operations):
            key = f"w{worker}/{rng.randrange(25)}"
            action = rng.random()
            if action < 0.30:
                entry = make(key, step)
                backend.put(entry)
                own[key] = entry
            elif action < 0.40:
                batch = [make(f"w{worker}/{rng.randrange(25)}", step) for _ in range(3)]
                backend.put_many(batch)
                own.update({entry.key: entry for entry in batch})
            elif action < 0.50:
                backend.delete(key)
                own[key] = None
            elif action < 0.60:
                updated = backend.update(key, access_count=step)
                own[key] = updated
            elif action < 0.70:
                target = f"w{worker}/{rng.randrange(25)}"
                try:
                    moved, _ = backend.move(key, target, overwrite=True)
                except EntryNotFoundError:
                    own[key] = None
                else:
                    if target != key:
                        own[key] = None
                    own[target] = moved
            elif action < 0.85:
                entry = make(f"shared/{rng.randrange(10)}", step)
                backend.put(entry)
                shared.append(entry)
            elif action < 0.92:
                backend.get_many([f"shared/{i}" for i in range(10)])
                list(backend.query({"metadata.worker": worker}, limit=10))
            else:
                removed = backend.delete_where(
                    {"key": {"$prefix": f"w{worker}/"}, "size": {"$lt": step // 4}}
                )
                for entry in removed:
                    own[entry.key] = None
    return {
        "own": {key: None if entry is None else entry.to_dict() for key, entry in own.items()},
        "shared": [entry.to_dict() for entry in shared],
    }


def _present(entry: Entry | None) -> Entry:
    """``entry``, which the test has just seen stored."""
    assert entry is not None
    return entry
