"""Fixtures for the BlobStore tests: the four pairings, each with ground truth around it.

A :class:`Pairing` opens ``BlobStore`` instances over one place (the same directory,
bucket and schema, or the same in-memory backends) and reads what is really there
without going through the store: the blob files on disk, the objects in the bucket
(plain boto3), the rows of the index (sqlite3, the JSON file, psycopg).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import BlobStore, MemoryBlobBackend, MemoryMetadataBackend

PAIRINGS = ["memory+memory", "sqlite+filesystem", "json+filesystem", "postgresql+s3"]
TEMP_PREFIX = ".cacheness-"


def big_payload(seed: int = 0, size: int = 100_000) -> bytes:
    """Incompressible bytes well above the default inline threshold: always a blob."""
    return random.Random(seed).randbytes(size)


@pytest.fixture
def big() -> Callable[..., bytes]:
    """``big(seed=0, size=100_000)``: incompressible bytes that are always stored as a blob."""
    return big_payload


@dataclass
class Pairing:
    """One metadata + blob pairing: opens stores over one place, reads it from outside."""

    name: str
    options: dict[str, Any]
    blob_refs: Callable[[], set[str]]
    blob_bytes: Callable[[str], bytes | None]
    index: Callable[[], dict[str, str]]
    opened: list[BlobStore] = field(default_factory=list)

    def open(self, **options: Any) -> BlobStore:
        """Open a BlobStore over this pairing's place (``options`` add to the defaults)."""
        store = BlobStore(**{**self.options, **options})
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def _files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(TEMP_PREFIX)
    }


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _sqlite_index(path: Path) -> dict[str, str]:
    import sqlite3

    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, blob_ref FROM cacheness_entries"))
    finally:
        conn.close()


def _json_index(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    return {entry["key"]: entry.get("blob_ref", "") for entry in document["entries"]}


def _postgres_index(url: str) -> dict[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        return dict(conn.execute("SELECT key, blob_ref FROM cacheness_entries").fetchall())


def memory_pairing() -> Pairing:
    # One pair of backend instances, so every store opened here sees the same data.
    metadata, blobs = MemoryMetadataBackend(), MemoryBlobBackend()

    def blob_bytes(ref: str) -> bytes | None:
        return blobs.read_bytes(ref) if blobs.exists(ref) else None

    return Pairing(
        "memory+memory",
        {"metadata_backend": metadata, "blob_backend": blobs},
        blob_refs=lambda: set(blobs.iter_refs()),
        blob_bytes=blob_bytes,
        index=lambda: {entry.key: entry.blob_ref for entry in metadata.query()},
    )


def filesystem_pairing(name: str, root: Path) -> Pairing:
    metadata = name.split("+")[0]
    blob_root = root / "blobs"
    index_file = root / ("index.sqlite" if metadata == "sqlite" else "index.json")
    return Pairing(
        name,
        {"path": root, "metadata_backend": metadata, "blob_backend": "filesystem"},
        blob_refs=lambda: _files(blob_root),
        blob_bytes=lambda ref: _read(blob_root / ref),
        index=lambda: (_sqlite_index if metadata == "sqlite" else _json_index)(index_file),
    )


def postgres_s3_pairing(url: str, bucket: Any) -> Pairing:
    client = bucket.client()

    def blob_refs() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def blob_bytes(ref: str) -> bytes | None:
        try:
            return client.get_object(Bucket=bucket.name, Key=ref)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    return Pairing(
        "postgresql+s3",
        {
            "metadata_backend": "postgresql",
            "metadata_options": {"url": url},
            "blob_backend": "s3",
            "blob_options": {"bucket": bucket.name, **bucket.endpoint.client_options()},
        },
        blob_refs=blob_refs,
        blob_bytes=blob_bytes,
        index=lambda: _postgres_index(url),
    )


def make_pairing(request: pytest.FixtureRequest, name: str, root: Path) -> Pairing:
    """Build the pairing ``name`` (PostgreSQL and S3 fixtures are requested only for it)."""
    if name == "memory+memory":
        return memory_pairing()
    if name == "postgresql+s3":
        url = request.getfixturevalue("fresh_postgres_url")
        return postgres_s3_pairing(url, request.getfixturevalue("s3_bucket"))
    return filesystem_pairing(name, root)


@pytest.fixture
def open_pairing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Pairing]]:
    """``open_pairing(name)``: a pairing over a fresh place, closed after the test."""
    made: list[Pairing] = []

    def open_one(name: str) -> Pairing:
        made.append(make_pairing(request, name, tmp_path_factory.mktemp("store")))
        return made[-1]

    try:
        yield open_one
    finally:
        for item in made:
            item.close_all()


@pytest.fixture(params=PAIRINGS)
def pairing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pairing]:
    """Each of the four pairings of the issue, over a fresh place."""
    made = make_pairing(request, request.param, tmp_path / "store")
    try:
        yield made
    finally:
        made.close_all()


@pytest.fixture
def store(pairing: Pairing) -> BlobStore:
    """A BlobStore with default options over each pairing."""
    return pairing.open()
