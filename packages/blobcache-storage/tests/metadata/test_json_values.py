"""The quick JSON check (one msgspec round trip) answers as the field-by-field one.

``metadata_problem`` and ``normalize_entry`` first try a round trip through msgspec and
take the walk in Python only when the round trip cannot vouch for the value; whatever the
value, the verdict and the stored copy must be those of the walk.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheness.storage import Entry, metadata_problem
from cacheness.storage._metadata._entries import (
    _UNSURE,
    _exact_json_copy,
    json_problem,
    normalize_entry,
)
from cacheness.storage.errors import InvalidEntryError

INT64_MAX = 2**63 - 1

awkward_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([INT64_MAX, INT64_MAX + 1, -INT64_MAX - 1, -INT64_MAX - 2, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["a\x00b", "lone\ud800", "é", "1234567890123456789"])
    | st.binary(max_size=4)
    | st.just(datetime(2026, 1, 1, tzinfo=UTC))
)
values = st.recursive(
    awkward_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_the_quick_check_gives_the_verdict_of_the_walk(value):
    walked = json_problem(value)
    copy = _exact_json_copy(value)
    if copy is not _UNSURE:  # vouched for: the walk finds nothing, the copy is equal
        assert walked is None
        assert copy == value
    assert (metadata_problem(value) is None) == (walked is None)


@given(st.dictionaries(st.text(max_size=4), values, max_size=4))
def test_normalize_entry_stores_what_the_walk_accepts(metadata):
    entry = Entry.new("k", metadata=metadata)
    if json_problem(metadata) is not None:
        with pytest.raises(InvalidEntryError):
            normalize_entry(entry)
        return
    stored = normalize_entry(entry)
    assert stored.metadata is not metadata  # a copy: the caller's dict is not kept
    assert stored.metadata == _json_round_trip(metadata)


def _json_round_trip(value):
    if isinstance(value, dict):
        return {key: _json_round_trip(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_round_trip(item) for item in value]
    return value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"n": INT64_MAX + 1}, "does not fit in 64 bits"),
        ({"n": -INT64_MAX - 2}, "does not fit in 64 bits"),
        ({"s": "a\x00b"}, "NUL"),
        ({"f": math.nan}, "JSON cannot hold nan"),
        ({1: "a"}, "keys must be strings"),
        ({"shallow": [[[]]], "big but fine": INT64_MAX}, None),
    ],
)
def test_values_near_the_edges(value, problem):
    found = metadata_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_nesting_beyond_the_limit_is_refused_either_way():
    deep: list = []
    for _ in range(70):
        deep = [deep]
    assert _exact_json_copy({"d": deep}) is _UNSURE
    assert "nested deeper" in (metadata_problem({"d": deep}) or "")
