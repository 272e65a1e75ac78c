"""The write protocol under SIGKILL, and content-addressed writers in several processes.

Writers are real processes running ``_worker.py`` on a sqlite + filesystem store. A
writer killed at a random point of ``put`` / ``update_data`` / ``delete`` may leave an
orphan blob or a temporary file, never an entry whose blob is missing or partial:
afterwards every entry's blob exists, hashes right and loads, ``repair`` removes the
debris, and then nothing is left but the index and the blobs the entries use.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cacheness.storage import BlobStore

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL") or not hasattr(os, "fork"), reason="needs POSIX fork and signals"
)

WORKER = Path(__file__).with_name("_worker.py")
TEMP_PREFIX = ".cacheness-tmp-"


def worker_module():
    """``_worker.py`` as a module, for its payload check (it is not importable by name)."""
    spec = importlib.util.spec_from_file_location("blob_store_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


intact = worker_module().intact


def start_race(root: Path, me: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), "race", str(root), str(me)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(worker: subprocess.Popen) -> None:
    line = worker.stdout.readline()
    if line != "ready\n":
        worker.kill()
        _, err = worker.communicate()
        pytest.fail(f"worker did not start: {line!r}\n{err}")


class Writers:
    """A warm process that forks crash writers on request (``_worker.py serve``)."""

    def __init__(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, str(WORKER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _send(self, line: str) -> None:
        self.server.stdin.write(line + "\n")
        self.server.stdin.flush()

    def _expect(self, word: str) -> list[str]:
        line = self.server.stdout.readline()
        parts = line.split()
        if not parts or parts[0] != word:
            self.close()
            pytest.fail(f"expected {word!r} from the writers, got {line!r}\n{self.errors}")
        return parts[1:]

    def start(self, root: Path, seed: int, content_addressable: bool) -> int:
        """Fork a writer; return its pid once its store is open and it starts writing."""
        self._send(f"crash {root} {seed} {int(content_addressable)}")
        return int(self._expect("ready")[0])

    def reap(self, pid: int) -> int:
        """Wait for a writer to end; return its exit code (-9: killed by SIGKILL)."""
        self._send(f"wait {pid}")
        exited, code = self._expect("exited")
        assert int(exited) == pid
        return int(code)

    def close(self) -> None:
        _, self.errors = self.server.communicate(timeout=30)  # closes stdin: the server ends

    errors = ""


@pytest.fixture
def writers():
    made = Writers()
    try:
        yield made
    finally:
        if made.server.returncode is None:
            made.close()


def blob_files(root: Path) -> set[str]:
    folder = root / "blobs"
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def check_entries(store: BlobStore) -> int:
    """Every entry's blob exists, hashes right and loads complete; return how many."""
    assert store.verify_integrity(deep=True) == []
    entries = store.list_entries()
    for entry in entries:
        assert intact(store.get(entry.key)), entry.key
    return len(entries)


def kill_rounds(
    writers: Writers, root: Path, rounds: int, content_addressable: bool, rng: random.Random
) -> int:
    """Start two writers per round, kill both after a random delay; return the kills."""
    kills = 0
    for _ in range(rounds):
        pids = [writers.start(root, rng.randrange(1 << 30), content_addressable) for _ in range(2)]
        time.sleep(rng.uniform(0.0, 0.05))  # the random point of the writes to kill at
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            assert writers.reap(pid) == -signal.SIGKILL, writers.errors  # no crash of its own
            kills += 1
        with BlobStore(root, content_addressable=content_addressable) as store:
            check_entries(store)
    return kills


@pytest.fixture
def seed() -> int:
    """The seed of every random choice of a test: ``CACHENESS_TEST_SEED`` or a new one.

    It is printed, so a failing run shows it (pytest reports captured output): run the
    test again with ``CACHENESS_TEST_SEED=<seed>`` to make the same choices.
    """
    chosen = int(os.environ.get("CACHENESS_TEST_SEED") or random.randrange(1 << 30))
    print(f"random choices seeded with {chosen}: replay with CACHENESS_TEST_SEED={chosen}")
    return chosen


@pytest.mark.parametrize(
    ("content_addressable", "rounds"), [(False, 25), (True, 10)], ids=["named", "content"]
)
def test_writers_killed_at_random_points_leave_only_orphans(
    tmp_path, writers, content_addressable, rounds, seed
):
    rng = random.Random(seed)  # the writers' seeds and the moments they are killed
    root = tmp_path / "store"
    kills = kill_rounds(writers, root, rounds, content_addressable, rng)
    assert kills == 2 * rounds

    with BlobStore(root, content_addressable=content_addressable) as store:
        count = check_entries(store)
        referenced = {entry.blob_ref for entry in store.list_entries() if entry.blob_ref}
        orphans = set(store.find_orphaned_blobs(min_age_seconds=0))
        files = blob_files(root)
        temps = {name for name in files if name.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)}
        # The only debris: blobs no entry points at, and temporary files.
        assert files == referenced | orphans | temps
        assert not referenced & orphans
        assert count + len(orphans) + len(temps) > 0, "the writers never got to write"

        report = store.repair(dry_run=False, orphan_min_age_seconds=0)
        assert report.issues == []
        assert report.entries_removed == []
        assert set(report.orphans_removed) == orphans
        assert report.temp_files_removed == len(temps)
        assert store.find_orphaned_blobs(min_age_seconds=0) == []
        assert blob_files(root) == referenced
        assert check_entries(store) == count
    # Besides the blobs: the index (and its WAL files) and the named-lock folder.
    others = {p.name for p in root.iterdir()} - {"blobs"}
    side = {"index.sqlite-wal", "index.sqlite-shm", "index.sqlite.locks", "index.sqlite.reserve"}
    assert others <= {"index.sqlite", *side}


def test_content_addressed_writers_in_several_processes(tmp_path):
    root = tmp_path / "store"
    BlobStore(root, content_addressable=True).close()  # the index exists before the race
    workers = [start_race(root, me) for me in range(4)]
    for worker in workers:
        wait_ready(worker)
    for worker in workers:  # go, all together
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert out.endswith("done\n")

    with BlobStore(root, content_addressable=True) as store:
        assert check_entries(store) > 0
        entries = store.list_entries()
        for entry in entries:
            assert entry.blob_ref == store.blobs.ref_for(entry.content_hash)
        used = {entry.blob_ref for entry in entries}
        assert blob_files(root) == used  # shared blobs deleted only with their last entry
        assert len(used) <= 3  # three distinct payloads, stored once each
        assert store.find_orphaned_blobs(min_age_seconds=0) == []
    assert os.listdir(root / "index.sqlite.locks") == []  # every lock file was released
