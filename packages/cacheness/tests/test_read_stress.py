"""Cache reads racing writers, for real: threads and processes, strict and lenient.

Writers put, rewrite and invalidate self-checking values as fast as they can while
readers read them through ``get``, ``get_with_metadata`` and ``get_batch``. Every read
is a hit on a value that checks out or a miss: no exception (also on a ``strict``
cache), nothing in ``get_stats()["errors"]``, no warning logged. 9,000 contended reads
here (the storage package's stress tests add 16,000); the exact interleavings are
pinned down in ``test_read_races.py``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cacheness import cacheness
from cacheness.storage import poll_until

WORKER = Path(__file__).with_name("_race_worker.py")
THREAD_READERS = 2
THREAD_GETS = 1_000  # per reader: 3 caches x 2 readers x 1,000 = 6,000 reads
PROCESS_READERS = 2
PROCESS_GETS = 1_500  # per reader: 2 readers x 1,500 = 3,000 reads


def worker_module() -> Any:
    spec = importlib.util.spec_from_file_location("cache_race_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


race = worker_module()


@pytest.fixture
def fine_switching() -> Iterator[None]:
    """Switch threads every 20 us: readers and the writer interleave inside calls."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(20e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.parametrize(
    ("backends", "strict"),
    [("sqlite+filesystem", True), ("sqlite+filesystem", False), ("memory", True)],
    ids=["sqlite-strict", "sqlite-lenient", "memory-strict"],
)
def test_threads_reading_while_a_thread_writes(tmp_path, backends, strict, fine_switching, caplog):
    options: dict[str, Any] = {
        "cache_dir": str(tmp_path),
        "strict": strict,
        "serialization": {"inline_threshold": 0},
    }
    if backends == "memory":
        options.update(metadata_backend="memory", blob_backend="memory")
    stop = tmp_path / "stop"
    failures: list[BaseException] = []
    results: list[dict[str, Any]] = []
    with cacheness(**options) as cache:
        for item in race.ITEMS:
            cache.put(race.payload(0), item=item)

        def writer() -> None:
            try:
                race.write(cache, random.Random(1), str(stop))
            except BaseException as exc:
                failures.append(exc)

        def reader(seed: int) -> None:
            results.append(race.read(cache, random.Random(seed), THREAD_GETS))

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
        stats = cache.get_stats()
    assert not failures
    assert sum(result["gets"] for result in results) >= THREAD_READERS * THREAD_GETS
    assert [error for result in results for error in result["errors"]] == []
    assert sum(result["hits"] for result in results) > 0
    assert stats["errors"] == 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


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


def test_processes_reading_while_processes_write(tmp_path):
    with cacheness(cache_dir=str(tmp_path)):
        pass  # create the index once, before the workers race to
    writers = [start("write", str(tmp_path), str(seed)) for seed in (1, 2)]
    readers: list[subprocess.Popen[str]] = []
    try:
        readers = [
            start("read", str(tmp_path), str(seed), str(PROCESS_GETS))
            for seed in range(10, 10 + PROCESS_READERS)
        ]
        # Readers start quickly: let them go once the writers have stored something.
        with cacheness(cache_dir=str(tmp_path)) as cache:
            assert poll_until(lambda: cache.count() > 0, timeout=60)
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
        assert "WARNING" not in err
        results.append(json.loads(out))
    assert sum(result["gets"] for result in results) >= PROCESS_READERS * PROCESS_GETS
    assert [error for result in results for error in result["errors"]] == []
    assert [result["stats_errors"] for result in results] == [0] * PROCESS_READERS
    assert sum(result["hits"] for result in results) > 0
