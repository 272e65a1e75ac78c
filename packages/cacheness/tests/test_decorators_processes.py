"""Stampede protection across processes: one computation for many processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROCESSES = 4

WORKER = textwrap.dedent(
    """
    import fcntl, json, os, sys, time

    from cacheness.cache import cacheness
    from cacheness.decorators import cached

    options, counter, ready, processes, index = sys.argv[1:]
    cache = cacheness(**json.loads(options))

    @cached(cache_instance=cache, key_prefix="mp.expensive", lock=True)
    def expensive(x):
        with open(counter, "a") as out:  # count computations, under a file lock
            fcntl.flock(out, fcntl.LOCK_EX)
            out.write(f"{os.getpid()}\\n")
            out.flush()
            fcntl.flock(out, fcntl.LOCK_UN)
        # hold the key until every process has made its call: they all overlap
        deadline = time.monotonic() + 30
        while len(os.listdir(ready)) < int(processes) and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"x": x, "computed_by": os.getpid()}

    open(os.path.join(ready, index), "w").close()
    print(json.dumps(expensive(42)))
    cache.close()
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="the worker counts under fcntl locks")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_on_one_host_compute_once(tmp_path, request, backend):
    options: dict = {"cache_dir": str(tmp_path / "cache")}
    if backend == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
        options.update(metadata_backend="postgresql", metadata_backend_options={"url": url})
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    counter = tmp_path / "computations.txt"
    counter.touch()
    ready = tmp_path / "ready"
    ready.mkdir()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                json.dumps(options),
                str(counter),
                str(ready),
                str(PROCESSES),
                str(index),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESSES)
    ]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        outputs.append(json.loads(out))
    computed_by = counter.read_text().split()
    assert len(computed_by) == 1
    # every process got the one computed value, read back from the cache
    assert outputs == [{"x": 42, "computed_by": int(computed_by[0])}] * PROCESSES
    assert int(computed_by[0]) in {worker.pid for worker in workers}
    assert sorted(os.listdir(ready)) == [str(i) for i in range(PROCESSES)]
