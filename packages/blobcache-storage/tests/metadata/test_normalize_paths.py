"""``normalize_entry`` answers common entries in one pass: its slower checks still decide the rest.

The quick pass covers ASCII texts, no etag/version/signature, plain ints and an empty
``format_info``. These cases step just outside it and must get exactly the verdicts the
field-by-field checks give: stored faithfully (read back from SQLite) or refused with a
message naming the field.
"""

from __future__ import annotations

import enum

import pytest

from cacheness.storage import Entry, SqliteMetadataBackend
from cacheness.storage._metadata._entries import normalize_entry
from cacheness.storage.errors import InvalidEntryError


class Level(enum.IntEnum):
    HIGH = 3


ACCEPTED = [
    pytest.param({"handler": "ハンドラ", "format": "é"}, id="non-ascii texts"),
    pytest.param({"etag": '"abc"', "version_id": "v1", "signature": "sig"}, id="optional texts"),
    pytest.param({"size": Level.HIGH}, id="int subclass"),
    pytest.param({"size": 2**63 - 1, "access_count": 0}, id="int bounds"),
    pytest.param({"format_info": {"dtype": "float64", "shape": [2, 3]}}, id="format_info"),
]

REFUSED = [
    pytest.param({"handler": 3}, "handler", id="non-str text"),
    pytest.param({"codec": "zs\x00td"}, "codec", id="NUL in text"),
    pytest.param({"format": "lone\ud800"}, "format", id="lone surrogate"),
    pytest.param({"etag": "a\x00"}, "etag", id="NUL in optional text"),
    pytest.param({"signature": b"sig"}, "signature", id="bytes optional text"),
    pytest.param({"size": True}, "size", id="bool count"),
    pytest.param({"raw_size": -1}, "raw_size", id="negative count"),
    pytest.param({"access_count": 2**63}, "access_count", id="count over 64 bits"),
    pytest.param({"size": 1.0}, "size", id="float count"),
    pytest.param({"format_info": {"n": float("nan")}}, "format_info", id="NaN in format_info"),
]


def entry_with(**changes):
    entry = Entry.new("k", handler="plain", format="msgpack", content_hash="0" * 32, size=3)
    for name, value in changes.items():
        setattr(entry, name, value)  # past Entry's own checks, as a careless caller could
    return entry


@pytest.mark.parametrize("changes", ACCEPTED)
def test_entries_just_outside_the_quick_pass_are_stored_faithfully(tmp_path, changes):
    entry = entry_with(**changes)
    with SqliteMetadataBackend(tmp_path / "index.sqlite") as index:
        index.put(entry)
        stored = index.get("k")
    for name, value in changes.items():
        assert getattr(stored, name) == value, name


@pytest.mark.parametrize(("changes", "field"), REFUSED)
def test_entries_the_field_checks_refuse_are_refused_with_the_field(changes, field):
    with pytest.raises(InvalidEntryError, match=field):
        normalize_entry(entry_with(**changes))


def test_the_quick_pass_copies_metadata_and_gives_a_fresh_empty_format_info():
    entry = entry_with(metadata={"tags": ("a", "b")})
    stored = normalize_entry(entry)
    assert stored.metadata == {"tags": ["a", "b"]}
    assert stored.format_info == {}
    assert stored.format_info is not entry.format_info
    assert stored.metadata is not entry.metadata
