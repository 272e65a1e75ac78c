"""The on-disk format is a contract: stores written by the first release still open.

The committed golden stores next to this file were written once by ``make_golden.py``
(see its docstring). Each test works on a *copy* in a temporary directory (the committed
files are never modified), opens it with the current code and checks that every value
reads back exactly (``golden_values.py`` rebuilds them from fixed seeds), that every
entry is the one recorded in the store's ``manifest.json``, that nothing is damaged or
orphaned, that listing and filters find what they should, and that the store stays
writable. The postgresql store is a ``pg_dump`` restored into a fresh schema.

A failure here means the code no longer reads what an earlier release wrote: add a
migration (``cacheness.storage._metadata._migrations``) instead of rewriting the stores.

The second half pins the format versions: where each persistent backend records its
version, that a store stamped with a newer version is refused (``FormatVersionError``),
and that an older one goes through the registered migrations.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import (
    BlobStore,
    Entry,
    FormatVersionError,
    MetadataError,
    PostgresMetadataBackend,
    SignatureError,
    SqliteMetadataBackend,
)
from cacheness.storage._metadata import json as json_backend
from cacheness.storage._metadata._migrations import FormatMigrations
from cacheness.storage._metadata._sqlrows import SCHEMA_VERSIONS

GOLDEN = Path(__file__).resolve().parent
SQL_BACKENDS = (SqliteMetadataBackend, PostgresMetadataBackend)
LOCAL_STORES = ("sqlite_fs", "json_fs", "content_addressed")
STORES = (*LOCAL_STORES, "postgresql")


def _load_values() -> Any:
    name = "cacheness_golden_values"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GOLDEN / "golden_values.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


values = _load_values()


def manifest_of(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name / "manifest.json").read_text(encoding="utf-8"))


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module", autouse=True)
def committed_stores_stay_untouched() -> Iterator[None]:
    before = {name: _digest(GOLDEN / name) for name in STORES}
    yield
    assert {name: _digest(GOLDEN / name) for name in STORES} == before


# --------------------------------------------------------------------------- opening


def pg_conninfo(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def restore_postgres_dump(url: str, dump: Path, dumped_schema: str) -> str:
    """Run the plain-SQL ``pg_dump`` in the schema ``url`` searches; return that schema."""
    import psycopg

    text = "\n".join(
        line  # psql meta-commands (\restrict) are not SQL; comments name the old schema
        for line in dump.read_text(encoding="utf-8").splitlines()
        if not line.startswith(("\\", "--"))
    )
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        (schema,) = conn.execute("SELECT current_schema()").fetchone()
        text = text.replace(f"CREATE SCHEMA {dumped_schema};", "")
        text = text.replace(f"{dumped_schema}.", f'"{schema}".')
        assert dumped_schema not in text
        with conn.transaction():
            conn.execute(text)
    return schema


@dataclass
class Golden:
    """A copy of a golden store, and how to open it."""

    name: str
    root: Path
    manifest: dict[str, Any]
    options: dict[str, Any]
    schema: str | None = None  # postgresql: where the dump was restored
    url: str | None = None

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.manifest["entries"]

    def open(self, **extra: Any) -> BlobStore:
        # Written before signing: their entries are unsigned, read as a migration does
        # (test_unsigned_golden_entries_read_by_policy_and_resign covers the default).
        return BlobStore(self.root, **{"unsigned": "accept", **self.options, **extra})


@pytest.fixture(params=STORES)
def golden(request: pytest.FixtureRequest, tmp_path: Path) -> Golden:
    return copy_golden(request, tmp_path, request.param)


def copy_golden(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Golden:
    root = tmp_path / name
    shutil.copytree(GOLDEN / name, root)
    manifest = manifest_of(name)
    options = json.loads(json.dumps(manifest["options"]))
    copy = Golden(name, root, manifest, options)
    if name == "postgresql":
        copy.url = request.getfixturevalue("fresh_postgres_url")
        copy.schema = restore_postgres_dump(copy.url, root / "index.sql", manifest["pg_schema"])
        options["metadata_options"] = {**options["metadata_options"], "url": copy.url}
    return copy


@pytest.fixture
def store(golden: Golden) -> Iterator[BlobStore]:
    with golden.open() as opened:
        yield opened


def expected_entry(key: str, recorded: dict[str, Any], inline: bytes | None) -> Entry:
    """The entry ``manifest.json`` records (it leaves out what is inferred here)."""
    fields = dict(recorded)
    assert fields.pop("inline") == (inline is not None), f"{key}: inline or not"
    fields.setdefault("updated_at", fields["created_at"])
    fields.setdefault("accessed_at", fields["created_at"])
    return Entry.from_dict({**fields, "key": key, "inline": inline})


def cloudpickle_loads_here(entry: Entry) -> bool:
    """A cloudpickled function holds bytecode: only the Python that wrote it loads it."""
    return entry.metadata["python"] == ".".join(map(str, sys.version_info[:2]))


# --------------------------------------------------------------------------- reading


def test_every_value_reads_back_exactly(golden: Golden, store: BlobStore) -> None:
    assert golden.entries, "an empty manifest checks nothing"
    for key, recorded in golden.entries.items():
        name = recorded["value"]
        if name == "cloudpickled_function":
            entry = store.get_metadata(key)
            assert entry is not None
            if cloudpickle_loads_here(entry):
                assert store.get(key)(values.CLOUDPICKLE_PROBE) == values.CLOUDPICKLE_ANSWER
            continue
        values.assert_same(store.get(key), values.read_back(name), key)


def test_batch_reads_and_reads_with_metadata_agree(golden: Golden, store: BlobStore) -> None:
    keys = [k for k, r in golden.entries.items() if r["value"] != "cloudpickled_function"]
    batch = store.get_batch([*keys, "no/such/key"], default="missing")
    assert batch["no/such/key"] == "missing"
    for key in keys:
        expected = values.read_back(golden.entries[key]["value"])
        values.assert_same(batch[key], expected, key)
        value, entry = store.get_with_metadata(key)
        values.assert_same(value, expected, key)
        assert entry.metadata == golden.entries[key]["entry"]["metadata"]


def test_every_entry_is_the_recorded_one(golden: Golden, store: BlobStore) -> None:
    listed = store.list_entries()
    assert [entry.key for entry in listed] == sorted(golden.entries)
    for entry in listed:
        recorded = golden.entries[entry.key]["entry"]
        assert entry == expected_entry(entry.key, recorded, entry.inline), entry.key
        assert store.get_metadata(entry.key) == entry


def test_nothing_is_damaged_or_orphaned(store: BlobStore) -> None:
    assert store.verify_integrity() == []
    assert store.verify_integrity(deep=False) == []
    assert store.find_orphaned_blobs(min_age_seconds=0) == []


def test_listing_and_filters_find_what_was_recorded(golden: Golden, store: BlobStore) -> None:
    entries = {key: item["entry"] for key, item in golden.entries.items()}

    def keys_where(test: Callable[[str, dict[str, Any]], bool]) -> list[str]:
        return sorted(key for key, entry in entries.items() if test(key, entry))

    assert store.count() == len(entries)
    assert store.total_size() == sum(entry["size"] for entry in entries.values())
    groups = Counter(entry["metadata"].get("group") for entry in entries.values())
    assert len(groups) > 1
    for group, count in groups.items():
        condition = {"$exists": False} if group is None else group
        assert store.count(metadata_filter={"group": condition}) == count
    codecs = Counter(e["metadata"]["codec"] for e in entries.values() if "codec" in e["metadata"])
    for codec, count in codecs.items():
        assert store.count("codec/", {"codec": codec}) == count
    for handler in {entry["handler"] for entry in entries.values()}:
        found = [e.key for e in store.list_entries(filter={"handler": handler})]
        assert found == keys_where(lambda _, e, h=handler: e["handler"] == h)
    prefix = min(key.split("/")[0] + "/" for key in entries if "/" in key)
    assert [e.key for e in store.list_entries(prefix=prefix)] == keys_where(
        lambda k, _: k.startswith(prefix)
    )
    assert [e.key for e in store.list_entries(filter={"blob_ref": ""})] == keys_where(
        lambda _, e: e["inline"]
    )
    big = store.list(filter={"size": {"$gt": 2000}, "codec": {"$ne": "none"}})
    assert big == keys_where(lambda _, e: e["size"] > 2000 and e["codec"] != "none")
    by_value = store.list_entries(metadata_filter={"value": {"$in": ["raw_bytes", "plain_data"]}})
    assert [e.key for e in by_value] == keys_where(
        lambda _, e: e["metadata"]["value"] in ("raw_bytes", "plain_data")
    )
    newest_first = [e.key for e in store.list_entries(order_by="created_at", descending=True)]
    assert newest_first == sorted(
        entries, key=lambda k: (entries[k]["created_at"], k), reverse=True
    )
    assert [e.key for e in store.list_entries(order_by="size", limit=3, offset=1)] == sorted(
        entries, key=lambda k: (entries[k]["size"], k)
    )[1:4]


def test_unsigned_golden_entries_read_by_policy_and_resign(golden: Golden) -> None:
    """Entries written before signing: data reads, pickles are refused until resign()."""
    keys = [k for k, r in golden.entries.items() if r["value"] != "cloudpickled_function"]
    with golden.open(unsigned="accept_data_only") as store:
        refused = set()
        for key in keys:
            try:
                values.assert_same(store.get(key), values.read_back(golden.entries[key]["value"]))
            except SignatureError:
                refused.add(key)
        executable = {k for k in keys if store.get_metadata(k).handler == "objects"}
        assert refused == executable
        assert executable, "the golden stores hold pickles"
    with golden.open(unsigned="accept") as store:
        report = store.resign()
        assert report.resigned == len(golden.entries)
    with golden.open(unsigned="reject") as store:
        for key in keys:
            values.assert_same(store.get(key), values.read_back(golden.entries[key]["value"]))


def test_a_golden_store_stays_writable(golden: Golden, store: BlobStore) -> None:
    keys = sorted(golden.entries)
    doomed, replaced = keys[0], keys[-1]
    assert store.delete(doomed)
    store.put({"written": "now"}, key=replaced, metadata={"group": "new"})
    store.put(values.read_back("np_float64"), key="new/array")
    assert store.get(replaced) == {"written": "now"}
    values.assert_same(store.get("new/array"), values.read_back("np_float64"))
    for key in keys[1:-1]:
        name = golden.entries[key]["value"]
        if name != "cloudpickled_function":
            values.assert_same(store.get(key), values.read_back(name), key)
    assert store.verify_integrity() == []
    assert store.find_orphaned_blobs(min_age_seconds=0) == []


def test_sharing_in_the_content_addressed_store(request, tmp_path) -> None:
    golden = copy_golden(request, tmp_path, "content_addressed")
    with golden.open() as store:
        shared = {store.get_metadata(k).blob_ref for k in ("shared/a", "shared/b")}
        assert len(shared) == 1
        assert "" not in shared
        assert store.delete("shared/a")
        values.assert_same(store.get("shared/b"), values.read_back("np_float64"))
        assert store.verify_integrity() == []


# --------------------------------------------------------------------------- format versions


WRITTEN_AT = 1
"""The format version every golden store was written at (the first release's)."""

CURRENT = {"sqlite_fs": 1, "content_addressed": 1, "json_fs": 1, "postgresql": 2}
"""The version each golden store is at once this release opened it."""


def test_each_persistent_backend_records_its_format_version() -> None:
    assert SCHEMA_VERSIONS == {"sqlite": 1, "postgresql": 2}
    assert {b.dialect_name: b.migrations.current for b in SQL_BACKENDS} == {
        "sqlite": 1,
        "postgresql": 2,
    }
    assert json_backend.FILE_VERSION == json_backend._MIGRATIONS.current == 1
    with closing(sqlite3.connect(GOLDEN / "sqlite_fs" / "index.sqlite")) as conn:
        row = conn.execute(
            "SELECT value FROM cacheness_entries_info WHERE name = 'schema_version'"
        ).fetchone()
    assert row == (str(WRITTEN_AT),)
    head = (GOLDEN / "json_fs" / "index.json").read_bytes()[:80]
    assert head.startswith(b'{"format":"cacheness.storage.metadata","version":1,')
    dump = (GOLDEN / "postgresql" / "index.sql").read_text(encoding="utf-8")
    assert "(name, value) VALUES ('schema_version', '1');" in dump
    assert "metadata_text" not in dump  # written before layout 2: opening migrates it


def test_opening_brings_the_store_to_the_current_version(golden: Golden) -> None:
    assert recorded_version(golden) == WRITTEN_AT
    with golden.open() as store:
        assert store.count() == len(golden.entries)
        assert recorded_version(golden) == CURRENT[golden.name]  # in the opening transaction
    with golden.open() as store:  # opens again as it is, migrated once
        assert store.count() == len(golden.entries)
    assert recorded_version(golden) == CURRENT[golden.name]


def test_the_postgresql_golden_store_migrates_to_exact_metadata(request, tmp_path) -> None:
    """Schema 1 -> 2 on the store the first release wrote: old rows, new exact values."""
    import psycopg

    golden = copy_golden(request, tmp_path, "postgresql")
    exact = {"loss": 1e20, "negz": -0.0, "huge": 1e300, "tiny": 5e-324, "n": 2**63 - 1}
    with golden.open() as store:
        assert recorded_version(golden) == 2
        with psycopg.connect(pg_conninfo(golden.url)) as conn:
            texts = conn.execute(
                f'SELECT key, metadata_text FROM "{golden.schema}".golden_entries ORDER BY 1'
            ).fetchall()
            (triggers,) = conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass "
                "AND tgname = 'golden_entries_metadata_text'",
                (f'"{golden.schema}".golden_entries',),
            ).fetchone()
        assert texts == [(key, None) for key in sorted(golden.entries)]  # read from jsonb
        assert triggers == 1
        for entry in store.list_entries():  # the rows of schema 1 read as recorded
            assert entry.metadata == golden.entries[entry.key]["entry"]["metadata"]
        old = sorted(golden.entries)[0]
        store.update_metadata(old, exact, merge=True)
        store.put(b"new", key="new/exact", metadata=exact)
        for key in (old, "new/exact"):
            metadata = store.get_metadata(key).metadata
            for name, value in exact.items():
                assert (type(metadata[name]), repr(metadata[name])) == (type(value), repr(value))
        assert store.count(metadata_filter={"loss": {"$gte": 1e20}}) == 2
    assert recorded_version(golden) == 2


def stamp(golden: Golden, version: int) -> None:
    """Record ``version`` as the store's format version, as a later release would."""
    if golden.name == "json_fs":
        path = golden.root / "index.json"
        data = path.read_bytes()
        stamped = data.replace(b'"version":1,', b'"version":%d,' % version, 1)
        assert stamped != data
        path.write_bytes(stamped)
    elif golden.name == "postgresql":
        import psycopg

        assert golden.url is not None
        with psycopg.connect(pg_conninfo(golden.url), autocommit=True) as conn:
            conn.execute(
                f'UPDATE "{golden.schema}".golden_entries_info SET value = %s '
                "WHERE name = 'schema_version'",
                (str(version),),
            )
    else:
        with closing(sqlite3.connect(golden.root / "index.sqlite")) as conn:
            conn.execute(
                "UPDATE cacheness_entries_info SET value = ? WHERE name = 'schema_version'",
                (str(version),),
            )
            conn.commit()


def index_contents(golden: Golden) -> Any:
    """Everything the index holds, read around the backend."""
    if golden.name == "json_fs":
        return (golden.root / "index.json").read_bytes()
    if golden.name == "postgresql":
        import psycopg

        assert golden.url is not None
        with psycopg.connect(pg_conninfo(golden.url)) as conn:
            return [
                conn.execute(f'SELECT * FROM "{golden.schema}".{table} ORDER BY 1').fetchall()
                for table in ("golden_entries", "golden_entries_info")
            ]
    with closing(sqlite3.connect(golden.root / "index.sqlite")) as conn:
        return [
            conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("cacheness_entries", "cacheness_entries_info")
        ]


def test_a_store_from_a_newer_format_version_is_refused(golden: Golden) -> None:
    current = CURRENT[golden.name]
    stamp(golden, current + 1)
    before = index_contents(golden)
    with pytest.raises(FormatVersionError) as refused:
        golden.open()
    message = str(refused.value)
    assert "newer blobcache-storage" in message
    assert f"version {current + 1}" in message
    assert f"reads version {current}" in message
    assert "upgrade blobcache-storage" in message
    assert (refused.value.found, refused.value.supported) == (current + 1, current)
    assert index_contents(golden) == before  # nothing was changed


def test_a_version_no_release_wrote_is_refused(request, tmp_path) -> None:
    golden = copy_golden(request, tmp_path, "sqlite_fs")
    stamp(golden, 0)
    with pytest.raises(MetadataError, match="version 0, which no release wrote"):
        golden.open()


@dataclass
class _Probe:
    """A migration step that records its calls (and does a real, visible change)."""

    calls: list[int]


@pytest.fixture
def next_version(monkeypatch: pytest.MonkeyPatch) -> _Probe:
    """Pretend this release writes one version more than it does, with a step to it.

    Every backend's registry is replaced by one that keeps the real steps and adds a
    probe from today's version; the probe records the version it started from.
    """
    probe = _Probe([])

    def extended(real: FormatMigrations[Any], probe_step: Any) -> FormatMigrations[Any]:
        longer: FormatMigrations[Any] = FormatMigrations(real.what, real.current + 1)
        for version, step in real.steps(1, "the real registry"):
            longer.register(from_version=version)(step)
        longer.register(from_version=real.current)(probe_step)
        return longer

    for backend_class in SQL_BACKENDS:
        real = backend_class.migrations

        def add_an_index(backend: Any, cursor: Any, _from: int = real.current) -> None:
            probe.calls.append(_from)
            quoted = backend._dialect.identifier_preparer.format_table(backend.table)
            cursor.raw.execute(f"CREATE INDEX ix_{backend.table.name}_size ON {quoted} (size)")

        monkeypatch.setattr(backend_class, "migrations", extended(real, add_an_index))

    def mark_entries(
        document: dict[str, Any], _from: int = json_backend._MIGRATIONS.current
    ) -> dict[str, Any]:
        probe.calls.append(_from)
        for entry in document["entries"]:
            entry["metadata"]["migrated"] = True
        return document

    monkeypatch.setattr(
        json_backend, "_MIGRATIONS", extended(json_backend._MIGRATIONS, mark_entries)
    )
    return probe


def recorded_version(golden: Golden) -> int:
    if golden.name == "json_fs":
        return json.loads((golden.root / "index.json").read_bytes())["version"]
    if golden.name == "postgresql":
        import psycopg

        with psycopg.connect(pg_conninfo(golden.url)) as conn:
            row = conn.execute(f'SELECT value FROM "{golden.schema}".golden_entries_info')
            return int(row.fetchone()[0])
    with closing(sqlite3.connect(golden.root / "index.sqlite")) as conn:
        return int(conn.execute("SELECT value FROM cacheness_entries_info").fetchone()[0])


def test_an_older_format_version_goes_through_the_migrations(
    golden: Golden, next_version: _Probe
) -> None:
    current = CURRENT[golden.name]
    with golden.open() as store:
        # postgresql: the real step 1 -> 2, then the probe 2 -> 3, in one transaction
        assert next_version.calls == [current]
        for key, recorded in golden.entries.items():
            if recorded["value"] != "cloudpickled_function":
                values.assert_same(store.get(key), values.read_back(recorded["value"]), key)
        if golden.name == "json_fs":
            # upgraded in memory; the next change writes the file in the new version
            assert all(e.metadata["migrated"] for e in store.list_entries())
            assert recorded_version(golden) == WRITTEN_AT
            store.put(b"new", key="after/migration")
        assert store.verify_integrity() == []
    assert recorded_version(golden) == current + 1
    with golden.open() as store:  # migrated once, not again
        assert next_version.calls == [current]
        assert store.count() >= len(golden.entries)


def test_the_documented_refusal_runs(docs_page, capsys) -> None:
    (block,) = [b for b in docs_page("metadata-backends.md").blocks() if "FormatVersionError" in b]
    exec(compile(block, "metadata-backends.md: format versions", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == "2 1\n"
