"""Write the golden stores next to this file with the blobcache-storage checked out.

The golden stores pin the on-disk format: ``test_golden_stores.py`` copies each one to a
temporary directory, opens it with the current code and reads every value back exactly.
They were written once, by the code of the day, and are **not** rewritten when the code
changes: a format change adds a migration and keeps the committed stores readable. Run
this script only to add a store for a new format (in a new directory, keeping the old
ones), never to "fix" a failing golden test.

Usage (from the repository root; needs PostgreSQL and ``pg_dump`` for the postgresql
store)::

    python -m hatch run python packages/blobcache-storage/tests/golden/make_golden.py \
        [--out DIR] [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] \
        [--only sqlite_fs json_fs content_addressed postgresql]

Nothing is random and nothing reads the wall clock: the values come from
``golden_values.py`` (fixed seeds), entry timestamps from a clock that starts at
``golden_values.CLOCK_START`` and ticks one millisecond per call, and blob names from a
seeded generator instead of ``uuid4``. With the same library versions (recorded in each
``manifest.json``) two runs write the same bytes.

Each store directory holds the store itself and ``manifest.json``: how the store was
opened (``options``), the library versions that wrote it, and for every key the name of
its value in ``golden_values.VALUE_BUILDERS`` and its entry fields (without the inline
bytes, which are in the index).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
STORES = ("sqlite_fs", "json_fs", "content_addressed", "postgresql")
PG_SCHEMA = "cacheness_golden_schema"
"""Schema the postgresql store is dumped from (the test restores it under another name)."""
PG_TABLE = "golden_entries"
LIBRARIES = (
    "blobcache-storage",
    "msgspec",
    "xxhash",
    "zstandard",
    "blosc2",
    "numpy",
    "pandas",
    "pyarrow",
    "polars",
    "cloudpickle",
    "sqlalchemy",
    "psycopg",
)


def _load_values() -> Any:
    spec = importlib.util.spec_from_file_location("golden_values", HERE / "golden_values.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["golden_values"] = module
    spec.loader.exec_module(module)
    return module


class Clock:
    """A UTC clock that starts at ``start`` and moves one millisecond per call."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        now = self.now
        self.now += dt.timedelta(milliseconds=1)
        return now


@contextlib.contextmanager
def seeded_blob_names(seed: int) -> Iterator[None]:
    """Name new blobs from a seeded generator instead of ``uuid4`` (same shape)."""
    from cacheness.storage import BlobStore

    rng = random.Random(seed)

    def fresh_name() -> str:
        return uuid.UUID(int=rng.getrandbits(128), version=4).hex

    with mock.patch.object(BlobStore, "_fresh_name", staticmethod(fresh_name)):
        yield


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _entry_fields(entry: Any) -> dict[str, Any]:
    """The entry's fields as JSON, without what the test can infer (see ``entry_from``).

    Left out: ``key`` (the manifest's key), the ``inline`` bytes (in the index; ``inline``
    is True instead), null ``etag``/``version_id``/``signature``, a zero
    ``access_count``, and ``updated_at``/``accessed_at`` equal to ``created_at``.
    """
    import msgspec

    fields = msgspec.to_builtins(entry)
    del fields["key"]
    fields["inline"] = fields["inline"] is not None
    for name in ("etag", "version_id", "signature"):
        if fields[name] is None:
            del fields[name]
    if fields["access_count"] == 0:
        del fields["access_count"]
    for name in ("updated_at", "accessed_at"):
        if fields[name] == fields["created_at"]:
            del fields[name]
    return fields


class Writer:
    """Puts golden values into one store directory and records the manifest."""

    def __init__(self, root: Path, values: Any, seed: int, options: dict[str, Any]) -> None:
        self.root = root
        self.values = values
        self.seed = seed
        self.options = options  # how the test opens the store (besides the path)
        self.clock = Clock(values.CLOCK_START)
        self.keys: dict[str, str] = {}  # key -> value name

    @contextlib.contextmanager
    def store(self, **extra: Any) -> Iterator[Any]:
        from cacheness.storage import BlobStore

        with BlobStore(self.root, clock=self.clock, **self.options, **extra) as store:
            yield store

    def put(self, store: Any, name: str, key: str | None, **metadata: Any) -> str:
        value = self.values.build(name)
        stored = store.put(value, key=key, metadata={"value": name, **metadata})
        self.keys[stored] = name
        return stored

    def manifest(self, store: Any) -> dict[str, Any]:
        entries = {}
        for key in sorted(self.keys):
            entry = store.get_metadata(key)
            assert entry is not None, key
            entries[key] = {"value": self.keys[key], "entry": _entry_fields(entry)}
        return {
            "written_by": _versions(),
            "written_on": f"{platform.system()} {platform.machine()}",
            "options": self.options,
            "entries": entries,
        }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json``: readable, one line per entry (it stays small)."""
    entries = manifest.pop("entries")
    head = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False)[:-2]
    lines = [
        f" {json.dumps(key, ensure_ascii=False)}: "
        + json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        for key, value in entries.items()
    ]
    text = head + ',\n "entries": {\n' + ",\n".join(lines) + "\n }\n}\n"
    json.loads(text)  # well-formed
    (directory / "manifest.json").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- stores


def write_sqlite_fs(out: Path, values: Any) -> None:
    """SQLite index + sharded filesystem blobs: every handler x every codec, inline and
    blob payloads, numpy dtypes, data frame formats, cloudpickle, metadata updates."""
    root = out / "sqlite_fs"
    writer = Writer(root, values, seed=1, options={})
    with seeded_blob_names(writer.seed):
        for number, codec in enumerate(values.CODECS):
            with writer.store(serialization={"codec": codec}) as store:
                for name in values.CODEC_MATRIX:
                    writer.put(store, name, f"codec/{codec}/{name}", codec=codec, n=number)
        with writer.store() as store:
            for name in values.VALUE_BUILDERS:
                if name.startswith("np_") and name not in values.CODEC_MATRIX:
                    writer.put(store, name, f"numpy/{name}", group="numpy")
            writer.put(store, "raw_bytearray", "raw/bytearray", group="raw")
            writer.put(store, "raw_memoryview", "raw/memoryview", group="raw")
            # no key: the content hash of the stored bytes is the key
            writer.put(store, "plain_data", None, group="keyless")
        # "arrow" is what "auto" (the codec matrix) chooses for pandas and pyarrow
        for fmt, kinds in (("parquet", ("pd_", "arrow_", "polars_")), ("arrow", ("polars_",))):
            with writer.store(serialization={"dataframe_format": fmt}) as store:
                for name in values.VALUE_BUILDERS:
                    if name.startswith(kinds):
                        writer.put(store, name, f"frames/{fmt}/{name}", group="frames", fmt=fmt)
        with writer.store() as store:
            for name in ("pd_frame_multiindex", "arrow_record_batch", "polars_series"):
                writer.put(store, name, f"frames/auto/{name}", group="frames", fmt="auto")
        with writer.store(inline_threshold=0) as store:
            for name in (*values.CODEC_MATRIX, "raw_bytearray", "raw_memoryview"):
                writer.put(store, name, f"blob/{name}", group="blob")
        with writer.store(serialization={"allow_cloudpickle": True}) as store:
            writer.put(
                store,
                "cloudpickled_function",
                "objects/cloudpickle",
                group="objects",
                python=".".join(map(str, sys.version_info[:2])),
            )
        with writer.store() as store:
            writer.put(
                store,
                "plain_data",
                "meta/rich",
                group="meta",
                score=0.93,
                tags=["a", "ü", "日本"],
                nested={"depth": {"x": [1, 2, {"y": None}]}, "flag": False},
                big=2**62,
            )
            store.update_metadata("meta/rich", {"stage": "prod"})
            store.record_access({"meta/rich": 3, "codec/zstd/raw_bytes": 1}, at=writer.clock())
            store.update_data("meta/updated", b"ignored")  # absent: nothing happens
            writer.put(store, "raw_str", "meta/updated", group="meta")
            store.update_data("meta/updated", values.build("raw_bytes"))
            writer.keys["meta/updated"] = "raw_bytes"
            write_manifest(root, writer.manifest(store))


def write_json_fs(out: Path, values: Any) -> None:
    """JSON index + flat (unsharded) filesystem blobs."""
    root = out / "json_fs"
    options = {"metadata_backend": "json", "blob_options": {"shard_chars": 0}}
    writer = Writer(root, values, seed=2, options=options)
    with seeded_blob_names(writer.seed):
        with writer.store() as store:
            for name in values.CODEC_MATRIX:
                writer.put(store, name, f"auto/{name}", group="auto")
        with writer.store(inline_threshold=0, serialization={"codec": "zstd"}) as store:
            for name in ("raw_bytes", "plain_data", "np_int32_2d", "pd_frame", "polars_frame"):
                writer.put(store, name, f"blob/{name}", group="blob")
        with writer.store() as store:
            writer.put(store, "np_float64", "numpy/np_float64", group="numpy", big=True)
            store.update_metadata("auto/raw_str", {"owner": "ana", "rank": 2})
            write_manifest(root, writer.manifest(store))


def write_content_addressed(out: Path, values: Any) -> None:
    """Content-addressed SQLite + filesystem store: blobs named by their hash, shared."""
    root = out / "content_addressed"
    writer = Writer(root, values, seed=3, options={"content_addressable": True})
    with writer.store() as store:
        for name in ("raw_bytes", "np_float64", "pd_frame", "pickled_objects"):
            writer.put(store, name, None, group="keyless")
        # two keys, one blob; a small value inline
        writer.put(store, "np_float64", "shared/a", group="shared")
        writer.put(store, "np_float64", "shared/b", group="shared")
        writer.put(store, "np_scalar_0d", "small/inline", group="small")
        with writer.store(serialization={"codec": "none"}) as plain:
            writer.put(plain, "np_float64", "shared/uncompressed", group="shared")
        with writer.store(inline_threshold=0) as blobs:
            for name in ("raw_str", "plain_data", "pd_series"):
                writer.put(blobs, name, f"blob/{name}", group="blob")
        write_manifest(root, writer.manifest(store))


def write_postgresql(out: Path, values: Any, url: str) -> None:
    """PostgreSQL index (dumped with pg_dump as plain SQL) + filesystem blobs."""
    import psycopg
    import sqlalchemy as sa

    root = out / "postgresql"
    base = sa.make_url(url)
    database = f"cacheness_golden_{os.getpid()}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        target = base.set(database=database).render_as_string(hide_password=False)
        metadata_options = {"table": PG_TABLE}
        options = {"metadata_backend": "postgresql", "metadata_options": metadata_options}
        writer = Writer(root, values, seed=4, options=options)
        writer.options = {
            **options,
            "metadata_options": {**metadata_options, "url": target, "schema": PG_SCHEMA},
        }
        with seeded_blob_names(writer.seed):
            with writer.store() as store:
                for name in values.CODEC_MATRIX:
                    writer.put(store, name, f"auto/{name}", group="auto", team="ml")
            with writer.store(inline_threshold=0) as store:
                for name in ("raw_str", "np_float64_small", "pd_series", "arrow_table"):
                    writer.put(store, name, f"blob/{name}", group="blob", team="cv")
            with writer.store() as store:
                store.update_metadata("auto/plain_data", {"reviewed": True})
                manifest = writer.manifest(store)
        manifest["options"] = options  # the test gives the url of its own schema
        manifest["pg_schema"] = PG_SCHEMA
        write_manifest(root, manifest)
        dump = subprocess.run(
            [
                "pg_dump",
                "--dbname",
                base.set(drivername="postgresql", database=database).render_as_string(
                    hide_password=False
                ),
                f"--schema={PG_SCHEMA}",
                "--no-owner",
                "--no-privileges",
                "--no-comments",
                "--column-inserts",
                "--rows-per-insert=1",
                # psql's \restrict guard (pg_dump >= 15.14) with a fixed key, not a random one
                *(["--restrict-key=cachenessgolden"] if _has_restrict_key() else []),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (root / "index.sql").write_text(dump, encoding="utf-8")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _has_restrict_key() -> bool:
    usage = subprocess.run(["pg_dump", "--help"], check=True, capture_output=True, text=True)
    return "--restrict-key" in usage.stdout


def tidy(directory: Path) -> None:
    """Remove what a closed store leaves that is not part of its format (lock files)."""
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.name.endswith((".lock", "-wal", "-shm")) and path.is_file():
            path.unlink()
        elif path.name.endswith(".locks") and path.is_dir():
            shutil.rmtree(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where the stores go")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "CACHENESS_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--only", nargs="+", choices=STORES, default=list(STORES))
    args = parser.parse_args(argv)
    values = _load_values()
    out: Path = args.out
    for name in args.only:
        target = out / name
        if target.exists():
            raise SystemExit(f"{target} exists: golden stores are never rewritten in place")
        with tempfile.TemporaryDirectory() as scratch:
            staging = Path(scratch)
            if name == "postgresql":
                write_postgresql(staging, values, args.postgres_url)
            else:
                globals()[f"write_{name}"](staging, values)
            tidy(staging / name)
            shutil.copytree(staging / name, target)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        print(f"{target}: {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
