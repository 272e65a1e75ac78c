"""named_lock across processes: real processes, a real SQLite index, real lock files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from cacheness.storage import SqliteMetadataBackend

INCREMENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cacheness.storage import SqliteMetadataBackend

    backend = SqliteMetadataBackend(sys.argv[1])
    counter = Path(sys.argv[2])
    for _ in range(int(sys.argv[3])):
        with backend.named_lock("counter") as held:
            assert held
            value = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(value + 1))  # read-modify-write: needs the lock
    backend.close()
    """
)


def test_named_lock_serializes_processes_of_one_host(tmp_path):
    index = tmp_path / "index.sqlite"
    SqliteMetadataBackend(index).close()
    counter = tmp_path / "counter"
    workers = [
        subprocess.Popen([sys.executable, "-c", INCREMENT, str(index), str(counter), "150"])
        for _ in range(4)
    ]
    assert [worker.wait(120) for worker in workers] == [0, 0, 0, 0]
    assert counter.read_text() == "600"  # no increment lost
    # Each holder removes its lock file: names used once leave nothing behind.
    assert os.listdir(tmp_path / "index.sqlite.locks") == []


def test_waiter_on_a_removed_lock_file_starts_over(tmp_path):
    backend = SqliteMetadataBackend(tmp_path / "index.sqlite")
    try:
        with backend.named_lock("a") as first:
            assert first
        with backend.named_lock("a", timeout=1) as again:  # file gone: a new one is made
            assert again
    finally:
        backend.close()
