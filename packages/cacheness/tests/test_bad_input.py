"""Bad input, tried on purpose, against the cache layer.

Hostile key parameters are hashed, never used as paths; what cannot be stored is a typed
error that says what to do, raised before anything changes; damaged blobs are counted
misses (``get_stats()["errors"]``) or, on a strict cache, an ``IntegrityError``; damaged
index files stop the cache from opening with the file named. Every case checks that
the entries stored before still load, reading ground truth around the cache (files on
disk, objects in the bucket through plain boto3, rows through sqlite3/psycopg).
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cacheness import cacheness
from cacheness.config import load_config_from_dict
from cacheness.keys import UnsupportedKeyValueError
from cacheness.storage.errors import (
    ConfigError,
    FilterError,
    IntegrityError,
    InvalidEntryError,
    InvalidKeyError,
    MetadataError,
)


def payload(seed: int, size: int = 100_000) -> bytes:
    """Incompressible bytes: always stored as a blob, never inline."""
    return random.Random(seed).randbytes(size)


KEPT = {"experiment": "kept", "epoch": 3}
KEPT_VALUE = {"auc": 0.91, "weights": list(range(2000))}


def make(tmp_path: Path, name: str = "cache", **options: Any) -> cacheness:
    """A cache under ``tmp_path / name`` holding one entry that every test expects back."""
    cache = cacheness(cache_dir=str(tmp_path / name), **options)
    cache.put(KEPT_VALUE, metadata={"owner": "ana"}, **KEPT)
    cache.put(payload(0), big="kept")
    return cache


def assert_kept(cache: cacheness) -> None:
    assert cache.get(**KEPT) == KEPT_VALUE
    assert cache.get_metadata(**KEPT).metadata == {"owner": "ana"}
    assert cache.get(big="kept") == payload(0)


def files_under(root: Path) -> dict[str, bytes]:
    side = ("-wal", "-shm", ".lock", ".locks")
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(side)
    }


@pytest.fixture
def cache(tmp_path: Path):
    with make(tmp_path) as made:
        yield made


# --------------------------------------------------------------------------- key parameters

HOSTILE_VALUES = [
    pytest.param("../../../etc/passwd", True, id="parent-path"),
    pytest.param("/etc/passwd", True, id="absolute-path"),
    pytest.param("C:\\Windows\\System32", True, id="windows-path"),
    pytest.param("a\x00b", False, id="nul"),
    pytest.param("x" * 1_000_000, False, id="megabyte-string"),
    pytest.param("lone\ud800", False, id="lone-surrogate"),
    pytest.param({1: "int key", (2, 3): "tuple key", None: "none key"}, False, id="dict-keys"),
    pytest.param({"deep": {5: [{"x": ("..", "/")}]}}, False, id="nested-dict-keys"),
    pytest.param(2**70, False, id="int-beyond-64-bits"),
    pytest.param(-(2**63) - 1, False, id="int-below-64-bits"),
    pytest.param(float("nan"), True, id="nan"),
]


@pytest.mark.parametrize(("value", "described"), HOSTILE_VALUES)
def test_hostile_key_parameters_are_hashed_never_used_as_paths(tmp_path, cache, value, described):
    outside = sorted(p.name for p in tmp_path.iterdir())
    key = cache.put(payload(1), run=value, ok="yes")
    assert len(key) == 32
    assert set(key) <= set("0123456789abcdef")
    assert cache.get(run=value, ok="yes") == payload(1)
    assert cache.get(run="other", ok="yes") is None
    entry = cache.get_metadata(run=value, ok="yes")
    assert entry.params is not None
    assert entry.params["ok"] == "yes"
    # recorded for listing and queries only when an index can hold it faithfully
    assert ("run" in entry.params) is described
    assert [e.cache_key for e in cache.query_meta(ok="yes")] == [key]
    assert sorted(p.name for p in tmp_path.iterdir()) == outside
    assert all(".." not in part for part in entry.blob_ref.split("/"))
    assert cache.invalidate(run=value, ok="yes")
    assert_kept(cache)


@pytest.mark.parametrize(
    "name", ["lone\udc00", "nul\x00", "../../x"], ids=["surrogate", "nul", "path"]
)
def test_odd_parameter_names_still_key_the_entry(cache, name):
    key = cache.put(payload(2), key_params={name: 1, "ok": 2})
    assert cache.get(key_params={name: 1, "ok": 2}) == payload(2)
    assert cache.get(key_params={name: 2, "ok": 2}) is None
    params = cache.get_metadata(cache_key=key).params
    assert params["ok"] == 2
    assert (name in params) is (name == "../../x")
    assert_kept(cache)


def test_unqueryable_parameters_say_so(cache):
    cache.put(payload(3), text="a\x00b", n=1)
    with pytest.raises(FilterError, match="cannot query by text") as excinfo:
        cache.query_meta(text="a\x00b")
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(FilterError, match="cannot query by text"):
        cache.delete_matching(text="a\x00b")
    assert cache.delete_by_prefix(text="a") == 0  # documented: unrecorded values never match
    assert cache.get(text="a\x00b", n=1) == payload(3)
    assert_kept(cache)


@pytest.mark.parametrize("params", [{1: "x"}, {(1, 2): 3}, {None: 1}, {b"name": 1}])
def test_parameter_names_must_be_strings(cache, params):
    for call in (
        lambda: cache.put(1, key_params=params),
        lambda: cache.get(key_params=params),
        lambda: cache.key_for(key_params=params),
    ):
        with pytest.raises(TypeError, match="parameter names must be str"):
            call()
    assert cache.count() == 2
    assert_kept(cache)


def test_unhashable_parameter_values_say_what_to_do(cache):
    with pytest.raises(UnsupportedKeyValueError, match="__cache_key__") as excinfo:
        cache.put(1, callback=object())
    assert isinstance(excinfo.value, TypeError)
    assert excinfo.value.parameter == "callback"
    assert cache.count() == 2


BAD_CACHE_KEYS = [
    pytest.param("a\x00b", "must not contain NUL", id="nul"),
    pytest.param("k" * 1025, "hash long identifiers", id="too-long"),
    pytest.param("lone\ud800", "valid Unicode", id="lone-surrogate"),
    pytest.param("", "non-empty", id="empty"),
    pytest.param(5, "must be a str", id="int"),
]


@pytest.mark.parametrize(("key", "hint"), BAD_CACHE_KEYS)
def test_invalid_cache_keys_are_refused(tmp_path, cache, key, hint):
    before = files_under(tmp_path)
    for call in (
        lambda: cache.put(payload(4), cache_key=key),
        lambda: cache.get(cache_key=key),
        lambda: cache.exists(cache_key=key),
        lambda: cache.get_metadata(cache_key=key),
        lambda: cache.invalidate(cache_key=key),
        lambda: cache.touch(cache_key=key),
        lambda: cache.update_data(b"x", cache_key=key),
        lambda: cache.get_batch([{"cache_key": key}]),
    ):
        with pytest.raises(InvalidKeyError, match=hint) as excinfo:
            call()
        assert isinstance(excinfo.value, ValueError)
    assert files_under(tmp_path) == before
    assert_kept(cache)


@pytest.mark.parametrize("key", ["../../outside", "/etc/passwd", ".."])
def test_path_like_cache_keys_are_opaque(tmp_path, cache, key):
    outside = sorted(p.name for p in tmp_path.iterdir())
    assert cache.put(payload(5), cache_key=key) == key
    assert cache.get(cache_key=key) == payload(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == outside
    assert cache.invalidate(cache_key=key)
    assert_kept(cache)


@pytest.mark.parametrize(
    ("prefix", "hint"),
    [("ns\x00", "contains a NUL character"), ("ns\ud800", "valid Unicode text")],
    ids=["nul", "surrogate"],
)
def test_a_key_prefix_that_cannot_be_recorded_is_refused_on_put(cache, prefix, hint):
    with pytest.raises(InvalidEntryError, match=hint) as excinfo:
        cache.put(1, key_prefix=prefix, x=1)
    assert "['prefix']" in str(excinfo.value)
    assert cache.get(key_prefix=prefix, x=1) is None  # nothing was stored: a plain miss
    assert cache.count() == 2


# --------------------------------------------------------------------------- metadata

BAD_METADATA = [
    pytest.param({"x": object()}, "object is not JSON data", id="object"),
    pytest.param({"x": float("nan")}, "JSON cannot hold nan", id="nan"),
    pytest.param({"x": float("-inf")}, "JSON cannot hold -inf", id="-inf"),
    pytest.param({"x": {"a", "b"}}, "set is not JSON data", id="set"),
    pytest.param({"x": b"bytes"}, "bytes is not JSON data", id="bytes"),
    pytest.param({"x": 2**64}, "store it as a string", id="huge-int"),
    pytest.param({7: "int key"}, "object keys must be strings", id="int-key"),
    pytest.param({"x": {(1, 2): 1}}, "object keys must be strings", id="tuple-key"),
    pytest.param({"x": "nul\x00"}, "contains a NUL character", id="nul"),
    pytest.param({"x": "lone\udfff"}, "valid Unicode text", id="surrogate"),
    pytest.param(
        {"_cacheness": {"v": 99}}, "reserved for the cache's own facts; rename it", id="reserved"
    ),
    pytest.param(["owner", "ana"], "must be a dict", id="list"),
    pytest.param("owner=ana", "must be a dict", id="string"),
]


@pytest.mark.parametrize(("metadata", "hint"), BAD_METADATA)
def test_metadata_that_is_not_json_is_refused_and_nothing_changes(tmp_path, cache, metadata, hint):
    before = files_under(tmp_path)
    stats = cache.get_stats()
    for call in (
        lambda: cache.put(payload(6), metadata=metadata, fresh=1),
        lambda: cache.put({"overwritten": True}, metadata=metadata, **KEPT),
    ):
        with pytest.raises(InvalidEntryError, match=hint) as excinfo:
            call()
        assert isinstance(excinfo.value, ValueError)
    assert files_under(tmp_path) == before
    assert cache.get(fresh=1) is None
    assert cache.get_stats()["puts"] == stats["puts"]
    assert_kept(cache)


# --------------------------------------------------------------------------- filters

BAD_FILTERS = [
    ({"size": {"$regex": "."}}, "unknown operator"),
    ({"$where": "1 = 1"}, "unknown top-level operator"),
    ({"owner": "ana"}, "unknown field 'owner'"),
    ({"size": "large"}, "takes a number"),
    ({"created_at": "yesterday"}, "not an ISO-8601 timestamp"),
    ({"metadata.owner": {"$in": "ana"}}, "takes a list of values"),
    ({"metadata.owner": {"$eq": ["ana"]}}, "compare nested values with a dotted path"),
    ({"metadata.owner": "ana\x00"}, "contains a NUL character"),
    ({"metadata.o\\wner": "ana"}, "a backslash in a metadata path escapes"),
    ("owner = 'ana'", "a filter must be a mapping|takes a list of filter mappings"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_cache(request, tmp_path):
    """A cache on SQLite or on the real PostgreSQL server, and a raw reader of its table."""
    if request.param == "sqlite":
        made = make(tmp_path)
        index = tmp_path / "cache" / "index.sqlite"

        def read() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(index)
            try:
                return conn.execute(
                    "SELECT key, metadata FROM cacheness_entries ORDER BY key"
                ).fetchall()
            finally:
                conn.close()

    else:
        import psycopg
        from sqlalchemy.engine import make_url

        url = request.getfixturevalue("fresh_postgres_url")
        made = make(tmp_path, metadata_backend="postgresql", metadata_backend_options={"url": url})
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

        def read() -> list[tuple[Any, ...]]:
            with psycopg.connect(conninfo) as conn:
                return conn.execute(
                    "SELECT key, metadata::text FROM cacheness_entries ORDER BY key"
                ).fetchall()

    with made:
        yield made, read


def test_malformed_filters_are_filter_errors(sql_cache):
    cache, _ = sql_cache
    for bad, hint in BAD_FILTERS:
        for call in (
            lambda f=bad: cache.list_entries(filter=f),
            lambda f=bad: cache.count(filter=f),
            lambda f=bad: cache.delete_where(f),
            lambda f=bad: cache.query_meta(filter=f),
        ):
            with pytest.raises(FilterError, match=hint) as excinfo:
                call()
            assert isinstance(excinfo.value, ValueError)
    with pytest.raises(FilterError, match="cannot order by"):
        cache.list_entries(order_by="size; DROP TABLE cacheness_entries")
    assert cache.count() == 2
    assert_kept(cache)


INJECTIONS = [
    "x' OR '1'='1",
    "'; DROP TABLE cacheness_entries; --",
    "kept' --",
    "%",
    "_",
    "') OR 1=1 --",
]


def test_sql_in_values_and_paths_matches_nothing_and_drops_nothing(sql_cache):
    cache, read = sql_cache
    before = read()
    for evil in INJECTIONS:
        assert cache.get(experiment=evil, epoch=3) is None
        assert cache.query_meta(experiment=evil) == []
        assert cache.list_entries(filter={"metadata.owner": evil}) == []
        assert cache.list_entries(filter={f"metadata.{evil}": {"$exists": True}}) == []
        assert cache.count(filter={"key": {"$prefix": evil}}) == 0
        assert cache.delete_where({"metadata.owner": {"$in": [evil]}}) == 0
        assert cache.delete_matching(experiment=evil) == 0
        assert cache.delete_by_prefix(experiment=evil) == 0
        assert cache.invalidate(experiment=evil, epoch=3) is False
    assert read() == before
    assert_kept(cache)


# --------------------------------------------------------------------------- damaged blobs


def flip(data: bytes) -> bytes:
    at = len(data) // 2
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


DAMAGE: dict[str, Callable[[bytes, bytes], bytes]] = {
    "flipped-byte": lambda data, _: flip(data),
    "truncated": lambda data, _: data[: len(data) // 3],
    "other-valid-bytes": lambda _, other: other,
}


def _damage_and_read(cache: cacheness, damage: str, read, write, caplog) -> None:
    cache.put(payload(8), victim=1)
    cache.put(payload(9), twin=1)
    ref = cache.get_metadata(victim=1).blob_ref
    twin = read(cache.get_metadata(twin=1).blob_ref)
    write(ref, DAMAGE[damage](read(ref), twin))
    assert cache.get_stats()["errors"] == 0

    with caplog.at_level(logging.WARNING, logger="cacheness.cache"):
        assert cache.get(victim=1, default="fallback") == "fallback"  # never a wrong value
    stats = cache.get_stats()
    assert stats["errors"] == 1
    assert any("cannot be read back" in r.getMessage() for r in caplog.records)
    # the unreadable entry is removed, so the next call computes it again
    assert cache.get_metadata(victim=1) is None
    assert cache.get(twin=1) == payload(9)
    assert_kept(cache)


def _strict_read(cache: cacheness, damage: str, read, write) -> None:
    cache.put(payload(10), victim=2)
    ref = cache.get_metadata(victim=2).blob_ref
    write(ref, DAMAGE[damage](read(ref), payload(11)))
    with pytest.raises(IntegrityError, match="delete the entry and store it again"):
        cache.get(victim=2)
    with pytest.raises(IntegrityError):
        cache.get_batch([{"victim": 2}, KEPT])
    assert cache.get_metadata(victim=2) is not None  # strict keeps it for inspection
    assert cache.verify(victim=2) is False
    assert_kept(cache)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_blob_files_are_counted_misses_or_strict_errors(tmp_path, damage, caplog):
    def reader(root: Path) -> Callable[[str], bytes]:
        return lambda ref: (root / ref).read_bytes()

    def writer(root: Path) -> Callable[[str, bytes], None]:
        return lambda ref, data: (root / ref).write_bytes(data)

    with make(tmp_path) as normal:
        root = tmp_path / "cache" / "blobs"
        _damage_and_read(normal, damage, reader(root), writer(root), caplog)
    with make(tmp_path, "strict", strict=True) as strict:
        root = tmp_path / "strict" / "blobs"
        _strict_read(strict, damage, reader(root), writer(root))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_objects_in_s3_are_counted_misses_or_strict_errors(
    tmp_path, fresh_postgres_url, s3_bucket, damage, caplog
):
    client = s3_bucket.client()
    team = {
        "metadata_backend": "postgresql",
        "metadata_backend_options": {"url": fresh_postgres_url},
        "blob_backend": "s3",
        "blob_backend_options": {"bucket": s3_bucket.name, **s3_bucket.endpoint.client_options()},
    }

    def read(ref: str) -> bytes:
        return client.get_object(Bucket=s3_bucket.name, Key=ref)["Body"].read()

    def write(ref: str, data: bytes) -> None:
        client.put_object(Bucket=s3_bucket.name, Key=ref, Body=data)

    with make(tmp_path, **team) as normal:
        _damage_and_read(normal, damage, read, write, caplog)
        with make(tmp_path, "strict", strict=True, **team) as strict:
            _strict_read(strict, damage, read, write)


# --------------------------------------------------------------------------- damaged indexes


def test_a_truncated_sqlite_index_stops_the_cache_naming_the_file(tmp_path):
    make(tmp_path, "neighbour").close()
    neighbour_files = files_under(tmp_path / "neighbour")
    with make(tmp_path) as victim:
        for i in range(200):
            victim.put({"i": i, "pad": "p" * 300}, i=i)
    index = tmp_path / "cache" / "index.sqlite"
    truncated = index.read_bytes()[: index.stat().st_size // 2]
    index.write_bytes(truncated)
    for side in ("-wal", "-shm"):
        Path(f"{index}{side}").unlink(missing_ok=True)

    with pytest.raises(MetadataError, match="restore it or move it away") as excinfo:
        cacheness(cache_dir=str(tmp_path / "cache"))
    assert str(index) in str(excinfo.value)
    assert index.read_bytes() == truncated
    assert files_under(tmp_path / "neighbour") == neighbour_files
    with cacheness(cache_dir=str(tmp_path / "neighbour")) as again:
        assert_kept(again)


def test_a_sqlite_index_full_of_garbage_stops_the_cache(tmp_path):
    garbage = random.Random(3).randbytes(32_768)
    index = tmp_path / "cache" / "index.sqlite"
    index.parent.mkdir()
    index.write_bytes(garbage)
    with pytest.raises(MetadataError, match="not a SQLite database") as excinfo:
        cacheness(cache_dir=str(tmp_path / "cache"))
    assert str(index) in str(excinfo.value)
    assert index.read_bytes() == garbage


def test_a_hand_broken_json_index_stops_the_cache_and_is_not_overwritten(tmp_path):
    with make(tmp_path, metadata_backend="json") as cache:
        index = tmp_path / "cache" / "index.json"
        original = index.read_bytes()
        blobs = files_under(tmp_path / "cache" / "blobs")
        broken = original.replace(b"]}", b",]}")  # a trailing comma left by an editor
        index.write_bytes(broken)
        with pytest.raises(MetadataError, match="nothing was changed") as excinfo:
            cache.put(1, another=1)
        assert str(index) in str(excinfo.value)
        with pytest.raises(MetadataError, match="nothing was changed"):
            cache.get(**KEPT)

    with pytest.raises(MetadataError, match="move it away to start an empty index") as excinfo:
        cacheness(cache_dir=str(tmp_path / "cache"), metadata_backend="json")
    assert str(index) in str(excinfo.value)
    assert index.read_bytes() == broken
    assert files_under(tmp_path / "cache" / "blobs") == blobs

    index.write_bytes(original)
    with cacheness(cache_dir=str(tmp_path / "cache"), metadata_backend="json") as restored:
        assert_kept(restored)
        assert json.loads(index.read_bytes())["format"] == "cacheness.storage.metadata"


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"max_entries": "ten"}, "max_entries: Expected `int | null`, got `str`"),
        ({"max_entrys": 10}, "did you mean 'max_entries'"),
        ({"eviction_policy": "random"}, "eviction_policy"),
        ({"metadata": {"backend": 5}}, "metadata"),
        ({"blob": {"bucket_name": "b"}}, "did you mean 'bucket'"),
    ],
)
def test_config_with_wrong_types_or_unknown_keys_is_refused(tmp_path, options, hint):
    def open_cache() -> cacheness:
        return cacheness(
            config=load_config_from_dict({"cache_dir": str(tmp_path / "never"), **options})
        )

    with pytest.raises(ConfigError, match=hint) as excinfo:
        open_cache()
    assert isinstance(excinfo.value, ValueError)
    assert not (tmp_path / "never").exists()


# --------------------------------------------------------------------------- the docs page


def test_the_docs_page_examples_run(tmp_path, monkeypatch, capsys, docs_page):
    monkeypatch.chdir(tmp_path)
    page = docs_page("bad-input.md")
    assert len(page.blocks()) == 5
    page.run(module="bad_input_docs")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "b'kept'"
    assert [line.split(" - ")[0] for line in out[1:5]] == ["InvalidKeyError"] * 4
    assert out[5] == "Entry.metadata['loss']: JSON cannot hold nan"
    assert out[6] == "None"
    assert out[7].startswith("IntegrityError: entry ")
    assert out[8:11] == ["recompute", "1", "True True"]
    errors = [line.split(" - ")[0] for line in out[11:14]]
    assert errors == ["InvalidEntryError", "InvalidKeyError", "ConfigError"]
    assert out[14:] == ["[]"]
