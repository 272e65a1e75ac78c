"""Bad input, tried on purpose, against the storage layer.

Every case ends in a typed error whose message says what to do, or in a documented
miss, and the entries stored before still load. Ground truth is read around the store:
the blob files on disk, the rows of the SQLite file, the objects in the bucket (plain
boto3 over HTTP), the bytes of the JSON index, the tables in PostgreSQL.

Decoding forged payloads runs in a child process (``_forged_payloads.py``), so a crash
in a C extension would fail one test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import (
    MAX_KEY_LENGTH,
    BlobStore,
    Entry,
    FilesystemBlobBackend,
    JsonMetadataBackend,
    MemoryMetadataBackend,
    PostgresMetadataBackend,
    SqliteMetadataBackend,
)
from cacheness.storage.errors import (
    BlobNotFoundError,
    CacheError,
    ConfigError,
    FilterError,
    IntegrityError,
    InvalidBlobNameError,
    InvalidEntryError,
    InvalidKeyError,
    MetadataError,
    SerializationError,
    SignatureError,
)

FORGED_PAYLOADS = Path(__file__).with_name("_forged_payloads.py")


def payload(seed: int, size: int = 100_000) -> bytes:
    """Incompressible bytes: always a blob, never inline."""
    return random.Random(seed).randbytes(size)


SEEDED = {
    "small": {"inline": True},
    "blob": payload(1),
    "frame-ish": {"rows": list(range(3000)), "name": "x" * 5000},
}
SEEDED_METADATA = {"owner": "ana", "n": 1}


def seed(store: BlobStore) -> None:
    for key, value in SEEDED.items():
        store.put(value, key=key, metadata=SEEDED_METADATA)


def assert_seeded_intact(store: BlobStore) -> None:
    for key, value in SEEDED.items():
        assert store.get(key) == value
        assert store.get_metadata(key).metadata == SEEDED_METADATA


def assert_seeded_intact_but(store: BlobStore, gone: str) -> None:
    for key, value in SEEDED.items():
        if key != gone:
            assert store.get(key) == value


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (lock and SQLite side files left out) with its bytes."""
    side = ("-wal", "-shm", ".lock", ".locks")
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and not path.name.endswith(side)
    }


def sqlite_rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM cacheness_entries ORDER BY key").fetchall()
    finally:
        conn.close()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[BlobStore]:
    """A seeded sqlite + filesystem store under ``tmp_path / "store"``."""
    with BlobStore(tmp_path / "store") as store:
        seed(store)
        yield store


def ground_truth(store: BlobStore) -> tuple[list[tuple[Any, ...]], dict[str, bytes]]:
    """The rows of the SQLite index and the blob files, read without the store."""
    assert store.path is not None
    return sqlite_rows(store.path / "index.sqlite"), files_under(store.path / "blobs")


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "key",
    ["../../escape", "/etc/passwd", "..", "a/../../b", "C:\\Windows\\x", "~/.ssh/id_rsa", "./."],
)
def test_path_like_keys_are_opaque_and_write_nothing_outside(tmp_path: Path, local, key):
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    local.put(payload(7), key=key)
    assert local.get(key) == payload(7)
    entry = local.get_metadata(key)
    assert ".." not in entry.blob_ref.split("/")
    assert (local.path / "blobs" / entry.blob_ref).read_bytes() == payload(7)
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before
    assert [e.key for e in local.list_entries(prefix=key)] == [key]
    assert local.delete(key)
    assert_seeded_intact(local)


BAD_KEYS = [
    pytest.param("a\x00b", "must not contain NUL", id="nul"),
    pytest.param("k" * (MAX_KEY_LENGTH + 1), "hash long identifiers", id="too-long"),
    pytest.param("x" * 1_000_000, "hash long identifiers", id="megabyte"),
    pytest.param("lone\ud800", "valid Unicode", id="lone-surrogate"),
    pytest.param("", "non-empty", id="empty"),
    pytest.param(17, "must be a str", id="int"),
    pytest.param(b"bytes", "must be a str", id="bytes"),
]

KEY_OPERATIONS: dict[str, Callable[[BlobStore, Any], Any]] = {
    "put": lambda s, k: s.put(payload(9), key=k),
    "get": lambda s, k: s.get(k),
    "exists": lambda s, k: s.exists(k),
    "delete": lambda s, k: s.delete(k),
    "get_metadata": lambda s, k: s.get_metadata(k),
    "get_batch": lambda s, k: s.get_batch(["blob", k]),
    "copy-to": lambda s, k: s.copy("blob", k),
    "move-to": lambda s, k: s.move("blob", k),
    "update_metadata": lambda s, k: s.update_metadata(k, {"a": 1}),
    "update_data": lambda s, k: s.update_data(k, b"new"),
    "put_batch": lambda s, k: s.put_batch({"fine": 1, k: 2}),
    "delete_batch": lambda s, k: s.delete_batch(["small", k]),
}


@pytest.mark.parametrize(("key", "hint"), BAD_KEYS)
def test_invalid_keys_are_refused_by_every_operation(local, key, hint):
    before = ground_truth(local)
    for name, operation in KEY_OPERATIONS.items():
        with pytest.raises(InvalidKeyError, match=hint) as excinfo:
            operation(local, key)
        assert isinstance(excinfo.value, ValueError), name
    assert ground_truth(local) == before
    assert_seeded_intact(local)


def test_the_longest_key_is_accepted(local):
    key = "k" * MAX_KEY_LENGTH
    local.put(b"edge", key=key)
    assert local.get(key) == b"edge"


# --------------------------------------------------------------------------- blob names

UNSAFE_NAMES = [
    pytest.param("..", "'..' is not allowed", id="dotdot"),
    pytest.param("../outside", "'..' is not allowed", id="parent"),
    pytest.param("a/../../outside", "'..' is not allowed", id="inner-parent"),
    pytest.param("/tmp/outside", "absolute", id="absolute"),
    pytest.param("a//b", "empty segment", id="double-slash"),
    pytest.param("..\\outside", "backslashes", id="backslash"),
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param("lone\udc00", "not valid UTF-8", id="lone-surrogate"),
    pytest.param("s" * 256, "longer than 255", id="long-segment"),
    pytest.param("/".join(["d" * 200] * 6), "limit is 1024", id="long-name"),
    pytest.param(".cacheness-tmp-x", "reserved", id="reserved"),
]

BLOB_OPERATIONS: dict[str, Callable[[FilesystemBlobBackend, str], Any]] = {
    "write_bytes": lambda b, n: b.write_bytes(n, b"x"),
    "open_write": lambda b, n: b.open_write(n),
    "read_bytes": lambda b, n: b.read_bytes(n),
    "exists": lambda b, n: b.exists(n),
    "delete": lambda b, n: b.delete(n),
    "stat": lambda b, n: b.stat(n),
    "local_path": lambda b, n: b.local_path(n),
}


@pytest.mark.parametrize(("name", "hint"), UNSAFE_NAMES)
def test_blob_names_cannot_leave_the_root(tmp_path: Path, name, hint):
    root = tmp_path / "root" / "blobs"
    blobs = FilesystemBlobBackend(root)
    kept = blobs.write_bytes("keep", b"kept").ref
    for operation, call in BLOB_OPERATIONS.items():
        with pytest.raises(InvalidBlobNameError, match=hint) as excinfo:
            call(blobs, name)
        assert isinstance(excinfo.value, ValueError), operation
    assert files_under(tmp_path) == {f"root/blobs/{kept}": b"kept"}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the store that a symlink inside the blob root points to."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_bytes(b"not yours")
    return path


def test_a_symlinked_shard_directory_is_refused(local, outside):
    blob_root = local.path / "blobs"
    for _ in range(50):  # a shard of its own (blob names are random: 1 in 256 is shared)
        local.put(payload(3), key="victim")
        ref = local.get_metadata("victim").blob_ref
        shard, name = ref.split("/")
        if [path.name for path in (blob_root / shard).iterdir()] == [name]:
            break
    shutil.move(blob_root / shard / name, outside / name)
    (blob_root / shard).rmdir()
    (blob_root / shard).symlink_to(outside, target_is_directory=True)
    before = files_under(outside)

    # Reading through the index: refused, as the docs say (and no repair advice: the
    # directory is in the way, the entry is not damaged; repair keeps it).
    with pytest.raises(InvalidBlobNameError, match="outside the blob root") as excinfo:
        local.get("victim")
    assert "repair" not in str(excinfo.value)
    assert [(i.key, i.problem) for i in local.verify_integrity()] == [("victim", "unreadable")]
    assert local.repair(dry_run=True).entries_removed == []
    with pytest.raises(InvalidBlobNameError, match="refusing to follow"):
        local.blobs.write_bytes(shard + "0000", b"planted")
    with pytest.raises(InvalidBlobNameError, match="refusing to follow"):
        local.blobs.delete(ref)
    assert files_under(outside) == before
    assert_seeded_intact(local)


def test_a_symlinked_blob_file_is_never_followed(local, outside):
    local.put(payload(4), key="victim")
    ref = local.get_metadata("victim").blob_ref
    path = local.path / "blobs" / ref
    path.unlink()
    path.symlink_to(outside / "secret")
    # a symlink is not a blob: the entry's blob is missing (repair removes the entry)
    with pytest.raises(IntegrityError, match=r"missing; run BlobStore\.repair"):
        local.get("victim")
    for read in (local.blobs.read_bytes, local.blobs.stat, local.blobs.open_read):
        with pytest.raises(BlobNotFoundError, match="a symlink is there"):
            read(ref)
    assert local.blobs.exists(ref) is False
    assert local.blobs.delete(ref) is False
    for deep in (True, False):  # every view agrees: missing, the damage repair removes
        issues = local.verify_integrity(deep=deep)
        assert [(i.key, i.problem) for i in issues] == [("victim", "missing_blob")]
    report = local.repair(dry_run=False, orphan_min_age_seconds=0)
    assert report.entries_removed == ["victim"]
    assert not local.exists("victim")
    assert local.verify_integrity() == []
    assert (outside / "secret").read_bytes() == b"not yours"
    assert_seeded_intact(local)


# --------------------------------------------------------------------------- metadata


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"d": value}
    return value


BAD_METADATA = [
    pytest.param({"x": object()}, "object is not JSON data", id="object"),
    pytest.param({"x": float("nan")}, "JSON cannot hold nan", id="nan"),
    pytest.param({"x": float("inf")}, "JSON cannot hold inf", id="inf"),
    pytest.param({"x": [1, float("-inf")]}, r"\['x'\]\[1\]: JSON cannot hold -inf", id="-inf"),
    pytest.param({"x": {1, 2}}, "set is not JSON data", id="set"),
    pytest.param({"x": b"raw"}, "bytes is not JSON data", id="bytes"),
    pytest.param({"x": 2**64}, "does not fit in 64 bits; store it as a string", id="huge-int"),
    pytest.param({"x": -(2**63) - 1}, "does not fit in 64 bits", id="huge-negative"),
    pytest.param({1: "int key"}, "object keys must be strings", id="int-key"),
    pytest.param({"t": {("a",): 1}}, "object keys must be strings", id="tuple-key"),
    pytest.param({None: 1}, "object keys must be strings", id="none-key"),
    pytest.param({"nul\x00": 1}, "contains a NUL character", id="nul-key"),
    pytest.param({"x": "nul\x00"}, "contains a NUL character", id="nul-value"),
    pytest.param({"x": "lone\ud800"}, "valid Unicode text", id="surrogate-value"),
    pytest.param({"lone\udc00": 1}, "valid Unicode text", id="surrogate-key"),
    pytest.param(nested(70), "nested deeper than 64", id="too-deep"),
    pytest.param([("a", 1)], "metadata must be a dict", id="list"),
    pytest.param("owner=ana", "metadata must be a dict", id="string"),
]


@pytest.mark.parametrize("index", ["sqlite", "json"])
@pytest.mark.parametrize(("metadata", "hint"), BAD_METADATA)
def test_metadata_that_is_not_json_is_refused_and_changes_nothing(tmp_path, index, metadata, hint):
    with BlobStore(tmp_path / "store", metadata_backend=index) as store:
        seed(store)
        before = files_under(tmp_path)
        for name, operation in {
            "put-new": lambda: store.put(payload(5), key="new", metadata=metadata),
            "put-over": lambda: store.put(payload(5), key="blob", metadata=metadata),
            "put_batch": lambda: store.put_batch({"fine": 1, "new": 2}, metadata={"new": metadata}),
            "update_metadata": lambda: store.update_metadata("blob", metadata),
            "replace_metadata": lambda: store.update_metadata("blob", metadata, merge=False),
        }.items():
            with pytest.raises(InvalidEntryError, match=hint) as excinfo:
                operation()
            assert isinstance(excinfo.value, ValueError), name
        assert files_under(tmp_path) == before
        assert store.get("new") is None
        assert store.get("fine") is None
        assert_seeded_intact(store)


def test_metadata_at_the_limits_is_kept_exactly(local):
    edge = {"max": 2**63 - 1, "min": -(2**63), "deep": nested(60), "é日": "ok"}
    local.put(b"v", key="edge", metadata=edge)
    assert local.get_metadata("edge").metadata == edge


# --------------------------------------------------------------------------- filters


def _backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    if name == "memory":
        return MemoryMetadataBackend()
    if name == "json":
        return JsonMetadataBackend(tmp_path / "index.json")
    if name == "sqlite":
        return SqliteMetadataBackend(tmp_path / "index.sqlite")
    return PostgresMetadataBackend(request.getfixturevalue("fresh_postgres_url"))


BAD_FILTERS = [
    ({"size": {"$regex": "^1"}}, "unknown operator '\\$regex'"),
    ({"size": {"$where": "1=1"}}, "unknown operator"),
    ({"$where": "this.size > 1"}, "unknown top-level operator"),
    ({"sizes": 1}, "unknown field 'sizes'; known: key"),
    ({"metadata": "ml"}, "name a value inside metadata"),
    ({"metadata..x": 1}, "empty key in the metadata path"),
    ({"size": "big"}, "takes a number"),
    ({"size": True}, "takes a number"),
    ({"size": {"$gt": float("nan")}}, "finite number"),
    ({"size": 2**64}, "64-bit integer range"),
    ({"created_at": 5}, "timezone-aware datetime or an ISO-8601 string"),
    ({"created_at": {"$gt": "2026-01-01T00:00:00"}}, "has no UTC offset"),
    ({"created_at": {"$gt": "yesterday"}}, "not an ISO-8601 timestamp"),
    ({"key": {"$in": "abc"}}, "takes a list of values"),
    ({"key": 5}, "takes a string"),
    ({"metadata.x": {"$eq": {"a": 1}}}, "compare nested values with a dotted path"),
    ({"metadata.x": [1, 2]}, "compare nested values with a dotted path"),
    ({"metadata.x": {"$exists": "yes"}}, "takes True or False"),
    ({"size": {"$exists": True}}, "applies to metadata paths only"),
    ({"metadata.x": {"team": "a"}}, "expected operators such as '\\$eq'"),
    ({"metadata.x": {}}, "empty operator mapping"),
    ({"$or": []}, "non-empty list of filters"),
    ({"$or": {"key": "a"}}, "non-empty list of filters"),
    ({"$not": ["key"]}, "takes a filter mapping"),
    ({"key": "a\x00"}, "contains a NUL character"),
    ({"metadata.x": {"$prefix": "\x00"}}, "contains a NUL character"),
    ({"metadata.x": "lone\ud800"}, "not valid Unicode text"),
    ({"metadata.lone\ud800": 1}, "not valid Unicode text"),
    ({"metadata.a\\b": 1}, "a backslash in a metadata path escapes a dot or a backslash"),
    ({"metadata.a\\": 1}, "a backslash in a metadata path escapes"),
    ({1: "a"}, "field names must be strings"),
    ("key = 'a' OR 1=1", "a filter must be a mapping"),
    (["key", "a"], "a filter must be a mapping"),
]


@pytest.mark.parametrize("backend_name", ["memory", "json", "sqlite", "postgresql"])
def test_malformed_filters_are_filter_errors_on_every_backend(tmp_path, request, backend_name):
    backend = _backend(backend_name, tmp_path, request)
    with backend:
        backend.put(Entry.new("a", size=10, metadata={"x": 1, "team": "ml"}))
        for bad, hint in BAD_FILTERS:
            for name, call in {
                "query": lambda f=bad: list(backend.query(f)),
                "count": lambda f=bad: backend.count(f),
                "delete_where": lambda f=bad: backend.delete_where(f),
            }.items():
                with pytest.raises(FilterError, match=hint) as excinfo:
                    call()
                assert isinstance(excinfo.value, ValueError), (name, bad)
        for order_by in ("sizes", "metadata", "metadata.x\\y", "content_hash"):
            with pytest.raises(FilterError, match=r"order by|a backslash in a metadata path"):
                list(backend.query(order_by=order_by))
        # keys with quotes and control characters are names like any other: data, not code
        for path in ('metadata.a") OR 1=1 --', "metadata.a\nb", 'metadata.x"; DROP TABLE t; --'):
            assert list(backend.query({path: 1})) == []
            assert backend.delete_where({path: 1}) == []
            assert [e.key for e in backend.query(order_by=path)] == ["a"]
        for limit, offset in ((-1, 0), (None, -5), ("10", 0), (True, 0)):
            with pytest.raises(FilterError, match=r"limit|offset"):
                list(backend.query(limit=limit, offset=offset))
        assert [(e.key, e.metadata) for e in backend.query()] == [("a", {"x": 1, "team": "ml"})]


INJECTIONS = [
    "x' OR '1'='1",
    "'; DROP TABLE cacheness_entries; --",
    "a'); DELETE FROM cacheness_entries; --",
    "%",
    "_",
    "*",
    "$.team",
    "1 OR 1=1",
    "') UNION SELECT key FROM cacheness_entries --",
]


def _sql_ground_truth(backend_name: str, tmp_path: Path, request) -> Callable[[], Any]:
    """A function returning (tables, rows of cacheness_entries), read with a plain driver."""
    if backend_name == "sqlite":

        def sqlite_truth() -> Any:
            conn = sqlite3.connect(tmp_path / "index.sqlite")
            try:
                tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                rows = conn.execute("SELECT key, metadata FROM cacheness_entries ORDER BY key")
                return sorted(t for (t,) in tables), rows.fetchall()
            finally:
                conn.close()

        conn = sqlite3.connect(tmp_path / "index.sqlite")
        with conn:
            conn.execute("CREATE TABLE sentinel (x INTEGER)")
        conn.close()
        return sqlite_truth

    import psycopg
    from sqlalchemy.engine import make_url

    url = request.getfixturevalue("fresh_postgres_url")
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE sentinel (x integer)")

    def postgres_truth() -> Any:
        with psycopg.connect(conninfo) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            ).fetchall()
            rows = conn.execute(
                "SELECT key, metadata::text FROM cacheness_entries ORDER BY key"
            ).fetchall()
            return sorted(t for (t,) in tables), rows

    return postgres_truth


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_sql_in_filter_values_and_paths_matches_nothing_and_drops_nothing(
    tmp_path, request, backend_name
):
    backend = _backend(backend_name, tmp_path, request)
    with backend:
        for key in ("safe", "other"):
            backend.put(Entry.new(key, metadata={"team": key, "a'b": "quoted", "n": 1}))
        truth = _sql_ground_truth(backend_name, tmp_path, request)
        before = truth()
        assert {"cacheness_entries", "sentinel"} <= set(before[0])
        for evil in INJECTIONS:
            filters = [
                {"key": evil},
                {"key": {"$prefix": evil}},
                {"key": {"$in": [evil, evil + "'"]}},
                {"metadata.team": evil},
                {"metadata.team": {"$gt": evil, "$lt": evil + "z"}},
                {"metadata.team": {"$prefix": evil}},
                {f"metadata.{evil}": 1},
                {f"metadata.{evil}": {"$exists": True}},
                {"$or": [{"key": evil}, {"metadata.team": {"$in": [evil]}}]},
            ]
            for bad in filters:
                assert list(backend.query(bad)) == [], bad
                assert backend.count(bad) == 0, bad
                assert backend.delete_where(bad) == [], bad
            assert backend.delete_prefix(evil) == []
            ordered = [e.key for e in backend.query(order_by=f"metadata.{evil}")]
            assert ordered == ["other", "safe"]
        assert [e.key for e in backend.query({"metadata.a'b": "quoted"})] == ["other", "safe"]
        assert truth() == before


# --------------------------------------------------------------------------- damaged blobs

DAMAGE: dict[str, Callable[[bytes, bytes], bytes]] = {
    "flipped-byte": lambda data, _: _flip(data, len(data) // 3),
    "flipped-last-byte": lambda data, _: _flip(data, len(data) - 1),
    "truncated": lambda data, _: data[: len(data) // 2],
    "one-byte-short": lambda data, _: data[:-1],
    "one-byte-longer": lambda data, _: data + b"\x00",
    "emptied": lambda data, _: b"",
    "other-valid-bytes-same-length": lambda data, other: other,
}


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


VALUES: dict[str, Any] = {
    "raw": payload(11),
    "plain": {"rows": list(range(4000)), "name": "y" * 4000},
    "text": "line of text\n" * 3000,
    "pickled": [complex(i, -i) for i in range(3000)],
}


def _twin(value: Any) -> Any:
    """Another valid value of the same kind whose stored bytes have the same length."""
    if isinstance(value, bytes):
        return payload(12)
    if isinstance(value, str):
        return value.replace("line", "LINE")
    if isinstance(value, dict):
        return {**value, "name": "z" * 4000}
    return [complex(-i, i) for i in range(3000)]


def _check_damage(store: BlobStore, damage: str, read: Callable[[str], bytes], write) -> None:
    """Store VALUES and their twins, damage every blob, expect IntegrityError for each."""
    refs = {}
    for kind, value in VALUES.items():
        store.put(value, key=kind, metadata={"kind": kind})
        store.put(_twin(value), key=f"{kind}-twin")
        refs[kind] = store.get_metadata(kind).blob_ref
        assert refs[kind], f"{kind} must be a blob, not inline"
    for kind, ref in refs.items():
        twin_ref = store.get_metadata(f"{kind}-twin").blob_ref
        original, twin = read(ref), read(twin_ref)
        if damage == "other-valid-bytes-same-length":
            assert len(twin) == len(original), kind
            assert twin != original, kind
        write(ref, DAMAGE[damage](original, twin))
    for kind in VALUES:
        with pytest.raises(IntegrityError, match=f"entry '{kind}'") as excinfo:
            store.get(kind)
        assert "delete the entry and store it again" in str(excinfo.value)
        assert store.get_metadata(kind).metadata == {"kind": kind}
        assert store.get(f"{kind}-twin") == _twin(VALUES[kind])
    with pytest.raises(IntegrityError):
        store.get_batch(["raw-twin", "raw"])
    assert {issue.key for issue in store.verify_integrity()} == set(VALUES)
    assert_seeded_intact(store)


def _options(damage: str) -> dict[str, Any]:
    """Blobs for every value; uncompressed when a same-length twin is needed."""
    same_length = damage == "other-valid-bytes-same-length"
    return {"inline_threshold": 0, "serialization": {"codec": "none"} if same_length else None}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_blob_files_on_disk_raise_integrity_errors(tmp_path, damage):
    blob_root = tmp_path / "store" / "blobs"
    with BlobStore(tmp_path / "store", **_options(damage)) as store:
        seed(store)
        _check_damage(
            store, damage, lambda ref: (blob_root / ref).read_bytes(), _write_file(blob_root)
        )


def _write_file(root: Path) -> Callable[[str, bytes], None]:
    def write(ref: str, data: bytes) -> None:
        path = root / ref
        stat = path.stat()
        path.write_bytes(data)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a careful vandal

    return write


def s3_store(tmp_path: Path, s3_bucket: Any, **options: Any) -> BlobStore:
    """A SQLite index over blobs in the test bucket (the index is the only writer)."""
    return BlobStore(
        tmp_path / "store",
        blob_backend="s3",
        blob_options={"bucket": s3_bucket.name, **s3_bucket.endpoint.client_options()},
        allow_unsafe_pairing=True,
        **options,
    )


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_objects_in_s3_raise_integrity_errors(tmp_path, s3_bucket, damage):
    client = s3_bucket.client()

    def read(ref: str) -> bytes:
        return client.get_object(Bucket=s3_bucket.name, Key=ref)["Body"].read()

    def write(ref: str, data: bytes) -> None:
        client.put_object(Bucket=s3_bucket.name, Key=ref, Body=data)

    with s3_store(tmp_path, s3_bucket, **_options(damage)) as store:
        seed(store)
        _check_damage(store, damage, read, write)


class _Tripwire:
    """Unpickling this touches a file: proof that the bytes were decoded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def test_a_swapped_pickle_in_s3_is_never_unpickled(tmp_path, s3_bucket):
    """Bytes that fail their hash never reach pickle, even when they are a valid payload."""
    marker = tmp_path / "unpickled"
    client = s3_bucket.client()
    with s3_store(tmp_path, s3_bucket, inline_threshold=0) as store:
        seed(store)
        store.put(_Tripwire(str(marker)), key="trap", handler="objects")
        trap = client.get_object(Bucket=s3_bucket.name, Key=store.get_metadata("trap").blob_ref)
        forged = trap["Body"].read()
        assert not marker.exists()  # pickling does not call it; unpickling would
        label = next(
            n for n in range(1, 400) if _objects_size(store, "v" * n) == len(forged)
        )  # a harmless value whose stored payload has exactly the forged length
        store.put("v" * label, key="victim", handler="objects")
        victim = store.get_metadata("victim")
        client.put_object(Bucket=s3_bucket.name, Key=victim.blob_ref, Body=forged)

        with pytest.raises(IntegrityError, match="entry 'victim'"):
            store.get("victim")
        assert not marker.exists()
        assert_seeded_intact(store)


def _objects_size(store: BlobStore, value: str) -> int:
    store.put(value, key="probe", handler="objects")
    return store.get_metadata("probe").size


def test_forged_compressed_headers_never_crash_the_decoders(tmp_path, s3_bucket):
    """Forged Blosc2/zstd/Arrow/Parquet headers, on disk and in S3, decoded in a child."""
    s3 = {"bucket": s3_bucket.name, **s3_bucket.endpoint.client_options()}
    child = subprocess.run(
        [sys.executable, str(FORGED_PAYLOADS), str(tmp_path), json.dumps(s3)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert child.returncode == 0, f"the decoding child died\n{child.stderr[-4000:]}"
    results = json.loads(child.stdout.splitlines()[-1])
    assert set(results) == {"filesystem", "s3"}

    for place, outcomes in results.items():
        assert len(outcomes) > 80, place
        for case, outcome in outcomes.items():
            if case.endswith("/kept"):
                # the index still holds the real hash: caught before any decoding result
                assert outcome == "IntegrityError", (place, case, outcome)
            else:
                # the forger also rewrote the hash: the decoders must stay typed and alive;
                # a payload body the codec does not checksum may decode to other data
                assert outcome in {"IntegrityError", "SerializationError", "equal"} or (
                    outcome == "different" and case.split("/")[1] == "body-flipped"
                ), (place, case, outcome)
    compressed_headers = [
        outcome
        for case, outcome in results["s3"].items()
        if case.endswith("/rehashed") and case.split("/")[0] in ("numpy-blosc2", "bytes-zstd")
        if "body" not in case and "version" not in case
    ]
    assert compressed_headers
    assert set(compressed_headers) == {"IntegrityError"}


def test_the_forgery_child_reports_untyped_errors(tmp_path):
    """The child's outcome labels: a typed error by name, anything else marked untyped."""
    sys.path.insert(0, str(FORGED_PAYLOADS.parent))
    try:
        import _forged_payloads as child
    finally:
        sys.path.remove(str(FORGED_PAYLOADS.parent))

    def untyped() -> Any:
        raise OSError("boom")

    def typed() -> Any:
        raise IntegrityError("bad")

    assert child._outcome(untyped, 1, int.__eq__).startswith("untyped:OSError")
    assert child._outcome(typed, 1, int.__eq__) == "IntegrityError"
    assert child._outcome(lambda: 2, 1, lambda a, b: a == b) == "different"
    assert pickle.loads(pickle.dumps(child._Point(1, "a"))) == child._Point(1, "a")


# --------------------------------------------------------------------------- damaged indexes


@pytest.fixture
def sqlite_bytes(tmp_path: Path) -> bytes:
    """The bytes of a closed SQLite index holding 300 entries (WAL checkpointed)."""
    with BlobStore(tmp_path / "source") as store:
        seed(store)
        store.put_batch({f"k{i:03d}": {"i": i, "pad": "p" * 200} for i in range(300)})
    path = tmp_path / "source" / "index.sqlite"
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return path.read_bytes()


@pytest.fixture
def neighbour(tmp_path: Path) -> Callable[[], None]:
    """Another store in the same parent directory; yields a check that it is untouched."""
    with BlobStore(tmp_path / "neighbour") as store:
        seed(store)
        before = ground_truth(store)

    def check() -> None:
        with BlobStore(tmp_path / "neighbour") as again:
            assert ground_truth(again) == before
            assert_seeded_intact(again)

    return check


@pytest.mark.parametrize("keep", [50, 100, 4096, 0.5, -4096])
def test_a_truncated_sqlite_index_fails_to_open_naming_the_file(
    tmp_path, sqlite_bytes, neighbour, keep
):
    size = int(len(sqlite_bytes) * keep) if isinstance(keep, float) else keep
    damaged = sqlite_bytes[:size]
    path = tmp_path / "damaged" / "index.sqlite"
    path.parent.mkdir()
    path.write_bytes(damaged)
    for opener in (lambda: BlobStore(path.parent), lambda: SqliteMetadataBackend(path)):
        with pytest.raises(MetadataError, match="restore it or move it away") as excinfo:
            opener()
        assert str(path) in str(excinfo.value)
    assert path.read_bytes() == damaged
    assert not (path.parent / "blobs").exists() or files_under(path.parent / "blobs") == {}
    neighbour()


def test_a_zero_byte_sqlite_file_is_an_empty_index(tmp_path, neighbour):
    """Documented: SQLite reads an empty file as an empty database (a first open makes one)."""
    path = tmp_path / "empty" / "index.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"")
    with BlobStore(path.parent) as store:
        assert store.count() == 0
        store.put(b"works", key="k")
        assert store.get("k") == b"works"
    neighbour()


@pytest.mark.parametrize("header", [b"", b"SQLite format 3\x00"], ids=["garbage", "magic+garbage"])
def test_a_sqlite_file_full_of_garbage_fails_to_open(tmp_path, neighbour, header):
    path = tmp_path / "garbage" / "index.sqlite"
    path.parent.mkdir()
    garbage = header + random.Random(5).randbytes(64 * 1024)
    path.write_bytes(garbage)
    with pytest.raises(MetadataError, match="not a SQLite database") as excinfo:
        BlobStore(path.parent)
    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == garbage
    neighbour()


def test_garbage_pages_inside_a_sqlite_index_fail_reads_not_the_process(tmp_path, sqlite_bytes):
    damaged = bytearray(sqlite_bytes)
    damaged[8192:24576] = random.Random(6).randbytes(16384)
    path = tmp_path / "pages" / "index.sqlite"
    path.parent.mkdir()
    path.write_bytes(bytes(damaged))
    # The schema pages are intact, so it opens; reads that reach a damaged page fail.
    with BlobStore(path.parent) as store:
        errors = []
        for i in range(300):
            try:
                entry = store.get_metadata(f"k{i:03d}")
            except MetadataError as exc:
                errors.append(str(exc))
            else:
                assert entry is None or entry.key == f"k{i:03d}"
        assert errors
        assert all(str(path) in e and "restore it or move it away" in e for e in errors)
        with pytest.raises(MetadataError, match="malformed"):
            store.list_entries(filter={"metadata.i": {"$gte": 0}})
    assert path.read_bytes() == bytes(damaged)


VALID_JSON_INDEX_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) - 7],
    "trailing-comma": lambda data: data.replace(b"]}", b",]}"),
    "nan": lambda data: data.replace(b'"owner":"ana"', b'"owner":NaN', 1),
    "top-level-list": lambda data: b"[" + data + b"]",
    "binary-junk": lambda data: b"\xff\xfe\x00junk" + data,
    "merge-conflict": lambda data: b"<<<<<<< HEAD\n" + data + b"\n=======\n{}\n>>>>>>> other\n",
    "missing-field": lambda data: data.replace(b'"created_at"', b'"made_at"', 1),
    "wrong-type": lambda data: data.replace(b'"size":', b'"size":"big",' + b'"x":', 1),
    "other-format": lambda data: data.replace(b"cacheness.storage.metadata", b"someone.else"),
    "newer-version": lambda data: data.replace(b'"version":1', b'"version":99'),
    "bad-key": lambda data: data.replace(b'"key":"small"', b'"key":""', 1),
}


@pytest.mark.parametrize("edit", list(VALID_JSON_INDEX_EDITS))
def test_a_hand_broken_json_index_is_reported_and_never_overwritten(tmp_path, edit):
    root = tmp_path / "store"
    with BlobStore(root, metadata_backend="json") as store:
        seed(store)
        index = root / "index.json"
        original = index.read_bytes()
        broken = VALID_JSON_INDEX_EDITS[edit](original)
        assert broken != original
        blobs = files_under(root / "blobs")
        index.write_bytes(broken)

        # the store that is already open notices on its next call
        for name, call in {
            "get": lambda: store.get("blob"),
            "put": lambda: store.put(b"new", key="new"),
            "count": lambda: store.count(),
            "delete": lambda: store.delete("blob"),
        }.items():
            with pytest.raises(MetadataError, match=r"upgrade|nothing was changed") as excinfo:
                call()
            assert str(index) in str(excinfo.value), name
        # so does a new one, at open
        with pytest.raises(MetadataError, match=r"upgrade|move it away") as excinfo:
            BlobStore(root, metadata_backend="json")
        assert str(index) in str(excinfo.value)
        assert index.read_bytes() == broken
        assert files_under(root / "blobs") == blobs

        index.write_bytes(original)  # restored from a backup: everything is back
        assert_seeded_intact(store)
    with BlobStore(root, metadata_backend="json") as again:
        assert_seeded_intact(again)


def test_a_tampered_blob_reference_in_the_index_is_refused(tmp_path):
    root = tmp_path / "store"
    with BlobStore(root, metadata_backend="json", inline_threshold=0) as store:
        seed(store)
    index = root / "index.json"
    document = json.loads(index.read_bytes())
    for entry in document["entries"]:
        if entry["key"] == "blob":
            entry["blob_ref"] = "../../../etc/passwd"
    index.write_text(json.dumps(document))
    signed = BlobStore(root, metadata_backend="json")
    with pytest.raises(SignatureError):  # signing on: refused before the reference is used
        signed.get("blob")
    signed.close()
    with BlobStore(root, metadata_backend="json", signing=False) as store:
        # InvalidBlobNameError, as the docs say, and advice that repair can follow
        with pytest.raises(InvalidBlobNameError, match=r"'\.\.' is not allowed") as excinfo:
            store.get("blob")
        assert isinstance(excinfo.value, CacheError)
        assert "index was edited or damaged" in str(excinfo.value)
        assert "repair(dry_run=False) removes the entry" in str(excinfo.value)
        assert store.get("small") == SEEDED["small"]
        issues = store.verify_integrity()
        assert [(i.key, i.problem) for i in issues] == [("blob", "invalid_ref")]
        report = store.repair(dry_run=False, orphan_min_age_seconds=0)
        assert report.entries_removed == ["blob"]
        assert not store.exists("blob")
        assert store.verify_integrity() == []
        assert_seeded_intact_but(store, "blob")


# --------------------------------------------------------------------------- arguments


def _store_calls(store: Any) -> dict[str, tuple[Callable[[], Any], type[CacheError], str]]:
    """Public BlobStore calls with a wrongly typed argument: (call, error, hint)."""
    return {
        "read(None)": (lambda: store.read(None), InvalidEntryError, "get_metadata returns None"),
        "read('blob')": (lambda: store.read("blob"), InvalidEntryError, "call get\\(key\\)"),
        "read_current(3)": (lambda: store.read_current(3), InvalidEntryError, "takes an Entry"),
        "lookup(accept=1)": (lambda: store.lookup("blob", accept=1), ConfigError, "accept"),
        "read_current(accept)": (
            lambda: store.read_current(store.get_metadata("blob"), accept="yes"),
            ConfigError,
            "accept",
        ),
        "get_batch('abc')": (lambda: store.get_batch("abc"), InvalidKeyError, "pass \\['abc'\\]"),
        "get_batch(5)": (lambda: store.get_batch(5), InvalidKeyError, "iterable of keys"),
        "delete_batch('blob')": (lambda: store.delete_batch("blob"), InvalidKeyError, "single"),
        "delete_batch(None)": (lambda: store.delete_batch(None), InvalidKeyError, "iterable"),
        "verify_integrity(7)": (lambda: store.verify_integrity(7), InvalidKeyError, "iterable"),
        "record_access(None)": (lambda: store.record_access(None), InvalidKeyError, "iterable"),
        "record_access(at=1.5)": (
            lambda: store.record_access(["blob"], at=1.5),
            InvalidEntryError,
            "timezone-aware datetime",
        ),
        "put_batch(None)": (lambda: store.put_batch(None), InvalidKeyError, "pairs"),
        "put_batch(['ab'])": (lambda: store.put_batch([("a",)]), InvalidKeyError, "1 value"),
        "put_batch(metadata=1)": (
            lambda: store.put_batch({"a": 1}, metadata=1),
            InvalidEntryError,
            "key: metadata",
        ),
        "update_batch(3)": (lambda: store.update_batch(3), InvalidEntryError, "key: metadata"),
        "update_metadata([k])": (
            lambda: store.update_metadata(["blob"], {"a": 1}),
            InvalidKeyError,
            "str",
        ),
        "put(handler=[])": (lambda: store.put(1, key="h", handler=[]), ConfigError, "handler"),
        "put(max_size=b'')": (
            lambda: store.put(1, key="h", max_size=b"1"),
            ConfigError,
            "max_size",
        ),
        "list(metadata_filter=3)": (lambda: store.list(metadata_filter=3), FilterError, "mapping"),
        "count(metadata_filter=[])": (
            lambda: store.count(metadata_filter=[1]),
            FilterError,
            "mapping",
        ),
        "find_orphaned_blobs(None)": (
            lambda: store.find_orphaned_blobs(min_age_seconds=None),
            ConfigError,
            "seconds",
        ),
        "repair(age=1e30)": (
            lambda: store.repair(orphan_min_age_seconds=1e30),
            ConfigError,
            "seconds",
        ),
        "delete_by_prefix(None)": (lambda: store.delete_by_prefix(None), InvalidKeyError, "clear"),
    }


@pytest.mark.parametrize("call", list(_store_calls(None)))
def test_a_wrongly_typed_argument_is_a_typed_error_saying_what_to_pass(local, call):
    before = ground_truth(local)
    operation, error, hint = _store_calls(local)[call]
    with pytest.raises(error, match=hint):
        operation()
    assert ground_truth(local) == before  # nothing changed
    assert_seeded_intact(local)


@pytest.mark.parametrize(
    "options",
    [
        {"path": 17},
        {"path": ""},
        {"path": "x" * 5000},
        {"clock": 3},
        {"serialization": 5},
        {"inline_threshold": -1},
    ],
    ids=["path-int", "path-empty", "path-too-long", "clock", "serialization", "threshold"],
)
def test_bad_store_options_are_config_errors(tmp_path, options, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path must not create anything here either
    with pytest.raises(ConfigError):
        BlobStore(**{"path": tmp_path / "s", **options})
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "s"])


def test_a_clock_that_returns_no_datetime_is_a_config_error(tmp_path):
    with BlobStore(tmp_path, clock=lambda: 1_700_000_000.0) as store:
        with pytest.raises(ConfigError, match="timezone-aware datetime"):
            store.put(1, key="k")
        assert not store.exists("k")


@pytest.mark.parametrize("offset", [2**63, 10**30])
def test_an_offset_past_any_index_is_an_empty_page_not_an_overflow(local, offset):
    assert local.list_entries(offset=offset) == []
    assert list(local.iter_entries(order_by="size", descending=True, offset=offset)) == []


def test_a_limit_past_any_index_means_no_limit(local):
    assert [e.key for e in local.list_entries(limit=10**30)] == sorted(SEEDED)
    assert [e.key for e in local.list_entries(limit=10**30, offset=1)] == sorted(SEEDED)[1:]


def _blob_calls(blobs: Any, ref: str, tmp: Path) -> dict[str, tuple[Callable[[], Any], type]]:
    return {
        "delete_many('ref')": (lambda: blobs.delete_many(ref), InvalidBlobNameError),
        "delete_many(None)": (lambda: blobs.delete_many(None), InvalidBlobNameError),
        "iter_refs(None)": (lambda: list(blobs.iter_refs(None)), InvalidBlobNameError),
        "iter_refs(b'')": (lambda: list(blobs.iter_refs(b"ab")), InvalidBlobNameError),
        "write_bytes(None)": (lambda: blobs.write_bytes("n", None), SerializationError),
        "write_bytes(3)": (lambda: blobs.write_bytes("n", 3), SerializationError),
        "write_bytes(10**30)": (lambda: blobs.write_bytes("n", 10**30), SerializationError),
        "write_bytes('text')": (lambda: blobs.write_bytes("n", "text"), SerializationError),
        "verify(None)": (lambda: blobs.verify(ref, None), ConfigError),
        "write_from_file(1)": (lambda: blobs.write_from_file("n", 1), ConfigError),
        "write_from_file(None)": (lambda: blobs.write_from_file("n", None), ConfigError),
        "read_to_file(2)": (lambda: blobs.read_to_file(ref, 2), ConfigError),
        "read_to_file('')": (lambda: blobs.read_to_file(ref, ""), ConfigError),
        "read_to_file(dir)": (lambda: blobs.read_to_file(ref, tmp), ConfigError),
        "cleanup_temp_files(None)": (lambda: blobs.cleanup_temp_files(None), ConfigError),
        "cleanup_temp_files(-1)": (lambda: blobs.cleanup_temp_files(-1), ConfigError),
    }


BLOB_KINDS = ["filesystem", "memory", "tiered", "failover", "s3"]


@pytest.mark.parametrize("kind", BLOB_KINDS)
def test_blob_backends_refuse_wrongly_typed_arguments(tmp_path, request, kind):
    from cacheness.storage import (
        FailoverBlobBackend,
        MemoryBlobBackend,
        S3BlobBackend,
        TieredBlobBackend,
    )

    if kind == "filesystem":
        blobs: Any = FilesystemBlobBackend(tmp_path / "root")
    elif kind == "memory":
        blobs = MemoryBlobBackend()
    elif kind == "tiered":
        blobs = TieredBlobBackend(MemoryBlobBackend(), tmp_path / "tiered")
    elif kind == "failover":
        blobs = FailoverBlobBackend(MemoryBlobBackend(), MemoryBlobBackend())
    else:
        bucket = request.getfixturevalue("s3_bucket")
        blobs = S3BlobBackend(bucket.name, **bucket.endpoint.client_options())
    ref = blobs.write_bytes("keep", b"kept").ref
    out = tmp_path / "out"
    out.mkdir()
    stdout = os.dup(1)  # an int path must never be taken as a file descriptor
    try:
        for label, (call, error) in _blob_calls(blobs, ref, out).items():
            with pytest.raises(error) as raised:
                call()
            assert isinstance(raised.value, CacheError), label
        os.fstat(1)  # still open
    finally:
        os.close(stdout)
    assert blobs.read_bytes(ref) == b"kept"
    assert sorted(blobs.iter_refs()) == [ref]
    assert list(out.iterdir()) == []
    blobs.close()
