"""Test-side helpers of the team-cache tests: configs, worker processes, ground truth.

``conftest.py`` imports this file by path (pytest runs in importlib mode) and hands it
to the tests as the ``support`` fixture. Ground truth is read *around* the cache: the
entries table with plain SQL (psycopg), the bucket with a plain boto3 client.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_team_worker.py"
TABLE = "cacheness_entries"
REPLY_TIMEOUT = 120.0


worker_module: ModuleType = sys.modules["_team_worker"]  # imported first by conftest.py


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``predicate`` (every 20 ms) until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return value


@dataclass
class Team:
    """One team cache: a PostgreSQL schema, an S3 bucket (+ prefix) and a scratch dir."""

    url: str
    bucket: Any  # cacheness.storage.testing.services.S3Bucket
    scratch: Path
    prefix: str = "team/"
    table: str = TABLE
    endpoint_url: str | None = None  # another endpoint (the flaky proxy); default: moto
    blob_options: dict[str, Any] = field(default_factory=dict)
    metadata_options: dict[str, Any] = field(default_factory=lambda: {"pool_size": 2})

    # -- configuration in every form a user can write it --------------------------------

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or self.bucket.endpoint.endpoint_url

    def config(self, form: str = "sections") -> dict[str, Any] | None:
        """The cache config as a mapping (``sections`` or ``flat``); None for env/file."""
        cache_dir = str(self.scratch / "cache")
        if form == "sections":
            return {
                "cache_dir": cache_dir,
                "metadata": {
                    "backend": "postgresql",
                    "connection_url": self.url,
                    "table": self.table,
                    "options": dict(self.metadata_options),
                },
                "blob": {
                    "backend": "s3",
                    "bucket": self.bucket.name,
                    "prefix": self.prefix,
                    "endpoint_url": self.endpoint,
                    "shard_chars": 2,
                    "options": dict(self.blob_options),
                },
            }
        if form == "flat":
            return {
                "cache_dir": cache_dir,
                "metadata_backend": "postgresql",
                "metadata_backend_options": {
                    "connection_url": self.url,
                    "table_name": self.table,
                    **self.metadata_options,
                },
                "blob_backend": "s3",
                "blob_backend_options": {
                    "bucket": self.bucket.name,
                    "prefix": self.prefix,
                    "endpoint_url": self.endpoint,
                    "shard_chars": 2,
                    **self.blob_options,
                },
            }
        if form in ("env", "file"):
            return None
        raise ValueError(f"unknown config form {form!r}")

    def environment(self, form: str = "sections") -> dict[str, str]:
        """The environment of a worker: no stray CACHENESS_* settings, AWS credentials."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CACHENESS_")}
        endpoint = self.bucket.endpoint
        env.update(
            AWS_ACCESS_KEY_ID=endpoint.access_key_id,
            AWS_SECRET_ACCESS_KEY=endpoint.secret_access_key,
            AWS_DEFAULT_REGION=endpoint.region,
            PYTHONUNBUFFERED="1",
        )
        env.pop("AWS_PROFILE", None)
        if os.environ.get("CACHENESS_SIGNING_KEY"):  # the team's key, set by the fixtures
            env["CACHENESS_SIGNING_KEY"] = os.environ["CACHENESS_SIGNING_KEY"]
        if form == "env":
            assert not self.blob_options, "blob options have no environment variables"
            env.update(
                CACHENESS_DIR=str(self.scratch / "cache"),
                CACHENESS_METADATA_BACKEND="postgresql",
                CACHENESS_METADATA_URL=self.url,
                CACHENESS_METADATA_TABLE=self.table,
                CACHENESS_BLOB_BACKEND="s3",
                CACHENESS_S3_BUCKET=self.bucket.name,
                CACHENESS_S3_PREFIX=self.prefix,
                CACHENESS_S3_ENDPOINT_URL=self.endpoint,
            )
        elif form == "file":
            path = self.scratch / "cacheness.toml"
            path.write_text(
                f'cache_dir = "{self.scratch / "cache"}"\n\n'
                "[metadata]\n"
                'backend = "postgresql"\n'
                f'connection_url = "{self.url}"\n'
                f'table = "{self.table}"\n\n'
                "[blob]\n"
                'backend = "s3"\n'
                f'bucket = "{self.bucket.name}"\n'
                f'prefix = "{self.prefix}"\n'
                f'endpoint_url = "{self.endpoint}"\n'
                "shard_chars = 2\n",
                encoding="utf-8",
            )
            env["CACHENESS_CONFIG"] = str(path)
        return env

    # -- worker processes ---------------------------------------------------------------

    def spawn(self, mode: str, form: str = "sections", **settings: Any) -> Worker:
        """Start a worker process in ``mode`` (see ``_team_worker.py``)."""
        spec = {"config": self.config(form), **settings}
        return Worker(mode, spec, self.environment(form), self.scratch)

    def serve(self, form: str = "sections") -> Served:
        """Start a ``serve`` worker and wait until its cache is open."""
        return Served(self.spawn("serve", form))

    def group(self, mode: str, count: int, **settings: Any) -> Worker:
        """Start ``count`` processes of ``mode``, forked by one worker (see ``group``)."""
        return self.spawn("group", run=mode, count=count, **settings)

    def run_all(self, mode: str, count: int, **settings: Any) -> list[dict[str, Any]]:
        """Run ``count`` processes of ``mode`` at once; return their reports."""
        return self.group(mode, count, **settings).reports(count)

    # -- ground truth around the cache ------------------------------------------------------

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``query`` with a plain psycopg connection (search path: the team schema)."""
        import psycopg

        with psycopg.connect(worker_module.libpq(self.url), autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def terminate_cache_connections(self) -> int:
        """``pg_terminate_backend`` every cache connection to the database; return how many."""
        (killed,) = self.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'cacheness' "
            "AND pid <> pg_backend_pid()"
        )[0]
        return int(killed)

    def rows(self) -> dict[str, tuple[str, int, str, bool]]:
        """``{key: (blob_ref, size, content_hash, inline)}`` straight from the table."""
        query = f"SELECT key, blob_ref, size, content_hash, inline IS NOT NULL FROM {self.table}"
        return {key: (ref, size, digest, inline) for key, ref, size, digest, inline in
                self.sql(query)}  # fmt: skip

    def objects(self) -> dict[str, int]:
        """``{blob ref: size}`` of every object under the prefix, from a plain boto3 listing."""
        client = self.bucket.client()
        paginator = client.get_paginator("list_objects_v2")
        found = {}
        for page in paginator.paginate(Bucket=self.bucket.name, Prefix=self.prefix):
            for item in page.get("Contents", []):
                found[item["Key"][len(self.prefix) :]] = item["Size"]
        return found

    def open_cache(self) -> Any:
        """A cache object in the test process, on the same config (direct to moto)."""
        from cacheness.cache import cacheness

        config = Team(self.url, self.bucket, self.scratch, self.prefix, self.table).config()
        endpoint = self.bucket.endpoint
        config["blob"]["options"].update(  # the test process has no AWS_* variables
            aws_access_key_id=endpoint.access_key_id,
            aws_secret_access_key=endpoint.secret_access_key,
            region=endpoint.region,
        )
        return cacheness(config)

    def check(self) -> set[str]:
        """Assert the index and the bucket agree; return the orphan blobs.

        Every entry's blob exists with the recorded size, no two entries share a blob,
        every value reads back intact (deep ``verify_integrity`` plus reading each), and
        the orphans are exactly the bucket listing minus the table's references, which
        is also what ``find_orphaned_blobs(min_age_seconds=0)`` reports.
        """
        rows = self.rows()
        objects = self.objects()
        refs = [ref for ref, _, _, inline in rows.values() if not inline]
        assert all(refs), "an entry without inline bytes has no blob"
        assert len(refs) == len(set(refs)), "two entries share a blob"
        for key, (ref, size, _, inline) in rows.items():
            if not inline:
                assert ref in objects, f"entry {key} points at missing blob {ref}"
                assert objects[ref] == size, f"entry {key}: blob {ref} has the wrong size"
        with self.open_cache() as cache:
            store = cache.store
            assert store.verify_integrity(deep=True) == []
            for key in rows:
                value = store.get(key)
                params = cache.get_metadata(cache_key=key, check_expiration=False).params
                worker_module.check_value(worker_module.item_name(params), value)
            orphans = set(store.find_orphaned_blobs(min_age_seconds=0))
        assert orphans == set(objects) - set(refs)
        return orphans


class Worker:
    """One worker process; stdout is read by a thread, stderr goes to a file."""

    def __init__(self, mode: str, spec: dict[str, Any], env: dict[str, str], scratch: Path):
        scratch.mkdir(parents=True, exist_ok=True)
        self.stderr_path = scratch / f"worker-{mode}-{id(self):x}.err"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), mode, json.dumps(spec)],
            stdin=subprocess.PIPE if mode == "serve" else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._early: list[dict[str, Any]] = []  # reports read while waiting for "started"
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self._lines.put(line)
        self._lines.put("")  # end of output

    @property
    def stderr(self) -> str:
        """What the worker wrote to stderr so far (warnings, tracebacks)."""
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text()

    def line(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The next JSON line of the worker; fails with its stderr if it died."""
        try:
            text = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"worker {self.pid} said nothing for {timeout} s") from None
        if not text:
            self.process.wait(timeout=30)
            raise AssertionError(
                f"worker {self.pid} exited ({self.process.returncode}):\n{self.stderr}"
            )
        return json.loads(text)

    def started(self, count: int) -> list[int]:
        """Wait until ``count`` processes announced an open cache; return their pids."""
        pids = []
        while len(pids) < count:
            line = self.line()
            if "started" in line:
                pids.append(line["started"])
            else:
                self._early.append(line)
        return pids

    def reports(self, count: int) -> list[dict[str, Any]]:
        """The final lines of ``count`` processes (a group); the group must succeed."""
        found = self._early
        while len(found) < count:
            line = self.line()
            if "started" not in line:
                found.append(line)
        code = self.process.wait(timeout=REPLY_TIMEOUT)
        assert code == 0, self.stderr
        self.close_pipes()
        return found

    def report(self) -> dict[str, Any]:
        """Wait for the worker to finish successfully; return its last line."""
        report = self.line()
        code = self.process.wait(timeout=REPLY_TIMEOUT)
        assert code == 0, self.stderr
        self.close_pipes()
        return report

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the worker to exit; True if it did."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        self.process.kill()
        self.process.wait(timeout=30)
        self.close_pipes()

    def close_pipes(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self._stderr.close()


class Served:
    """A ``serve`` worker: ``call(op, **args)`` sends a command and returns the reply."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        assert worker.line() == {"ok": True, "result": "ready"}

    @property
    def pid(self) -> int:
        return self.worker.pid

    def send(self, op: str, **args: Any) -> None:
        """Send a command without waiting for its reply (see :meth:`receive`)."""
        stdin = self.worker.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **args}) + "\n")
        stdin.flush()

    def receive(self) -> dict[str, Any]:
        return self.worker.line()

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run ``op``; return the whole reply (``ok``, ``result`` or ``error``)."""
        self.send(op, **args)
        return self.receive()

    def __call__(self, op: str, **args: Any) -> Any:
        """Run ``op`` and return its result; a CacheError reply fails the test."""
        reply = self.call(op, **args)
        assert reply["ok"], reply
        return reply["result"]

    def close(self) -> None:
        stdin = self.worker.process.stdin
        assert stdin is not None
        stdin.close()
        code = self.worker.process.wait(timeout=REPLY_TIMEOUT)
        assert code == 0, self.worker.stderr
        self.worker.close_pipes()
