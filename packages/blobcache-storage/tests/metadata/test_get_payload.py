"""``get_payload``: the fields a read needs, on every metadata backend."""

from __future__ import annotations

import pytest

from cacheness.storage import (
    Entry,
    JsonMetadataBackend,
    MemoryMetadataBackend,
    MetadataBackend,
    PayloadInfo,
    PostgresMetadataBackend,
    SqliteMetadataBackend,
)
from cacheness.storage._metadata.base import PAYLOAD_FIELDS
from cacheness.storage.errors import InvalidKeyError, MetadataError

ENTRIES = [
    Entry.new(
        "blob",
        blob_ref="ab/abcdef",
        handler="numpy",
        format="ndarray",
        format_info={"dtype": "<f8", "shape": [10, 3]},
        codec="blosc2",
        size=123,
        raw_size=240,
        content_hash="0" * 32,
        etag='"etag"',
        metadata={"ignored": True},
    ),
    Entry.new(
        "inline", handler="plain", format="msgpack", size=3, raw_size=3, inline=b"\x93\x01\x02"
    ),
    Entry.new("empty-inline", handler="raw", format="bytes", inline=b""),
]


@pytest.fixture(params=["memory", "json", "sqlite", "postgresql"])
def index(request, tmp_path):
    if request.param == "memory":
        backend: MetadataBackend = MemoryMetadataBackend()
    elif request.param == "json":
        backend = JsonMetadataBackend(tmp_path / "index.json")
    elif request.param == "sqlite":
        backend = SqliteMetadataBackend(tmp_path / "index.sqlite")
    else:
        backend = PostgresMetadataBackend(request.getfixturevalue("fresh_postgres_url"))
    with backend:
        yield backend


def test_payload_fields_match_the_entry(index):
    index.put_many(ENTRIES)
    for entry in ENTRIES:
        payload = index.get_payload(entry.key)
        assert isinstance(payload, PayloadInfo)
        assert payload == PayloadInfo.of(entry)
        for name in PAYLOAD_FIELDS:
            assert getattr(payload, name) == getattr(index.get(entry.key), name)
    assert index.get_payload("missing") is None


def test_payload_follows_updates_and_deletes(index):
    index.put_many(ENTRIES)
    index.update("blob", blob_ref="cd/cdef", size=7, format_info={})
    payload = index.get_payload("blob")
    assert (payload.blob_ref, payload.size, payload.format_info) == ("cd/cdef", 7, {})
    index.delete("blob")
    assert index.get_payload("blob") is None


def test_invalid_keys_and_closed_backends(index):
    with pytest.raises(InvalidKeyError):
        index.get_payload("")
    index.close()
    with pytest.raises(MetadataError, match="closed"):
        index.get_payload("blob")


def test_payload_fields_are_entry_fields():
    assert set(PAYLOAD_FIELDS) <= set(Entry.__struct_fields__)


def test_payload_info_is_entry_fields_by_name():
    entry = Entry.new(
        "k",
        blob_ref="ab/abc",
        handler="numpy",
        format="ndarray",
        format_info={"dtype": "<f8"},
        codec="blosc2",
        size=7,
        raw_size=80,
        content_hash="c" * 32,
        metadata={"stage": "dev"},
    )
    assert set(PayloadInfo.__struct_fields__) <= set(Entry.__struct_fields__)
    full = PayloadInfo.of(entry, with_metadata=True)
    assert {name: getattr(full, name) for name in full.__struct_fields__} == {
        name: getattr(entry, name) for name in full.__struct_fields__
    }
    bare = PayloadInfo.of(entry)
    assert (bare.metadata, bare.accessed_at, bare.format_info) == (None, None, {"dtype": "<f8"})
