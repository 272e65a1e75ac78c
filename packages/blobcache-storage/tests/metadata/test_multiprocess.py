"""4 processes x 500 mixed operations on one index: nothing committed is lost or torn."""

from __future__ import annotations

import multiprocessing
from collections import defaultdict

from cacheness.storage import Entry, get_metadata_backend, hash_bytes
from cacheness.storage.testing.metadata import run_mixed_workload

WORKERS = 4


def run_workers(name, options, operations, seed):
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS) as pool:
        jobs = [(name, options, worker, operations, seed) for worker in range(WORKERS)]
        return pool.starmap(run_mixed_workload, jobs)  # re-raises a worker's exception


def check_index(name, options, results):
    written = defaultdict(list)
    with get_metadata_backend(name, **options) as backend:
        for result in results:
            own = {
                key: None if value is None else Entry.from_dict(value)
                for key, value in result["own"].items()
            }
            stored = backend.get_many(own)
            assert stored == {key: entry for key, entry in own.items() if entry is not None}
            for value in result["shared"]:
                entry = Entry.from_dict(value)
                written[entry.key].append(entry)
        shared = {entry.key: entry for entry in backend.query({"key": {"$prefix": "shared/"}})}
        own_total = sum(
            sum(value is not None for value in result["own"].values()) for result in results
        )
        assert backend.count() == own_total + len(shared)
    assert set(shared) == set(written)
    for key, entry in shared.items():
        assert entry in written[key]  # one committed version, intact
        assert entry.metadata["check"] == hash_bytes(entry.blob_ref.encode())
    return sum(len(v) for v in written.values())


def test_sqlite_four_processes(tmp_path):
    options = {"path": str(tmp_path / "shared.sqlite")}
    get_metadata_backend("sqlite", **options).close()
    results = run_workers("sqlite", options, operations=500, seed=1)
    assert check_index("sqlite", options, results) > 0


def test_postgresql_four_processes(fresh_postgres_url):
    options = {"url": fresh_postgres_url, "pool_size": 2}
    results = run_workers("postgresql", options, operations=500, seed=2)
    assert check_index("postgresql", options, results) > 0


def test_json_four_processes(tmp_path):
    options = {"path": str(tmp_path / "shared.json"), "fsync": False}
    results = run_workers("json", options, operations=120, seed=3)
    assert check_index("json", options, results) > 0
