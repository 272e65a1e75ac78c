"""Readers racing writers, for real: threads and processes, every kind of store.

Writers put, rewrite and delete self-checking payloads under three keys as fast as they
can while readers read them through every read path (``get``, ``get_with_metadata``,
``get_batch``, ``lookup``, ``read_current``). Every read must return a payload that
checks out or a miss: **no error at all**. These tests make 16,000 contended reads in
all (the cache's own stress tests add more); on code that took a race for damage,
a few percent of them failed. The exact interleavings are pinned down one by one in
``test_read_races.py``.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness.storage import (
    BlobStore,
    MemoryBlobBackend,
    MemoryMetadataBackend,
    PostgresMetadataBackend,
    S3BlobBackend,
    TieredBlobBackend,
    poll_until,
)

WORKER = Path(__file__).with_name("_race_worker.py")
THREAD_READERS = 2
THREAD_GETS = 1_000  # per reader: 5 kinds x 2 readers x 1,000 = 10,000 reads
PROCESS_READERS = 2
PROCESS_GETS = 1_500  # per reader: 2 stores x 2 readers x 1,500 = 6,000 reads


def worker_module() -> Any:
    """``_race_worker.py`` as a module (it is a script, not importable by name)."""
    spec = importlib.util.spec_from_file_location("blob_store_race_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


race = worker_module()


@pytest.fixture
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], BlobStore]]:
    opened: list[BlobStore] = []

    def open_one(kind: str) -> BlobStore:
        options: dict[str, Any] = {"inline_threshold": 0}
        if kind == "memory":
            options.update(metadata_backend="memory", blob_backend="memory")
        elif kind in ("sqlite+filesystem", "content-addressed"):
            options.update(path=tmp_path, content_addressable=kind == "content-addressed")
        elif kind == "tiered":
            # a local cache too small for every value: copies are evicted while read
            blobs = TieredBlobBackend(
                MemoryBlobBackend(shard_chars=2), tmp_path / "tiered", max_bytes=50_000
            )
            options.update(metadata_backend=MemoryMetadataBackend(), blob_backend=blobs)
        else:
            bucket = request.getfixturevalue("s3_bucket")
            url = request.getfixturevalue("fresh_postgres_url")
            options.update(
                metadata_backend=PostgresMetadataBackend(url),
                blob_backend=S3BlobBackend(bucket.name, **bucket.endpoint.client_options()),
            )
        store = BlobStore(**options)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
        if not store._owns_blobs:  # instances passed in: closed here
            store.blobs.close()
            store.metadata.close()


@pytest.fixture
def fine_switching() -> Iterator[None]:
    """Switch threads every 20 us instead of 5 ms: readers and the writer interleave
    inside each other's calls, not only between them."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(20e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.parametrize(
    "kind", ["memory", "sqlite+filesystem", "content-addressed", "tiered", "postgresql+s3"]
)
def test_threads_reading_while_a_thread_writes_see_no_error(
    open_store, tmp_path, kind, fine_switching
):
    store = open_store(kind)
    content_addressable = store.content_addressable
    stop = tmp_path / "stop"
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            race.write(store, random.Random(1), str(stop), content_addressable)
        except BaseException as exc:  # a writer's own failure fails the test too
            failures.append(exc)

    results: list[dict[str, Any]] = []

    def reader(seed: int) -> None:
        results.append(race.read(store, random.Random(seed), THREAD_GETS))

    for key in race.KEYS:
        store.put(race.payload(0), key=key)
    writing = threading.Thread(target=writer)
    readers = [threading.Thread(target=reader, args=(n,)) for n in range(THREAD_READERS)]
    writing.start()
    try:
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join()
    finally:
        stop.touch()
        writing.join()
    assert not failures
    assert sum(result["gets"] for result in results) >= THREAD_READERS * THREAD_GETS
    assert [error for result in results for error in result["errors"]] == []
    assert sum(result["hits"] for result in results) > 0
    assert store.verify_integrity() == []


def start(*args: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline()
    if line != "ready\n":
        worker.kill()
        _, err = worker.communicate()
        pytest.fail(f"worker did not start: {line!r}\n{err}")
    return worker


@pytest.mark.parametrize("content_addressable", [False, True], ids=["plain", "content-addressed"])
def test_processes_reading_while_processes_write_see_no_error(tmp_path, content_addressable):
    ca = "1" if content_addressable else "0"
    with BlobStore(tmp_path, content_addressable=content_addressable, inline_threshold=0):
        pass  # create the index once, before the workers race to
    writers = [start("write", str(tmp_path), ca, str(seed)) for seed in (1, 2)]
    readers: list[subprocess.Popen[str]] = []
    try:
        readers = [
            start("read", str(tmp_path), ca, str(seed), str(PROCESS_GETS))
            for seed in range(10, 10 + PROCESS_READERS)
        ]
        # Readers start quickly: let them go once the writers have stored something, so
        # that there are hits to race with whatever the workers' start-up costs are.
        with BlobStore(tmp_path, content_addressable=content_addressable) as store:
            assert poll_until(lambda: store.count() > 0, timeout=60)
        for worker in readers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=600) for worker in readers]
    finally:
        (tmp_path / "stop").touch()
        for worker in writers:
            _, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
        for worker in readers:
            if worker.poll() is None:
                worker.kill()
    results = []
    for (out, err), worker in zip(outputs, readers, strict=True):
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    assert sum(result["gets"] for result in results) >= PROCESS_READERS * PROCESS_GETS
    assert [error for result in results for error in result["errors"]] == []
    assert sum(result["hits"] for result in results) > 0
    with BlobStore(tmp_path, content_addressable=content_addressable) as store:
        assert store.verify_integrity() == []
