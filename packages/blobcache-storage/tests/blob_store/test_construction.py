"""BlobStore construction: backend names and instances, options, pairing validation, imports."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cacheness.storage import (
    DEFAULT_INLINE_THRESHOLD,
    BlobStore,
    FilesystemBlobBackend,
    MemoryBlobBackend,
    MemoryMetadataBackend,
    SqliteMetadataBackend,
    pairing_problem,
)
from cacheness.storage.errors import ConfigError

# --------------------------------------------------------------------------- construction


def test_a_path_is_enough_for_the_default_sqlite_and_filesystem(tmp_path, big):
    with BlobStore(tmp_path / "artifacts") as store:
        store.put(big(), key="k", metadata={"v": 1})
        assert (store.metadata.name, store.blobs.name) == ("sqlite", "filesystem")
        assert store.inline_threshold == DEFAULT_INLINE_THRESHOLD
        ref = store.get_metadata("k").blob_ref
    assert (tmp_path / "artifacts" / "index.sqlite").is_file()
    assert (tmp_path / "artifacts" / "blobs" / ref).is_file()


def test_options_name_other_places_than_the_path(tmp_path, big):
    with BlobStore(
        metadata_backend="json",
        metadata_options={"path": tmp_path / "meta" / "idx.json"},
        blob_options={"root": tmp_path / "data", "shard_chars": 0},
    ) as store:
        store.put(big(), key="k")
        ref = store.get_metadata("k").blob_ref
    assert "/" not in ref
    assert (tmp_path / "data" / ref).is_file()
    assert (tmp_path / "meta" / "idx.json").is_file()


@pytest.mark.parametrize("threshold", [-1, 1.5, "4096", True])
def test_inline_threshold_must_be_a_non_negative_int(threshold):
    with pytest.raises(ConfigError, match="inline_threshold"):
        BlobStore(metadata_backend="memory", blob_backend="memory", inline_threshold=threshold)


@pytest.mark.parametrize(
    ("index", "default"),
    [("sqlite", DEFAULT_INLINE_THRESHOLD), ("memory", DEFAULT_INLINE_THRESHOLD), ("json", 4096)],
)
def test_the_inline_threshold_defaults_to_the_index_choice(tmp_path, index, default):
    """64 KiB in a database; 4 KiB in a JSON index, which rewrites its whole file per change."""
    assert DEFAULT_INLINE_THRESHOLD == 64 * 1024
    payload = random.Random(0).randbytes(default - 200)  # incompressible: stored as is
    blobs = "memory" if index == "memory" else "filesystem"
    with BlobStore(tmp_path, metadata_backend=index, blob_backend=blobs) as store:
        assert store.inline_threshold == default
        store.put(payload, key="under")
        store.put(payload + bytes(random.Random(1).randbytes(400)), key="over")
        assert store.get_metadata("under").is_inline
        assert not store.get_metadata("over").is_inline
        assert store.get("under") == payload
    explicit = tmp_path / "explicit"
    options = {"metadata_backend": index, "blob_backend": blobs}
    with BlobStore(explicit, inline_threshold=0, **options) as store:
        assert store.inline_threshold == 0
        store.put(b"tiny", key="k")
        assert not store.get_metadata("k").is_inline


def test_a_path_is_required_for_file_backends():
    with pytest.raises(ConfigError, match=r"needs a location: pass BlobStore\(path\)"):
        BlobStore()
    with pytest.raises(ConfigError, match="blob_options"):
        BlobStore(metadata_backend="memory")


def test_options_apply_to_names_not_instances(tmp_path):
    with pytest.raises(ConfigError, match="metadata_options apply to a backend name"):
        BlobStore(
            metadata_backend=MemoryMetadataBackend(),
            metadata_options={"x": 1},
            blob_backend="memory",
        )
    with pytest.raises(ConfigError, match="blob_options apply to a backend name"):
        BlobStore(
            metadata_backend="memory", blob_backend=MemoryBlobBackend(), blob_options={"x": 1}
        )


def test_backends_must_be_names_or_instances():
    with pytest.raises(ConfigError, match="metadata_backend must be"):
        BlobStore(metadata_backend=42, blob_backend="memory")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="blob_backend must be"):
        BlobStore(metadata_backend="memory", blob_backend=object())  # type: ignore[arg-type]


def test_unknown_backend_names_list_the_known_ones():
    with pytest.raises(ConfigError, match="sqlite"):
        BlobStore(metadata_backend="nosuch", blob_backend="memory")
    with pytest.raises(ConfigError, match="filesystem"):
        BlobStore(metadata_backend="memory", blob_backend="nosuch")


def open_files_under(folder) -> list[str]:
    """Paths under ``folder`` this process holds open (Linux /proc)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd to see open files")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(Path(folder).resolve())):
            found.append(target)
    return found


def test_a_failing_blob_backend_closes_the_metadata_backend_it_opened(tmp_path):
    (tmp_path / "blobs").write_text("a file where the blob directory should be")
    with pytest.raises(ConfigError, match="not a directory"):
        BlobStore(tmp_path)
    assert (tmp_path / "index.sqlite").exists()
    assert open_files_under(tmp_path) == []


def test_a_refused_pairing_closes_what_it_opened(tmp_path, s3_bucket):
    options = {"bucket": s3_bucket.name, **s3_bucket.endpoint.client_options()}
    with pytest.raises(ConfigError, match="allow_unsafe_pairing"):
        BlobStore(tmp_path, blob_backend="s3", blob_options=options)
    assert (tmp_path / "index.sqlite").exists()
    assert open_files_under(tmp_path) == []


def test_serialization_options_from_a_mapping():
    pd = pytest.importorskip("pandas")
    store = BlobStore(
        metadata_backend="memory",
        blob_backend="memory",
        serialization={"dataframe_format": "parquet"},
    )
    store.put(pd.DataFrame({"a": range(1000)}), key="frame")
    assert store.get_metadata("frame").format == "parquet"
    pd.testing.assert_frame_equal(store.get("frame"), pd.DataFrame({"a": range(1000)}))


# --------------------------------------------------------------------------- pairings

ALLOWED = [
    ("memory", "memory"),
    ("memory", "filesystem"),
    ("sqlite", "memory"),
    ("sqlite", "filesystem"),
    ("json", "memory"),
    ("json", "filesystem"),
]
REFUSED = [("sqlite", "s3"), ("json", "s3"), ("memory", "s3"), ("postgresql", "memory")]
SCOPES = {"memory": "process", "sqlite": "host", "json": "host", "postgresql": "shared"}
SCOPES |= {"filesystem": "host", "s3": "shared"}  # blob backends ("memory" is "process" too)


@pytest.fixture
def backend_options(request, tmp_path):
    """Options that make each backend name openable (PostgreSQL and S3 only when used)."""

    def options(metadata: str, blob: str) -> dict:
        found: dict = {"path": tmp_path}
        if metadata == "postgresql":
            found["metadata_options"] = {"url": request.getfixturevalue("fresh_postgres_url")}
        if blob == "s3":
            bucket = request.getfixturevalue("s3_bucket")
            found["blob_options"] = {"bucket": bucket.name, **bucket.endpoint.client_options()}
        return found

    return options


@pytest.mark.parametrize(("metadata", "blob"), [*ALLOWED, ("postgresql", "filesystem")])
def test_allowed_pairings_open(metadata, blob, backend_options):
    with BlobStore(
        metadata_backend=metadata, blob_backend=blob, **backend_options(metadata, blob)
    ) as store:
        store.put(b"z" * 10_000, key="k")
        assert store.get("k") == b"z" * 10_000


@pytest.mark.parametrize(("metadata", "blob"), REFUSED)
def test_refused_pairings_explain_and_offer_the_opt_out(metadata, blob, backend_options, caplog):
    options = backend_options(metadata, blob)
    with pytest.raises(ConfigError) as refused:
        BlobStore(metadata_backend=metadata, blob_backend=blob, **options)
    message = str(refused.value)
    assert f"the {metadata} metadata backend" in message
    assert "allow_unsafe_pairing=True" in message
    assert ("orphans" if blob == "s3" else "cannot read") in message
    assert message == pairing_problem(metadata, SCOPES[metadata], blob, SCOPES[blob])

    with caplog.at_level(logging.WARNING, logger="cacheness.storage.blob_store"):
        store = BlobStore(
            metadata_backend=metadata, blob_backend=blob, allow_unsafe_pairing=True, **options
        )
    with store:
        store.put(b"w" * 10_000, key="k")
        assert store.get("k") == b"w" * 10_000
    assert "unsafe pairing allowed" in caplog.text


def test_a_refused_pairing_leaves_instances_passed_in_open(tmp_path, s3_endpoint):
    from cacheness.storage import S3BlobBackend

    index = SqliteMetadataBackend(tmp_path / "index.sqlite")
    bucket = S3BlobBackend("not-created", **s3_endpoint.client_options())
    with pytest.raises(ConfigError, match="sqlite metadata backend keeps a host-local index"):
        BlobStore(metadata_backend=index, blob_backend=bucket)
    assert index.count() == 0  # still open: the caller owns it
    index.close()


def test_scopes_in_the_table_match_the_backends():
    assert (SqliteMetadataBackend.scope, FilesystemBlobBackend.scope) == ("host", "host")
    assert (MemoryMetadataBackend.scope, MemoryBlobBackend.scope) == ("process", "process")
    assert pairing_problem("memory", "process", "filesystem", "host") is None
    assert pairing_problem("postgresql", "shared", "filesystem", "host") is None


# --------------------------------------------------------------------------- imports

HEAVY = ("numpy", "pandas", "pyarrow", "polars", "blosc2", "boto3", "psycopg")


def test_storing_plain_data_imports_no_heavy_dependency(tmp_path):
    probe = textwrap.dedent(
        f"""
        import json, random, sys
        import cacheness.storage
        from cacheness.storage import BlobStore

        with BlobStore({str(tmp_path)!r}) as store:
            store.put({{"a": 1}}, key="small")
            noise = random.Random(0).randbytes(100_000).hex()
            store.put({{"big": noise, "n": list(range(1000))}}, key="big")
            assert store.get("small") == {{"a": 1}}
            assert store.get("big")["n"][-1] == 999
            assert not store.get_metadata("big").is_inline
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    )
    loaded = set(json.loads(result.stdout))
    assert "cacheness.storage._blob_store" in loaded
    assert sorted(loaded & set(HEAVY)) == []
